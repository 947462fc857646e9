#!/usr/bin/env node
// The end-to-end tests of what depends most on the Node.js runtime (the preload and its loader
// hooks, metrics, correlation and logs, health) on the newest release of other Node.js lines
// than the pinned one `npm test` runs on.
//
//   npm run test:matrix              # newest Node 22 and newest Node 26
//   npm run test:matrix -- 24 26     # other lines
//   node scripts/node-matrix.mjs --fetch-only    # only obtain the binaries and say which
//
// The binaries are the npm registry's node-<os>-<arch> packages (the ones the `node`
// devDependency installs), fetched with `npm pack` and kept under
// ${XDG_CACHE_HOME:-~/.cache}/datalab-otel/node/<version>. mocha itself runs on that Node, so
// process.execPath, which the tests spawn the fixture services with, is that Node too.
// Needs `npm run build` first (the npm script does it). Exits 1 if a test fails; a Node that
// cannot be obtained fails the run with CI=true and is skipped with the reason otherwise.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const IN_CI = process.env.CI === 'true';
const FETCH_ONLY = process.argv.includes('--fetch-only');
const ARGS = process.argv.slice(2).filter((a) => a !== '--fetch-only');
const LINES = ARGS.length > 0 ? ARGS : ['22', '26'];

/** What is tested on each line, and why these: each one exercises the runtime differently. */
const FILES = [
  'preload.test.js', // --import/--require/NODE_OPTIONS, the /metrics scrape, OTLP spans
  'entrypoints.test.js', // ESM and CommonJS loader hooks, loaded twice, disabled, exit paths
  'correlation.test.js', // context across fetch and node:http, correlation IDs in logs
  'server-timing.test.js', // ServerResponse.writeHead wrapped: Node's header merging rules
  'logging.test.js', // createLogger output, OTLP log export, the distro's own warnings
  'health.test.js', // zero-code health checks against real PostgreSQL and Redis
  'health-api.test.js', // the programmatic health API on Express and node:http
  'databases.test.js', // pg and ioredis instrumentation, pool and process metrics
].map((file) => join('dist', 'test', 'e2e', file));

const CACHE = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'datalab-otel', 'node');
const PACKAGE = `node-${process.platform === 'win32' ? 'win' : process.platform}-${process.arch}`;

const say = (line) => console.log(line);
const npm = (args) =>
  execFileSync('npm', args, { cwd: tmpdir(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function compareVersions(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

function cachedVersions(line) {
  if (!existsSync(CACHE)) return [];
  return readdirSync(CACHE)
    .filter((v) => /^\d+\.\d+\.\d+$/.test(v) && v.split('.')[0] === line)
    .filter((v) => existsSync(join(CACHE, v, 'bin', 'node')))
    .sort(compareVersions);
}

/** The newest published version of a Node.js line, from the registry. */
function newestVersion(line) {
  try {
    const out = JSON.parse(npm(['view', `${PACKAGE}@${line}`, 'version', '--json']));
    const versions = (Array.isArray(out) ? out : [out]).filter((v) => typeof v === 'string');
    const newest = versions.sort(compareVersions).at(-1);
    if (newest) return { version: newest };
    return { error: `the registry lists no ${PACKAGE}@${line}` };
  } catch (err) {
    return { error: `npm view ${PACKAGE}@${line} failed: ${firstLine(err)}` };
  }
}

/** Downloads and unpacks one version into the cache; the cache entry appears whole or not at all. */
function download(version) {
  mkdirSync(CACHE, { recursive: true });
  const work = mkdtempSync(join(CACHE, `.${version}-`));
  try {
    const [packed] = JSON.parse(
      npm(['pack', `${PACKAGE}@${version}`, '--pack-destination', work, '--json']),
    );
    execFileSync('tar', ['-xzf', join(work, packed.filename), '-C', work]);
    const bin = join(work, 'package', 'bin', 'node');
    const reported = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
    if (reported !== `v${version}`) throw new Error(`${PACKAGE}@${version} contains ${reported}`);
    // Another run may have filled the same entry meanwhile: theirs is as good as ours.
    if (!existsSync(join(CACHE, version))) renameSync(join(work, 'package'), join(CACHE, version));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The binary of the newest version of `line`: { version, bin, how } or { error }. */
function obtain(line) {
  const newest = newestVersion(line);
  if (newest.error) {
    const cached = cachedVersions(line).at(-1);
    // In CI the run must test the newest release, which only the registry can name.
    if (!cached || IN_CI) return { error: newest.error };
    return {
      version: cached,
      bin: join(CACHE, cached, 'bin', 'node'),
      how: `cached; the registry could not say whether it is the newest (${newest.error})`,
    };
  }
  const { version } = newest;
  const bin = join(CACHE, version, 'bin', 'node');
  if (existsSync(bin)) return { version, bin, how: 'cached' };
  try {
    download(version);
    return { version, bin, how: `downloaded ${PACKAGE}@${version}` };
  } catch (err) {
    return { error: `could not download ${PACKAGE}@${version}: ${firstLine(err)}` };
  }
}

function firstLine(err) {
  const text = String(err?.stderr || err?.message || err).trim();
  return text.split('\n').find((l) => /\S/.test(l) && !/^npm (warn|notice)/i.test(l)) ?? text;
}

function seconds(ms) {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

for (const file of FETCH_ONLY ? [] : FILES) {
  if (!existsSync(join(ROOT, file))) {
    console.error(`node-matrix: ${file} is missing: run \`npm run build\` first`);
    process.exit(1);
  }
}

// .mocharc.json holds timeout, slowness and reporter; the spec list is on the command line
// (package.json's test script names the whole suite), so only FILES run here.
const mochaArgs = [join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js'), ...FILES];

const results = [];
const started = Date.now();
for (const line of LINES) {
  const node = obtain(line);
  if (node.error) {
    const message = `Node.js ${line}: no binary (${node.error})`;
    if (IN_CI) {
      console.error(`\nnode-matrix: ${message}; CI needs every line of the matrix`);
      process.exit(1);
    }
    say(`\n== ${message}: skipped`);
    results.push({ line, outcome: `skipped: ${node.error}` });
    continue;
  }
  say(`\n== Node.js v${node.version} (${node.bin}, ${node.how})`);
  if (FETCH_ONLY) {
    results.push({ line, version: node.version, outcome: 'obtained' });
    continue;
  }
  const t0 = Date.now();
  const run = spawnSync(node.bin, mochaArgs, {
    cwd: ROOT,
    stdio: 'inherit',
    // Anything that runs `node` by name gets this Node as well, not the pinned one.
    env: { ...process.env, PATH: `${dirname(node.bin)}:${process.env.PATH ?? ''}` },
  });
  const ms = Date.now() - t0;
  const passed = run.status === 0;
  const outcome = run.error
    ? `could not run: ${run.error.message}`
    : passed
      ? 'passed'
      : `FAILED (${run.status ?? run.signal})`;
  results.push({ line, version: node.version, outcome, ms, ok: passed });
}

say('\n== Node.js matrix');
for (const r of results) {
  say(
    `  ${r.version ? `v${r.version}` : r.line}: ${r.outcome}${r.ms === undefined ? '' : ` in ${seconds(r.ms)}`}`,
  );
}
say(`  total ${seconds(Date.now() - started)}`);
process.exit(results.every((r) => r.ok !== false) ? 0 : 1);
