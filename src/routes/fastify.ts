/**
 * Fastify (4 and 5, and NestJS on its Fastify adapter): the template a request was routed on,
 * with every `register()` prefix, or `__unmatched__` for requests Fastify gave its not-found
 * handler (its default one, or the application's `setNotFoundHandler`).
 *
 * Every Fastify release of both majors publishes `fastify.initialization` with each root instance
 * it creates, before the application registers plugins or routes. The instance then gets one
 * `onRequest` hook: added first to the root, it is inherited by every plugin context and the
 * not-found contexts, and it runs before any hook of the application (an authentication hook
 * that answers 401 does not hide the route). No Fastify module is required here: until the
 * application creates an instance, the subscription is all this costs.
 *
 * Fastify 5's `tracing:fastify.request.handler` channel carries the template too, but only for
 * requests that reach a route handler (not not-found ones, nor ones a hook answered), and a
 * subscriber makes Fastify allocate a message object per request.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingMessage } from 'node:http';
import { InstrumentationBase } from '@opentelemetry/instrumentation';
import { recordOf } from '../request/record';
import { DISTRO_NAME, DISTRO_VERSION } from '../version';
import { warnOnce } from '../warnings';

export const FASTIFY_INITIALIZATION_CHANNEL = 'fastify.initialization';

/** What Fastify keeps of the route a request was routed to (its "context"). */
interface FastifyRouteContext {
  /** `url` is the full template, prefixes included; absent in not-found contexts. */
  readonly config?: { readonly url?: unknown } | null;
}

/** The parts of a Fastify request read here. */
export interface FastifyRequestLike {
  readonly raw?: IncomingMessage;
  readonly is404?: boolean;
  readonly routeOptions?: { readonly url?: unknown };
  [key: symbol]: unknown;
}

interface FastifyInstanceLike {
  addHook(name: 'onRequest', hook: OnRequestHook): unknown;
}

type OnRequestHook = (request: FastifyRequestLike, reply: unknown, done: () => void) => void;

/** Description of the symbol under which a Fastify request (4.10 and later) keeps its context. */
const CONTEXT_SYMBOL_DESCRIPTION = 'fastify.context';

/**
 * The own symbol-keyed property of a Fastify request that holds its route context, if any.
 * Found once per Fastify instance, from its first request.
 */
export function findContextKey(request: object): symbol | undefined {
  for (const key of Object.getOwnPropertySymbols(request)) {
    if (key.description === CONTEXT_SYMBOL_DESCRIPTION) return key;
  }
  return undefined;
}

/**
 * The template of a route context: the route's full URL (`config.url`), `'/'` for a route
 * registered as `''` at the root, or undefined for a not-found context.
 */
export function contextTemplate(context: FastifyRouteContext | undefined): string | undefined {
  const url = context?.config?.url;
  if (typeof url !== 'string') return undefined;
  return url === '' ? '/' : url;
}

/**
 * Builds the `onRequest` hook of one Fastify instance. The route's template is read from the
 * request's context: `request.routeOptions` would give the same `url`, but it builds a
 * thirteen-field object on every read (three times the hook's cost, bench/fastify-route-hook.mjs).
 * The context's key is Fastify's private symbol, found by its description; should a release
 * rename it, the public `is404` and `routeOptions` answer instead. One hook per instance, so
 * that two copies of Fastify in one process (each with its own symbols) do not share a key.
 */
export function createRouteHook(): OnRequestHook {
  let contextKey: symbol | undefined;
  let keyless = false;

  return function recordFastifyRoute(request, _reply, done) {
    try {
      const record = recordOf(request.raw);
      if (record !== undefined) {
        let context: FastifyRouteContext | undefined;
        if (contextKey !== undefined) {
          context = request[contextKey] as FastifyRouteContext | undefined;
        }
        if (context === undefined && !keyless) {
          contextKey = findContextKey(request);
          if (contextKey === undefined) keyless = true;
          else context = request[contextKey] as FastifyRouteContext | undefined;
        }
        if (context !== undefined) {
          const template = contextTemplate(context);
          if (template === undefined) record.unmatched = true;
          else record.template = template;
        } else if (request.is404 === true) {
          record.unmatched = true;
        } else {
          const url = request.routeOptions?.url;
          if (typeof url === 'string') record.template = url === '' ? '/' : url;
        }
      }
    } catch (err) {
      reportInternal(err);
    }
    done();
  };
}

function onInitialization(message: unknown): void {
  // A subscriber that throws would make Node rethrow in the application (process.nextTick).
  try {
    const fastify = (message as { fastify?: FastifyInstanceLike } | null)?.fastify;
    if (typeof fastify?.addHook !== 'function') return;
    fastify.addHook('onRequest', createRouteHook());
  } catch (err) {
    reportInternal(err);
  }
}

/** The Fastify route source: subscribed while enabled. Hooks already added stay (they only
 * write the request record, which nothing reads once the metrics have stopped). */
export class FastifyRouteSource extends InstrumentationBase {
  constructor() {
    super(`${DISTRO_NAME}/routes-fastify`, DISTRO_VERSION, {});
  }

  protected init() {
    return [];
  }

  override enable(): void {
    super.enable();
    // Unsubscribing first keeps enable() idempotent (a channel takes one function twice).
    diagnosticsChannel.unsubscribe(FASTIFY_INITIALIZATION_CHANNEL, onInitialization);
    diagnosticsChannel.subscribe(FASTIFY_INITIALIZATION_CHANNEL, onInitialization);
  }

  override disable(): void {
    super.disable();
    diagnosticsChannel.unsubscribe(FASTIFY_INITIALIZATION_CHANNEL, onInitialization);
  }
}

function reportInternal(err: unknown): void {
  warnOnce(
    'DLOTEL_INTERNAL_ERROR',
    'routes-fastify',
    `Fastify route hook failed and was skipped: ${err instanceof Error ? err.message : String(err)}`,
  );
}
