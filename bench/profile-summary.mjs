#!/usr/bin/env node
// Summarises a V8 .cpuprofile written by `npm run bench -- --profile`: where the server's CPU
// time went, per request. Frames of the distro are mapped back to src/*.ts through the source
// maps in dist/.
//
// usage: node bench/profile-summary.mjs FILE.cpuprofile [--requests N] [--top N] [--callers FN]
// (the request count is read from FILE.cpuprofile.meta.json, written by the benchmark)
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ROOT } from './lib/setup.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    requests: { type: 'string' },
    top: { type: 'string' },
    callers: { type: 'string' },
    depth: { type: 'string' },
  },
});
const file = positionals[0];
if (!file) {
  console.error('usage: node bench/profile-summary.mjs FILE.cpuprofile [--requests N] [--top N]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
const meta = existsSync(`${file}.meta.json`)
  ? JSON.parse(readFileSync(`${file}.meta.json`, 'utf8'))
  : {};
const requests = Number(values.requests ?? meta.requests ?? Number.NaN);
const top = Number(values.top ?? 25);

const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Time of each sample: until the next one (the last sample gets the mean).
const self = new Map();
const { samples, timeDeltas } = profile;
let total = 0;
for (let i = 0; i < samples.length; i++) {
  const dt = i + 1 < timeDeltas.length ? timeDeltas[i + 1] : 0;
  self.set(samples[i], (self.get(samples[i]) ?? 0) + dt);
  total += dt;
}

const maps = new Map();
function sourceMapOf(path) {
  if (!maps.has(path)) {
    let map;
    try {
      map = new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8')));
    } catch {
      map = undefined;
    }
    maps.set(path, map);
  }
  return maps.get(path);
}

function location(cf) {
  if (!cf.url) return '';
  let path = cf.url;
  if (path.startsWith('file://')) path = fileURLToPath(path);
  if (path.includes('/dist/')) {
    const entry = sourceMapOf(path)?.findEntry(cf.lineNumber, cf.columnNumber);
    if (entry?.originalSource) {
      let src = entry.originalSource;
      if (src.startsWith('file://')) src = fileURLToPath(src);
      else src = new URL(src, `file://${path}`).pathname;
      return `${relative(ROOT, src)}:${entry.originalLine + 1}`;
    }
  }
  const nm = path.lastIndexOf('node_modules/');
  if (nm !== -1) return `${path.slice(nm + 13)}:${cf.lineNumber + 1}`;
  return `${path.startsWith('/') ? relative(ROOT, path) : path}:${cf.lineNumber + 1}`;
}

/** Coarse owner of a frame: the distro, an npm package, Node itself, the app, or V8. */
function category(cf) {
  const url = cf.url ?? '';
  if (!url) return cf.functionName.startsWith('(') ? cf.functionName : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  if (url.includes('/dist/src/') || url.includes('/dist/register')) return '@datalab/otel';
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + 13).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.includes('/bench/')) return 'application';
  return url;
}

const per = (us) =>
  Number.isFinite(requests) && requests > 0
    ? `${(us / requests).toFixed(2).padStart(7)} µs/req`
    : `${(us / 1000).toFixed(1).padStart(8)} ms`;
const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;

const idle = [...self].reduce(
  (n, [id, t]) => (nodes.get(id).callFrame.functionName === '(idle)' ? n + t : n),
  0,
);
console.log(
  `${file}\n${(total / 1000).toFixed(0)} ms profiled, ${((total - idle) / 1000).toFixed(0)} ms busy${
    Number.isFinite(requests)
      ? `, ${requests} requests: ${((total - idle) / requests).toFixed(1)} µs busy per request`
      : ''
  }${meta.server ? ` (${meta.server} under ${meta.config})` : ''}\n`,
);

// Self time by owner.
const byCategory = new Map();
for (const [id, t] of self) {
  const c = category(nodes.get(id).callFrame);
  byCategory.set(c, (byCategory.get(c) ?? 0) + t);
}
console.log('self time by owner:');
for (const [c, t] of [...byCategory].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`  ${per(t)} ${pct(t)}  ${c}`);
}

// Inclusive time by owner: each sample counts once for every owner on its stack.
const inclusiveCategory = new Map();
const inclusiveFn = new Map();
for (const [id, t] of self) {
  const seenCat = new Set();
  const seenFn = new Set();
  for (let n = id; n !== undefined; n = parent.get(n)) {
    const cf = nodes.get(n).callFrame;
    const c = category(cf);
    if (!seenCat.has(c)) {
      seenCat.add(c);
      inclusiveCategory.set(c, (inclusiveCategory.get(c) ?? 0) + t);
    }
    const key = `${cf.functionName || '(anonymous)'}  ${location(cf)}`;
    if (c === '@datalab/otel' && !seenFn.has(key)) {
      seenFn.add(key);
      inclusiveFn.set(key, (inclusiveFn.get(key) ?? 0) + t);
    }
  }
}
console.log('\ninclusive time by owner (time with a frame of it on the stack):');
for (const [c, t] of [...inclusiveCategory].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  if (c === '(root)') continue;
  console.log(`  ${per(t)} ${pct(t)}  ${c}`);
}

const selfFn = new Map();
for (const [id, t] of self) {
  const cf = nodes.get(id).callFrame;
  const key = `${cf.functionName || '(anonymous)'}  ${location(cf) || category(cf)}`;
  selfFn.set(key, (selfFn.get(key) ?? 0) + t);
}
console.log('\nfunctions by self time:');
for (const [k, t] of [...selfFn].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`  ${per(t)} ${pct(t)}  ${k}`);
}

if (inclusiveFn.size > 0) {
  console.log('\n@datalab/otel functions by inclusive time:');
  for (const [k, t] of [...inclusiveFn].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`  ${per(t)} ${pct(t)}  ${k}`);
  }
}

// --callers NAME [--depth N]: the call stacks (N frames, default 6) that lead to functions NAME.
if (values.callers) {
  const stacks = new Map();
  for (const [id, t] of self) {
    if (nodes.get(id).callFrame.functionName !== values.callers) continue;
    const frames = [];
    for (
      let n = parent.get(id);
      n !== undefined && frames.length < Number(values.depth ?? 6);
      n = parent.get(n)
    ) {
      const cf = nodes.get(n).callFrame;
      if (cf.functionName === '(root)') break;
      frames.push(`${cf.functionName || '(anonymous)'} ${location(cf)}`);
    }
    const key = frames.join('\n      <- ');
    stacks.set(key, (stacks.get(key) ?? 0) + t);
  }
  console.log(`\ncallers of ${values.callers}:`);
  for (const [k, t] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
    console.log(`  ${per(t)} ${pct(t)}\n      <- ${k}`);
  }
}
