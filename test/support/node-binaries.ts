/**
 * Other Node.js versions than the one running the tests, for the version-dependent paths of the
 * preload (loader hooks, the unsupported-Node warning). Found under the cache the machine's
 * Node.js downloads go to, or named by DATALAB_TEST_NODE_<major>.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { skipBecause } from './skip';

/** Where scripts/node-matrix.mjs (and so CI, before the tests) puts the binaries it fetches. */
export const NODE_CACHE = join(
  process.env.XDG_CACHE_HOME || join(homedir(), '.cache'),
  'datalab-otel',
  'node',
);

export function versionOf(binary: string): string {
  return execFileSync(binary, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim();
}

/** The binary of the newest cached Node.js of that major version, if any. */
export function findNode(major: number): string | undefined {
  const fromEnv = process.env[`DATALAB_TEST_NODE_${major}`];
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  if (Number(process.versions.node.split('.')[0]) === major) return process.execPath;
  if (!existsSync(NODE_CACHE)) return undefined;
  const candidates = readdirSync(NODE_CACHE)
    .filter((v) => v.startsWith(`${major}.`) && existsSync(join(NODE_CACHE, v, 'bin', 'node')))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const newest = candidates.at(-1);
  return newest ? join(NODE_CACHE, newest, 'bin', 'node') : undefined;
}

/**
 * The binary, or a skip that says which one is missing. Under CI a missing binary fails the
 * test instead: CI must prove these paths, not skip them.
 */
export function requireNode(ctx: Mocha.Context, major: number): string {
  const binary = findNode(major);
  if (binary) return binary;
  const reason = `no Node.js ${major} on this machine (looked in ${NODE_CACHE} and DATALAB_TEST_NODE_${major})`;
  if (process.env.CI === 'true') throw new Error(`CI must provide it: ${reason}`);
  return skipBecause(ctx, reason);
}

/** A Node.js older than `min` that is on this machine (the system's, usually), if any. */
export function findNodeOlderThan(min: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(':').filter((d) => d !== '');
  const candidates = [
    ...dirs.map((d) => join(d, 'node')),
    '/usr/bin/node',
    '/usr/local/bin/node',
    ...(existsSync(NODE_CACHE)
      ? readdirSync(NODE_CACHE).map((v) => join(NODE_CACHE, v, 'bin', 'node'))
      : []),
  ];
  for (const binary of new Set(candidates)) {
    if (!existsSync(binary)) continue;
    try {
      if (olderThan(versionOf(binary), min)) return binary;
    } catch {
      // Not a working node binary.
    }
  }
  return undefined;
}

function olderThan(version: string, min: string): boolean {
  const a = version.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) < (b[i] ?? 0);
  }
  return false;
}

/**
 * A Node.js 22 from before module.registerHooks() could run import-in-the-middle (< 22.22.3),
 * where the preload falls back to the loader thread: DATALAB_TEST_NODE_22_EARLY, or one in the
 * cache. Optional: the supported lines are covered by findNode().
 */
export function findEarlyNode22(): string | undefined {
  const fromEnv = process.env.DATALAB_TEST_NODE_22_EARLY;
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  if (!existsSync(NODE_CACHE)) return undefined;
  for (const v of readdirSync(NODE_CACHE)) {
    const binary = join(NODE_CACHE, v, 'bin', 'node');
    if (v.startsWith('22.') && olderThan(v, '22.22.3') && existsSync(binary)) return binary;
  }
  return undefined;
}
