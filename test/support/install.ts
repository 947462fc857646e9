/**
 * Installing the distro the way a user does: package managers run in directories outside the
 * repository, against the registry (its cache first), on the packed package.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { ROOT, TEST_TRACES_DIR } from './app';
import { skipBecause } from './skip';

/** One install step may take this long (registry, cache, build of a git dependency). */
export const STEP_TIMEOUT = 180_000;
export const NPM_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund'] as const;

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment of the test run without the npm_* variables of an enclosing `npm test`, which
 * would otherwise steer a child install, and with the test's own Node first on PATH.
 */
function toolEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^npm_/i.test(k) || k === 'NODE_OPTIONS') continue;
    if (k.startsWith('OTEL_') || k.startsWith('DATALAB_')) continue;
    env[k] = v;
  }
  env.PATH = `${dirname(process.execPath)}${delimiter}${env.PATH ?? ''}`;
  return { ...env, ...extra };
}

/** Runs `command` in `cwd` and collects its output; killed when a step takes too long. */
export function run(
  command: string,
  args: readonly string[],
  cwd: string,
  extraEnv: Record<string, string> = {},
  timeoutMs = STEP_TIMEOUT - 10_000,
): Promise<RunResult> {
  return new Promise((done, reject) => {
    const child = spawn(command, args, {
      cwd,
      env: toolEnv(extraEnv),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

/** npm (the system one, run on the test's own Node) in `cwd`. */
export function npm(cwd: string, args: readonly string[]): Promise<RunResult> {
  return run('npm', args, cwd);
}

export async function npmOk(cwd: string, args: readonly string[]): Promise<RunResult> {
  const result = await npm(cwd, args);
  assert.equal(result.code, 0, `npm ${args.join(' ')} failed in ${cwd}:\n${result.stderr}`);
  return result;
}

const NETWORK = /E(AI_AGAIN|NOTFOUND|CONNREFUSED|CONNRESET|TIMEDOUT|NETUNREACH)|network/;

/**
 * Skips when an install failed because the registry is unreachable, outside CI only: CI reaches
 * the registry by contract, so there the caller's assertion fails instead.
 */
export function skipIfOffline(ctx: Mocha.Context, result: RunResult): void {
  const output = `${result.stderr}\n${result.stdout}`;
  if (result.code !== 0 && NETWORK.test(output) && process.env.CI !== 'true') {
    skipBecause(ctx, `the npm registry is unreachable: ${output.trim().split('\n')[0]}`);
  }
}

/**
 * pnpm, pinned, run from npm's exec cache rather than a devDependency: pnpm 12 ships as one
 * binary package per platform, which the repository's lockfile would then have to list in full
 * (a lockfile missing one fails `npm ci`).
 */
export const PNPM_VERSION = '12.26.0';
let pnpmPath: Promise<RunResult> | undefined;

/** pnpm with `args` in `cwd`; a failure to fetch pnpm itself comes back as the result. */
export async function pnpm(cwd: string, args: readonly string[]): Promise<RunResult> {
  pnpmPath ??= run(
    'npm',
    [
      'exec',
      '--yes',
      '--prefer-offline',
      `--package=pnpm@${PNPM_VERSION}`,
      '-c',
      'command -v pnpm',
    ],
    tmpdir(),
  );
  const located = await pnpmPath;
  const binary = located.stdout.trim().split('\n').pop() ?? '';
  if (located.code !== 0 || binary === '') return located;
  return run(binary, args, cwd);
}

export interface LockPackage {
  version?: string;
  resolved?: string;
  integrity?: string;
  peerDependencies?: Record<string, string>;
}
export type Lock = { packages: Record<string, LockPackage> };

export function readLock(dir: string): Lock {
  return JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as Lock;
}

/** Lockfile paths of every installed copy of `name`, with its version. */
export function copiesOf(lock: Lock, name: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === `node_modules/${name}` || path.endsWith(`/node_modules/${name}`)) {
      out.set(path, entry.version ?? '?');
    }
  }
  return out;
}

export function writeJson(file: string, value: unknown): void {
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** The version of a package in the repository's own node_modules (what the npm cache holds). */
export function repoVersionOf(name: string): string {
  const file = join(ROOT, 'node_modules', ...name.split('/'), 'package.json');
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

/** The test's own Node (the pinned one) with `args`, in `cwd`; returns stdout. */
export async function nodeIn(
  cwd: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<string> {
  const result = await run(
    process.execPath,
    args,
    cwd,
    { DATALAB_METRICS_HOST: '127.0.0.1', DATALAB_TRACES_DIR: TEST_TRACES_DIR, ...env },
    30_000,
  );
  if (result.code !== 0) {
    throw new Error(`node ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
  }
  return result.stdout;
}

export interface PackedDistro {
  /** Absolute path of the .tgz. */
  readonly tarball: string;
  /** Paths in the tarball (relative to the package root) with their sizes. */
  readonly files: ReadonlyMap<string, number>;
  /** Bytes of the .tgz. */
  readonly size: number;
  readonly unpackedSize: number;
  readonly entryCount: number;
}

let packed: Promise<PackedDistro> | undefined;

/**
 * `npm pack` of the working tree, once per test run, shared by every test that installs the
 * distro. Scripts are off: `npm test` has just built dist/ (pretest), and running `prepare` here
 * would rebuild it under the running suite. The build that `prepare` does on its own is what the
 * git-URL install proves.
 */
export function packedDistro(): Promise<PackedDistro> {
  packed ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'datalab-otel-pack-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const result = await npmOk(ROOT, [
      'pack',
      '--json',
      '--ignore-scripts',
      '--pack-destination',
      dir,
      ROOT,
    ]);
    const [info] = JSON.parse(result.stdout) as {
      filename: string;
      size: number;
      unpackedSize: number;
      entryCount: number;
      files: { path: string; size: number }[];
    }[];
    return {
      tarball: join(dir, info.filename),
      files: new Map(info.files.map((f) => [f.path, f.size])),
      size: info.size,
      unpackedSize: info.unpackedSize,
      entryCount: info.entryCount,
    };
  })();
  return packed;
}
