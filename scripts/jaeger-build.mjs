// `npm run jaeger:build`: compiles the Jaeger v2 binary (github.com/jaegertracing/jaeger/cmd/jaeger,
// pinned in collector/jaeger/go.mod as a Go tool) into .datalab/jaeger/jaeger. The gateway-tier
// tests start it with in-memory storage as the trace store. A stamp beside the binary holds a hash
// of go.mod, go.sum and the Go version: while none changed, the binary is reused and nothing is
// compiled (a cold build takes minutes and GBs of memory, so CI builds it once per run).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'collector', 'jaeger');
const outDir = join(root, '.datalab', 'jaeger');
const binary = join(outDir, 'jaeger');
const stampFile = `${binary}.stamp`;

function fail(message) {
  console.error(`jaeger:build: ${message}`);
  process.exit(1);
}

const goVersion = spawnSync('go', ['version'], { encoding: 'utf8' });
if (goVersion.error || goVersion.status !== 0) {
  fail(`Go is needed to build Jaeger (${goVersion.error?.message ?? goVersion.stderr})`);
}

const hash = createHash('sha256');
hash.update(goVersion.stdout);
hash.update('CGO_ENABLED=0');
for (const name of ['go.mod', 'go.sum']) {
  hash.update(`${name}\0`);
  hash.update(readFileSync(join(source, name)));
}
const stamp = hash.digest('hex');

if (existsSync(binary) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) {
  console.log(`jaeger:build: ${binary} is up to date`);
} else {
  mkdirSync(outDir, { recursive: true });
  const started = Date.now();
  const partial = `${binary}.partial`;
  console.log(`jaeger:build: compiling jaeger (${goVersion.stdout.trim()}) ...`);
  const build = spawnSync(
    'go',
    [
      'build',
      '-trimpath',
      '-ldflags=-s -w',
      '-o',
      partial,
      'github.com/jaegertracing/jaeger/cmd/jaeger',
    ],
    { cwd: source, stdio: 'inherit', env: { ...process.env, CGO_ENABLED: '0' } },
  );
  if (build.status !== 0) fail(`go build failed (${build.status ?? build.signal})`);
  renameSync(partial, binary);
  writeFileSync(stampFile, stamp);
  console.log(`jaeger:build: built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

// The binary states no version of its own when built outside Jaeger's release scripts; go.mod
// names the one it was built from.
const version = spawnSync(binary, ['version'], { encoding: 'utf8' });
if (version.status !== 0) fail(`${binary} version failed: ${version.stderr}`);
const pinned = /^\s*github\.com\/jaegertracing\/jaeger (v\S+)/m.exec(
  readFileSync(join(source, 'go.mod'), 'utf8'),
)?.[1];
console.log(
  `jaeger ${pinned ?? '(version not in go.mod)'} (github.com/jaegertracing/jaeger/cmd/jaeger)`,
);
