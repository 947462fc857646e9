/**
 * Koa route source: the template `@koa/router` (or the older `koa-router`) routed a request on.
 *
 * The router writes the matched layer's path, every router prefix and nested-router mount path
 * included, to `ctx._matchedRoute`: once when it picks the route, then again as each matched
 * layer of the chain runs, so the last value is the route whose handler ran last. Koa publishes
 * no diagnostics channel, and `ctx` cannot be reached from the node request when the response
 * closes, so the value is taken as it is written: an accessor for `_matchedRoute` on Koa's
 * context prototype (every `ctx` inherits it) copies it into the request record, unless it is the
 * path of `router.use()` middleware rather than a route. A request a router saw and matched to no
 * route is marked unmatched by a wrapper of the router's dispatch middleware. A router inside an
 * app mounted with koa-mount gets the mount path back. A Koa app with no router keeps the
 * normalised path: Koa alone has no routes.
 *
 * Per request: one accessor call per write of `_matchedRoute` (the value is stored on `ctx`, as
 * the router's own property would be) and one wrapper call per router dispatch; no allocation (a
 * RegExp route path is stringified once, a mount path and template joined once).
 */
import type { IncomingMessage } from 'node:http';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
} from '@opentelemetry/instrumentation';
import { recordOf } from '../request/record';
import { DISTRO_VERSION } from '../version';
import { warnOnce } from '../warnings';

const KOA_VERSIONS = ['>=2 <4'];
/** `ctx.matched` and `ctx._matchedRoute` as read here exist in every release of these ranges. */
const KOA_ROUTER_VERSIONS = ['>=8 <16'];
const LEGACY_ROUTER_VERSIONS = ['>=7 <15'];

const kValue = Symbol('datalab.otel.koaMatchedRoute');
const kOriginal = Symbol('datalab.otel.koaRouter');
const MATCHED_ROUTE = '_matchedRoute';

/** What the routers put on a layer: its path (a template or a RegExp) and its methods (none for
 * middleware added with `router.use()`). */
interface Layer {
  readonly path?: unknown;
  readonly methods?: readonly string[];
}
interface KoaContext {
  req?: IncomingMessage;
  method?: string;
  /** The URL as it arrived, and the path the middleware now sees (koa-mount shortens it). */
  originalUrl?: unknown;
  path?: unknown;
  /** Set by koa-mount when a request enters a mounted app (and left set after). */
  mountPath?: unknown;
  /** Every layer whose path matched, in order, appended to by each router the request reaches. */
  matched?: readonly Layer[];
  [MATCHED_ROUTE]?: unknown;
  [kValue]?: unknown;
}
type Next = () => unknown;
type Dispatch = ((this: unknown, ctx: KoaContext, next: Next) => unknown) & {
  [kOriginal]?: Dispatch;
};
type Factory = ((this: unknown, ...args: unknown[]) => unknown) & { [kOriginal]?: Factory };
interface RouterProto {
  middleware?: Factory;
  routes?: Factory;
}

export class KoaRouteSource extends InstrumentationBase {
  constructor() {
    super('@datalab/otel/routes-koa', DISTRO_VERSION, {});
  }

  protected init() {
    const identity = (mod: unknown) => mod;
    const router = (name: string, versions: string[]) =>
      new InstrumentationNodeModuleDefinition(
        name,
        versions,
        (mod: unknown) => {
          guarded('patching the router', () => patchRouter(routerClass(mod)));
          return mod;
        },
        (mod: unknown) => guarded('unpatching the router', () => unpatchRouter(routerClass(mod))),
      );
    return [
      new InstrumentationNodeModuleDefinition('koa', KOA_VERSIONS, identity, () => {}, [
        new InstrumentationNodeModuleFile(
          'koa/lib/context.js',
          KOA_VERSIONS,
          (proto: unknown) => {
            guarded('patching the context', () => defineMatchedRoute(proto));
            return proto;
          },
          (proto: unknown) => guarded('unpatching the context', () => removeMatchedRoute(proto)),
        ),
      ]),
      router('@koa/router', KOA_ROUTER_VERSIONS),
      router('koa-router', LEGACY_ROUTER_VERSIONS),
    ];
  }
}

function guarded(what: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    report(
      'koa-route-patch',
      `Koa route source: ${what} failed; endpoints fall back to the path`,
      err,
    );
  }
}

function report(key: string, what: string, err: unknown): void {
  warnOnce(
    'DLOTEL_INTERNAL_ERROR',
    key,
    `${what}: ${err instanceof Error ? err.message : String(err)}`,
  );
}

