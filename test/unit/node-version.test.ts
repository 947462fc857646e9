import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hookedModuleMatcher, syncHooksUsable } from '../../src/esm-hooks';
import { atLeast, MIN_NODE_VERSION, nodeIsSupported } from '../../src/node-version';
import { setWarningSink } from '../../src/warnings';
import { ROOT } from '../support/app';

describe('Node.js versions', () => {
  it('the minimum is the one package.json declares', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      engines: { node: string };
    };
    assert.equal(pkg.engines.node, `>=${MIN_NODE_VERSION}`);
  });

  it('compares versions numerically', () => {
    assert.ok(atLeast('22.15.0', '22.15.0'));
    assert.ok(atLeast('22.100.0', '22.15.0'));
    assert.ok(atLeast('v24.0.0', '22.15.0'));
    assert.ok(!atLeast('22.14.9', '22.15.0'));
    assert.ok(!atLeast('20.20.2', '22.15.0'));
    assert.ok(atLeast('26.0.0-nightly2026', '26.0.0'));
  });

  it('an unsupported Node.js gets one JSON warning line naming both versions, once', () => {
    const kWarned = Symbol.for('@datalab/otel.node-unsupported');
    const g = globalThis as { [kWarned]?: boolean };
    const previous = setWarningSink(() => {});
    const written: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => {
      written.push(chunk);
      return true;
    }) as typeof process.stderr.write;
    try {
      delete g[kWarned];
      assert.equal(nodeIsSupported(process.versions.node), true);
      assert.equal(nodeIsSupported('20.20.2'), false);
      assert.equal(nodeIsSupported('18.0.0'), false);
    } finally {
      process.stderr.write = write;
      setWarningSink(previous);
      delete g[kWarned];
    }
    assert.equal(written.length, 1, written.join(''));
    const record = JSON.parse(written[0] as string) as Record<string, unknown>;
    assert.equal(record.code, 'DLOTEL_NODE_UNSUPPORTED');
    assert.equal(record.logger, '@datalab/otel');
    assert.match(String(record.message), /^Node\.js 20\.20\.2 .*>= 22\.15\.0/);
  });

  it('synchronous loader hooks only where they run import-in-the-middle correctly', () => {
    for (const v of ['22.22.3', '22.23.5', '24.13.0', '24.22.3', '25.1.0', '26.0.0', '27.1.0']) {
      assert.ok(syncHooksUsable(v), v);
    }
    for (const v of ['20.20.2', '22.15.0', '22.22.2', '23.11.0', '24.0.0', '24.12.9', '25.0.0']) {
      assert.ok(!syncHooksUsable(v), v);
    }
  });
});

describe('ESM hook include list', () => {
  const names = new Set(['express', 'pg', 'http', '@redis/client', '/srv/app/lib/db.mjs']);
  const matches = hookedModuleMatcher(names);

  it('wraps the hooked packages, by bare specifier', () => {
    assert.ok(matches('file:///srv/app/node_modules/express/index.js', 'express'));
    assert.ok(matches('file:///srv/app/node_modules/@redis/client/dist/index.js', '@redis/client'));
    assert.ok(!matches('file:///srv/app/node_modules/lodash/lodash.js', 'lodash'));
    assert.ok(!matches('file:///srv/app/node_modules/express/lib/router.js', './router.js'));
  });

  it('builtins with or without node:, absolute paths by file URL', () => {
    assert.ok(matches('node:http', 'http'));
    assert.ok(matches('node:http', 'node:http'));
    assert.ok(!matches('node:https', 'node:https'));
    assert.ok(matches('file:///srv/app/lib/db.mjs', './lib/db.mjs'));
    assert.ok(!matches('file:///srv/app/lib/other.mjs', './lib/other.mjs'));
  });

  it('sees names added after it was made', () => {
    const live = new Set<string>();
    const m = hookedModuleMatcher(live);
    assert.ok(!m('file:///x/node_modules/ioredis/built/index.js', 'ioredis'));
    live.add('ioredis');
    assert.ok(m('file:///x/node_modules/ioredis/built/index.js', 'ioredis'));
  });
});
