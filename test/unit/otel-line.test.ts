import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../support/app';

// The SDK 2 / 0.2xx line is feature-frozen and its packages pin @opentelemetry/api < 1.10: one
// of them in the tree means two API copies and, for the SDK, two sets of globals.
const OLD_LINE = /^(?:2\.\d+\.\d+|0\.2\d\d\.\d+)$/;

interface Lock {
  packages: Record<string, { version?: string; dev?: boolean }>;
}

describe('OpenTelemetry packages are on the SDK 3 line', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
    engines: { node: string };
  };
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as Lock;

  it('package.json asks for SDK 3.x / 0.30x ranges', () => {
    const offenders = Object.entries(pkg.dependencies)
      .filter(([name]) => name.startsWith('@opentelemetry/'))
      .filter(([, range]) => /(?:^|[^.\d])(?:2\.\d|0\.2\d\d)/.test(range))
      .map(([name, range]) => `${name}@${range}`);
    assert.deepEqual(offenders, []);
    assert.equal(pkg.engines.node, '>=22.15.0');
  });

  it('the lockfile (what CI installs) holds no 2.x / 0.2xx OpenTelemetry package', () => {
    const offenders = Object.entries(lock.packages)
      .filter(([path]) => /(?:^|\/)node_modules\/@opentelemetry\/[^/]+$/.test(path))
      .filter(([, entry]) => OLD_LINE.test(entry.version ?? ''))
      .map(([path, entry]) => `${path}@${entry.version}${entry.dev ? ' (dev)' : ''}`);
    assert.deepEqual(offenders, []);
  });

  it('the pattern catches the old line and spares contrib numbering', () => {
    assert.ok(OLD_LINE.test('2.12.0'));
    assert.ok(OLD_LINE.test('0.223.0'));
    assert.ok(!OLD_LINE.test('3.1.1'));
    assert.ok(!OLD_LINE.test('0.301.2'));
    assert.ok(!OLD_LINE.test('0.22.0')); // instrumentation-openai's own numbering
  });
});