/**
 * The Router class, from its CommonJS exports (the class itself, v15 adding itself as `default`)
 * or an ES module namespace (`default` and the named `Router`).
 */
function routerClass(mod: unknown): { prototype: RouterProto } | undefined {
  const candidates = [
    mod,
    (mod as { default?: unknown })?.default,
    (mod as { Router?: unknown })?.Router,
  ];
  for (const c of candidates) {
    if (typeof c === 'function' && typeof (c.prototype as RouterProto)?.middleware === 'function') {
      return c as { prototype: RouterProto };
    }
  }
  return undefined;
}

// --- ctx._matchedRoute -------------------------------------------------------------------------

/**
 * An accessor on Koa's context prototype: the value lives on each `ctx` under a symbol (what the
 * router and the application read back is what they wrote), and each write of a template also
 * lands in the request record.
 */
export function defineMatchedRoute(proto: unknown): void {
  if (proto === null || typeof proto !== 'object') return;
  // Once, whichever hook (require or import) reaches the file first; and never over a property
  // someone else defined.
  if (Object.getOwnPropertyDescriptor(proto, MATCHED_ROUTE) !== undefined) return;
  Object.defineProperty(proto, MATCHED_ROUTE, {
    configurable: true,
    enumerable: false,
    get: getMatchedRoute,
    set: setMatchedRoute,
  });
}

export function removeMatchedRoute(proto: unknown): void {
  if (proto === null || typeof proto !== 'object') return;
  if (Object.getOwnPropertyDescriptor(proto, MATCHED_ROUTE)?.get === getMatchedRoute) {
    delete (proto as KoaContext)[MATCHED_ROUTE];
  }
}

function getMatchedRoute(this: KoaContext): unknown {
  return this[kValue];
}

/**
 * The router writes the route it picked, then, as the chain runs, the path of each layer reached:
 * routes (so the one whose handler ran last wins, `/users/me` over `/users/:id`) and also
 * `router.use()` middleware, whose paths (`/api(?:\/|$)`) are no route: a request such a
 * middleware answers (a 401) stays on the route the router picked.
 */
function setMatchedRoute(this: KoaContext, value: unknown): void {
  this[kValue] = value;
  try {
    const record = recordOf(this.req);
    if (record === undefined) return;
    const template = templateOf(value);
    if (template !== undefined && !isMiddlewarePath(this.matched, value)) {
      record.template = this.mountPath === undefined ? template : withMount(this, template);
    }
  } catch (err) {
    report(
      'koa-route-accessor',
      'Koa route source: reading the matched route failed and was skipped',
      err,
    );
  }
}

const regexpTemplates = new WeakMap<RegExp, string>();

/** A layer's path: a string template, or a RegExp for routes declared with one. */
export function templateOf(path: unknown): string | undefined {
  if (typeof path === 'string') return path === '' ? undefined : path;
  if (path instanceof RegExp) {
    let template = regexpTemplates.get(path);
    if (template === undefined) {
      template = String(path);
      regexpTemplates.set(path, template);
    }
    return template;
  }
  return undefined;
}

// --- router dispatch -----------------------------------------------------------------------------

/**
 * `routes()` and `middleware()` (one function in older releases, `routes()` calling
 * `middleware()` in newer ones) return the dispatch middleware; each returned function is
 * wrapped once, when the application builds it.
 */
export function patchRouter(cls: { prototype: RouterProto } | undefined): void {
  if (cls === undefined) throw new Error('no Router class with a middleware() method');
  const proto = cls.prototype;
  for (const name of ['middleware', 'routes'] as const) {
    const original = proto[name];
    if (typeof original !== 'function' || original[kOriginal] !== undefined) continue;
    const factory: Factory = function (this: unknown) {
      // biome-ignore lint/complexity/noArguments: passes the router's own arguments through
      return wrapDispatch(original.apply(this, arguments as unknown as unknown[]));
    };
    factory[kOriginal] = original;
    proto[name] = factory;
  }
}

export function unpatchRouter(cls: { prototype: RouterProto } | undefined): void {
  if (cls === undefined) return;
  const proto = cls.prototype;
  for (const name of ['middleware', 'routes'] as const) {
    const original = proto[name]?.[kOriginal];
    if (original !== undefined) proto[name] = original;
  }
}

