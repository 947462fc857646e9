import assert from 'node:assert/strict';
import { isPackageManagerCli } from '../../src/bootstrap';

describe('isPackageManagerCli', () => {
  it('recognises package managers that NODE_OPTIONS would otherwise instrument', () => {
    for (const p of [
      '/usr/lib/node_modules/npm/bin/npm-cli.js',
      '/usr/lib/node_modules/npm/bin/npx-cli.js',
      '/usr/local/bin/npm',
      '/srv/app/.yarn/releases/yarn-4.5.0.cjs',
      '/usr/lib/node_modules/yarn/bin/yarn.js',
      '/usr/lib/node_modules/pnpm/bin/pnpm.cjs',
    ]) {
      assert.ok(isPackageManagerCli(p), p);
    }
  });
  it('leaves applications alone', () => {
    for (const p of [
      undefined,
      '/srv/app/server.js',
      '/srv/npm-stats/index.js',
      '/srv/app/npm.ts',
    ]) {
      assert.ok(!isPackageManagerCli(p), String(p));
    }
  });
});
