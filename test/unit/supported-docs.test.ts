/**
 * docs/supported.md stays honest: every version the end-to-end tests install of a library it
 * lists (the fixture applications' direct dependencies, the repository's own copies) is named in
 * that library's row, so the "versions tested" column cannot fall behind a lockfile.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../support/app';

const DOC = readFileSync(join(ROOT, 'docs', 'supported.md'), 'utf8');
const ROWS = DOC.split('\n').filter((l) => l.startsWith('|') && !l.startsWith('|---'));
const APPS = join(ROOT, 'test', 'fixtures', 'apps');

interface Lock {
  packages: Record<
    string,
    {
      version?: string;
      dependencies?: Record<string, string>;
      devDependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    }
  >;
}

function readLock(dir: string): Lock {
  return JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as Lock;
}

/** The rows that name `pkg` (as `pkg`, in backticks). */
function rowsOf(pkg: string): string[] {
  return ROWS.filter((row) => row.includes(`\`${pkg}\``));
}

function mentions(row: string, version: string): boolean {
  const escaped = version.replace(/\./g, '\\.');
  return new RegExp(`(?<![\\w.])${escaped}(?![\\w.])`).test(row);
}

function assertListed(pkg: string, version: string, where: string): void {
  const rows = rowsOf(pkg);
  assert.ok(rows.length > 0, `docs/supported.md has no row for \`${pkg}\` (${where})`);
  assert.ok(
    rows.some((row) => mentions(row, version)),
    `docs/supported.md: the \`${pkg}\` row does not name ${version}, installed by ${where}`,
  );
}

describe('docs/supported.md: versions tested', () => {
  const apps = existsSync(APPS)
    ? readdirSync(APPS).filter((d) => existsSync(join(APPS, d, 'package-lock.json')))
    : [];

  it('there are fixture applications to check', () => {
    assert.ok(apps.length > 0);
  });

  for (const app of apps) {
    it(`test/fixtures/apps/${app}: each direct dependency's locked version`, () => {
      const lock = readLock(join(APPS, app));
      const root = lock.packages[''] ?? {};
      const direct = {
        ...root.dependencies,
        ...root.optionalDependencies,
        ...root.devDependencies,
      };
      assert.ok(Object.keys(direct).length > 0, `${app} has no dependencies`);
      for (const name of Object.keys(direct)) {
        const version = lock.packages[`node_modules/${name}`]?.version;
        assert.ok(version, `${app}: ${name} is not in its lockfile`);
        assertListed(name, version, `test/fixtures/apps/${app}`);
      }
    });
  }

  it("the repository's own copies of the libraries the tables list", () => {
    const lock = readLock(ROOT);
    let checked = 0;
    for (const row of ROWS) {
      const first = row.split('|')[1] ?? '';
      for (const [, name] of first.matchAll(/`([^`]+)`/g)) {
        const version = lock.packages[`node_modules/${name}`]?.version;
        if (version === undefined) continue;
        assertListed(name as string, version, 'the repository lockfile');
        checked++;
      }
    }
    // express, fastify, pg, pg-pool, mysql2, ioredis, winston, pino at least.
    assert.ok(checked >= 8, `only ${checked} libraries checked`);
  });
});
