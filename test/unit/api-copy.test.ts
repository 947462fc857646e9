import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as nodeModule from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withDistroApi } from '../../src/api-copy';

const ModuleClass = nodeModule.Module as unknown as { _resolveFilename: unknown };

describe('withDistroApi', () => {
  let dir: string;
  let requireFromApp: NodeJS.Require;
  const distroApi = require.resolve('@opentelemetry/api');

  before(() => {
    // An application's package with its own (older) api beside it, as npm hoists it.
    dir = mkdtempSync(join(tmpdir(), 'datalab-otel-api-copy-'));
    const api = join(dir, 'node_modules', '@opentelemetry', 'api');
    mkdirSync(api, { recursive: true });
    writeFileSync(
      join(api, 'package.json'),
      JSON.stringify({ name: '@opentelemetry/api', version: '1.9.0', main: 'index.js' }),
    );
    writeFileSync(join(api, 'index.js'), 'module.exports = { old: true };\n');
    requireFromApp = nodeModule.createRequire(join(dir, 'instrumentation.js'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("resolves api requests from the distro's location while loading", () => {
    const inside = withDistroApi(() => requireFromApp.resolve('@opentelemetry/api'));
    assert.equal(inside, distroApi);
  });

  it('leaves requests outside the load, and other packages, alone', () => {
    const before = ModuleClass._resolveFilename;
    assert.equal(
      requireFromApp.resolve('@opentelemetry/api'),
      join(dir, 'node_modules', '@opentelemetry', 'api', 'index.js'),
    );
    withDistroApi(() => {
      assert.throws(() => requireFromApp.resolve('@opentelemetry/api-not-a-package'));
    });
    assert.equal(ModuleClass._resolveFilename, before, 'the resolver is restored');
    assert.equal((requireFromApp('@opentelemetry/api') as { old?: boolean }).old, true);
  });

  it('restores the resolver when the load throws, and nests', () => {
    const before = ModuleClass._resolveFilename;
    assert.throws(
      () =>
        withDistroApi(() => {
          assert.equal(
            withDistroApi(() => requireFromApp.resolve('@opentelemetry/api')),
            distroApi,
          );
          throw new Error('load failed');
        }),
      /load failed/,
    );
    assert.equal(ModuleClass._resolveFilename, before);
  });
});
