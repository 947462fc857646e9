import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { InstrumentationBase } from '@opentelemetry/instrumentation';
import {
  DEFAULT_OFF_INSTRUMENTATIONS,
  INSTRUMENTATION_NAMES,
  UPSTREAM_DEFAULT_OFF_INSTRUMENTATIONS,
} from '../../src/config';
import {
  DEFERRED_MODULES,
  INSTRUMENTATION_TABLE,
  PACKAGES,
  UPSTREAM_CLASSES,
} from '../../src/instrumentations';

/** Instrumentations with a factory of their own: the package and class to compare with. */
const OWN_CLASSES: Record<string, string> = {
  express: 'ExpressInstrumentation',
  pg: 'PgInstrumentation',
  mysql2: 'MySQL2Instrumentation',
  ioredis: 'IORedisInstrumentation',
  redis: 'RedisInstrumentation',
  winston: 'WinstonInstrumentation',
  pino: 'PinoInstrumentation',
};

// The package exports no package.json: its directory is found from its main file.
const AUTO = join(dirname(require.resolve('@opentelemetry/auto-instrumentations-node')), '..');
const PREFIX = '@opentelemetry/instrumentation-';

describe('deferred instrumentations', () => {
  for (const [name, moduleNames] of Object.entries(DEFERRED_MODULES)) {
    it(`${name}: the stand-in hooks exactly the modules the instrumentation defines`, () => {
      const pkg = PACKAGES[name as keyof typeof PACKAGES];
      const cls = UPSTREAM_CLASSES[name as keyof typeof UPSTREAM_CLASSES] ?? OWN_CLASSES[name];
      assert.ok(cls, `no class known for ${name}`);
      const from = pkg.startsWith('./') ? join('../../src', pkg) : pkg;
      const Ctor = (require(from) as Record<string, new (c: object) => InstrumentationBase>)[cls];
      const real = new (Ctor as new (c: object) => InstrumentationBase)({
        enabled: false,
        // What the distro's own (pino) needs; the others ignore it.
        service: 'test',
        redactKeys: [],
        sendLogs: false,
      });
      assert.deepEqual(
        real.getModuleDefinitions().map((d) => d.name),
        moduleNames,
      );
    });
  }
});

describe('instrumentations: the set of auto-instrumentations-node', () => {
  it('every instrumentation it ships has the same short name here', () => {
    const pkg = JSON.parse(readFileSync(join(AUTO, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const upstream = Object.keys(pkg.dependencies)
      .filter((d) => d.startsWith(PREFIX))
      .map((d) => d.slice(PREFIX.length))
      .sort();
    assert.deepEqual([...INSTRUMENTATION_NAMES].sort(), upstream);
  });

  it('the same ones are off by default, and dns and net besides', () => {
    const utils = readFileSync(join(AUTO, 'dist', 'utils.cjs'), 'utf8');
    const list = /defaultExcludedInstrumentations\s*=\s*\[([^\]]*)\]/.exec(utils)?.[1];
    assert.ok(list, 'defaultExcludedInstrumentations not found');
    const upstream = [...list.matchAll(/"([^"]+)"/g)].map((m) =>
      (m[1] as string).slice(PREFIX.length),
    );
    assert.deepEqual([...UPSTREAM_DEFAULT_OFF_INSTRUMENTATIONS].sort(), upstream.sort());
    assert.deepEqual([...DEFAULT_OFF_INSTRUMENTATIONS].sort(), [...upstream, 'dns', 'net'].sort());
  });

  it('every package is a dependency, at the version auto-instrumentations-node pins or later', () => {
    const ours = JSON.parse(readFileSync(join(__dirname, '../../../package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    for (const info of INSTRUMENTATION_TABLE) {
      if (info.package.startsWith('./')) continue;
      assert.ok(ours.dependencies[info.package], `${info.package} is not a dependency`);
      assert.doesNotThrow(() => require.resolve(info.package));
    }
  });

  it('the table says what each one loads and when', () => {
    const amqp = INSTRUMENTATION_TABLE.find((i) => i.name === 'amqplib');
    assert.deepEqual(amqp, {
      name: 'amqplib',
      package: '@opentelemetry/instrumentation-amqplib',
      modules: ['amqplib'],
      defaultOn: true,
      spansOnly: true,
      metricsSilenced: true,
    });
    const fs = INSTRUMENTATION_TABLE.find((i) => i.name === 'fs');
    assert.equal(fs?.defaultOn, false);
    assert.equal(INSTRUMENTATION_TABLE.length, INSTRUMENTATION_NAMES.length);
    // Every library one is deferred: start-up loads only http, undici's stand-in, the distro's
    // runtime metrics, and the two that hook no module (aws-lambda in Lambda, host-metrics).
    const atStart = INSTRUMENTATION_TABLE.filter((i) => i.modules.length === 0).map((i) => i.name);
    assert.deepEqual(atStart.sort(), [
      'aws-lambda',
      'host-metrics',
      'http',
      'runtime-node',
      'undici',
    ]);
  });

  it('docs/configuration.md lists every one with its package, default and metrics-only loading', () => {
    const doc = readFileSync(join(__dirname, '../../../docs/configuration.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## Instrumentations'));
    const rows = [
      ...section.matchAll(/^\| `([a-z0-9.-]+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \| (yes|no) \|/gm),
    ];
    assert.deepEqual(
      rows.map((r) => r[1]),
      INSTRUMENTATION_TABLE.map((i) => i.name),
    );
    for (const [, name, pkg, modules, defaultText, metricsOnly] of rows) {
      const info = INSTRUMENTATION_TABLE.find((i) => i.name === name);
      assert.ok(info);
      const expectedPkg = info.package.startsWith('./') ? 'the distro' : `\`${info.package}\``;
      assert.equal(pkg, expectedPkg, name);
      const expectedModules =
        info.modules.length === 0
          ? 'start-up'
          : [...new Set(info.modules)].map((m) => `\`${m}\``).join(', ');
      assert.equal(modules, expectedModules, name);
      assert.equal(defaultText, info.defaultOn ? 'on' : '**off**', name);
      assert.equal(metricsOnly, info.spansOnly ? 'no' : 'yes', name);
    }
  });
});
