/**
 * Route sources: where the `endpoint` label and the server span's `http.route` come from for
 * frameworks other than Express (whose own request properties metrics/http.ts reads). Each source
 * writes the template the framework routed on into the request record (`record.template`, which wins over what an instrumentation
 * left in `record.route`), or marks
 * the request `record.unmatched` when the framework routed it to no route. They run in traced and
 * metrics-only mode alike and need no instrumentation package: a diagnostics channel the
 * framework publishes, or a module hook that loads the source's code only when the application
 * loads the framework.
 */
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { FastifyRouteSource } from './fastify';
import { HapiRouteSource } from './hapi';
import { KoaRouteSource } from './koa';

/** Every route source, each inert until its framework is loaded. */
export function createRouteSources(): Instrumentation[] {
  return [
    // Fastify 4 and 5 (NestJS's Fastify adapter too): one onRequest hook per instance.
    new FastifyRouteSource(),
    // Koa with @koa/router or koa-router: ctx._matchedRoute.
    new KoaRouteSource(),
    // hapi: request.route.path once hapi routed the request.
    new HapiRouteSource(),
  ];
}