function wrapDispatch(result: unknown): unknown {
  if (typeof result !== 'function') return result;
  const dispatch = result as Dispatch;
  // routes() calling the patched middleware() hands back an already wrapped function.
  if (dispatch[kOriginal] !== undefined) return dispatch;
  const wrapped: Dispatch = function dispatchWithRoute(this: unknown, ctx, next) {
    const out = dispatch.call(this, ctx, next);
    noteDispatched(ctx);
    return out;
  };
  // `router` marks a nested router for use(): a parent copies the nested router's layers.
  Object.assign(wrapped, dispatch);
  wrapped[kOriginal] = dispatch;
  return wrapped;
}

/**
 * After the router's synchronous part: it has written `_matchedRoute` when a route matched (a
 * router after it, reached through `next()` in the same tick, too). None: the request reached a
 * router and matched no route. A router or route matched later still sets the route, which wins.
 */
function noteDispatched(ctx: KoaContext): void {
  try {
    const record = recordOf(ctx?.req);
    if (record === undefined || record.template !== undefined) return;
    // No route yet: the context accessor missing (Koa not hooked), or older routers picking a
    // `router.use()` layer registered after the route. The route the router matched is the last
    // route layer for the method, as the routers' own match() decides.
    const template = templateOf(routeLayerPath(ctx.matched, ctx.method));
    if (template !== undefined) {
      record.template = ctx.mountPath === undefined ? template : withMount(ctx, template);
    } else record.unmatched = true;
  } catch (err) {
    report(
      'koa-route-dispatch',
      'Koa route source: reading the routing outcome failed and was skipped',
      err,
    );
  }
}

/** Whether `path` is that of a `router.use()` layer the request matched and of no route layer. */
export function isMiddlewarePath(matched: readonly Layer[] | undefined, path: unknown): boolean {
  if (!Array.isArray(matched)) return false; // a router that keeps no list: take its word
  let middleware = false;
  for (let i = matched.length - 1; i >= 0; i--) {
    const layer = matched[i] as Layer;
    if (layer.path !== path) continue;
    if ((layer.methods?.length ?? 0) > 0) return false;
    middleware = true;
  }
  return middleware;
}

/** The path of the last layer in `matched` that is a route for `method`, if any. */
export function routeLayerPath(
  matched: readonly Layer[] | undefined,
  method: string | undefined,
): unknown {
  if (!Array.isArray(matched) || method === undefined) return undefined;
  for (let i = matched.length - 1; i >= 0; i--) {
    const methods = (matched[i] as Layer).methods;
    if (methods !== undefined && methods.length > 0 && methods.includes(method)) {
      return (matched[i] as Layer).path;
    }
  }
  return undefined;
}

// --- koa-mount ---------------------------------------------------------------------------------

function withMount(ctx: KoaContext, template: string): string {
  const { originalUrl, path } = ctx;
  if (typeof originalUrl !== 'string' || typeof path !== 'string') return template;
  return mountedTemplate(template, originalUrl, path);
}

/** template → [prefix, full template, prefix, full template, …], so that a hit builds no string. */
const mountedTemplates = new Map<string, string[]>();
const MAX_CACHED_TEMPLATES = 1000;
const MAX_PREFIXES_PER_TEMPLATE = 16;

/**
 * A router inside an app mounted with koa-mount sees the URL without the mount path: that path is
 * what the URL as it arrived has before the path the router sees (koa-mount's prefixes are
 * literal, so the prefix is the mount path itself, nested mounts joined). `path` not a tail of
 * the original URL (a rewrite, not a mount): the template alone.
 */
export function mountedTemplate(template: string, originalUrl: string, path: string): string {
  let end = originalUrl.indexOf('?');
  if (end === -1) end = originalUrl.length;
  let prefixLength = end - path.length;
  // `/images` mounted at `/images`: the app sees `/`.
  if (path === '/' && originalUrl.charCodeAt(end - 1) !== 0x2f) prefixLength = end;
  else if (prefixLength <= 0 || !originalUrl.startsWith(path, prefixLength)) return template;
  if (prefixLength <= 0) return template;
  let entries = mountedTemplates.get(template);
  if (entries !== undefined) {
    for (let i = 0; i < entries.length; i += 2) {
      const prefix = entries[i] as string;
      if (prefix.length === prefixLength && originalUrl.startsWith(prefix)) {
        return entries[i + 1] as string;
      }
    }
  }
  const prefix = originalUrl.slice(0, prefixLength);
  const full = template === '/' ? prefix : `${prefix}${template}`;
  if (entries === undefined && mountedTemplates.size < MAX_CACHED_TEMPLATES) {
    entries = [];
    mountedTemplates.set(template, entries);
  }
  if (entries !== undefined && entries.length < 2 * MAX_PREFIXES_PER_TEMPLATE) {
    entries.push(prefix, full);
  }
  return full;
}
