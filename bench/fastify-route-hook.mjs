#!/usr/bin/env node
// What the Fastify route source adds to a request, in nanoseconds, measured in one process on
// real Fastify objects (the devDependency Fastify): the distro's onRequest hook run by Fastify's
// own hook runner, against the same request without it, and against the hook read through the
// public `request.routeOptions.url`. See docs/performance.md.
//
// usage: npm run build && node bench/fastify-route-hook.mjs [--calls N] [--rounds N]
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { ROOT } from './lib/setup.mjs';

const require = createRequire(`${ROOT}/package.json`);
const { values } = parseArgs({
  options: { calls: { type: 'string' }, rounds: { type: 'string' } },
});
const CALLS = Number(values.calls ?? 2_000_000);
const ROUNDS = Number(values.rounds ?? 7);

const fastify = require('fastify');
const { version } = require('fastify/package.json');
// Fastify's own hook runner (the one every onRequest hook goes through): not a public export.
const { onRequestHookRunner } = require('fastify/lib/hooks.js');
const { createRouteHook } = require(`${ROOT}/dist/src/routes/fastify.js`);
const { RequestRecord } = require(`${ROOT}/dist/src/request/record.js`);

// Real Request and Reply objects of a routed request, with a distro record on the raw request.
const app = fastify({
  genReqId(raw) {
    new RequestRecord(raw, {}, 0, true);
    return 'r';
  },
});
let captured;
app.register(
  async (api) => {
    api.get('/users/:id', async () => ({}));
  },
  { prefix: '/api/v1' },
);
app.addHook('onRequest', (request, reply, done) => {
  captured ??= { request, reply };
  done();
});
await app.inject({ method: 'GET', url: '/api/v1/users/1' });
await app.close();
const { request, reply } = captured;

const routeHook = createRouteHook();
const appHook = (_request, _reply, done) => done();
const viaRouteOptions = (req, _reply, done) => {
  const url = req.routeOptions.url;
  if (url === undefined) req.raw.unmatched = true;
  done();
};
let continued = 0;
const next = () => {
  continued++;
};

const variants = {
  'no onRequest hook': () => next(null, request, reply),
  'runner, the route hook': () => onRequestHookRunner([routeHook], request, reply, next),
  'runner, an application hook': () => onRequestHookRunner([appHook], request, reply, next),
  'runner, route + application hook': () =>
    onRequestHookRunner([routeHook, appHook], request, reply, next),
  'runner, a routeOptions.url hook': () =>
    onRequestHookRunner([viaRouteOptions], request, reply, next),
  'the route hook alone': () => routeHook(request, reply, next),
  'a routeOptions.url hook alone': () => viaRouteOptions(request, reply, next),
};

function time(fn) {
  for (let i = 0; i < CALLS / 10; i++) fn();
  const start = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) fn();
  return Number(process.hrtime.bigint() - start) / CALLS;
}

const results = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, fn] of Object.entries(variants)) results[name].push(time(fn));
}
console.log(`Fastify ${version}, Node ${process.version}, ${CALLS} calls x ${ROUNDS} rounds`);
for (const [name, ns] of Object.entries(results)) {
  ns.sort((a, b) => a - b);
  const median = ns[Math.floor(ns.length / 2)];
  console.log(`${name.padEnd(36)} ${median.toFixed(1).padStart(6)} ns/request (median)`);
}
if (continued === 0) throw new Error('nothing ran');
