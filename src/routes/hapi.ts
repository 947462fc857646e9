/**
 * hapi route source: the path of the route hapi routed a request to, in hapi's own template
 * syntax (`/users/{id}`), plugin `routes.prefix` included (hapi prepends it when the route is
 * added). That is what `request.route.path` says and what upstream's instrumentation-hapi reports
 * as `http.route`. hapi publishes no diagnostics channel; routing happens in one private method
 * of its Request, `_lookup()`, called once per request after the `onRequest` extensions (which may
 * rewrite the URL) and before any handler: the route is read right after it. A request hapi routed
 * to one of its special routes (`method: '_special'`: not found, bad request path, CORS
 * pre-flight) is unmatched.
 *
 * Per request: one wrapper call and a few property reads; no ext point is added, so hapi's own
 * request lifecycle is unchanged.
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

/** `Request.prototype._lookup` and `request.route.{method,path}` have this shape since hapi 17. */
const VERSIONS = ['>=17 <22'];
const kOriginal = Symbol('datalab.otel.hapiLookup');

interface HapiRequest {
  raw?: { req?: IncomingMessage };
  route?: { method?: unknown; path?: unknown };
}
type Lookup = ((this: HapiRequest) => unknown) & { [kOriginal]?: Lookup };
interface RequestClass {
  prototype: { _lookup?: Lookup };
}

export class HapiRouteSource extends InstrumentationBase {
  constructor() {
    super('@datalab/otel/routes-hapi', DISTRO_VERSION, {});
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition(
        '@hapi/hapi',
        VERSIONS,
        (mod: unknown) => mod,
        () => {},
        [
          new InstrumentationNodeModuleFile(
            '@hapi/hapi/lib/request.js',
            VERSIONS,
            (cls: RequestClass) => {
              try {
                patchLookup(cls);
              } catch (err) {
                report(
                  'hapi-route-patch',
                  'hapi route source: patching Request failed; endpoints fall back to the path',
                  err,
                );
              }
              return cls;
            },
            (cls: RequestClass | undefined) => unpatchLookup(cls),
          ),
        ],
      ),
    ];
  }
}

function report(key: string, what: string, err: unknown): void {
  warnOnce(
    'DLOTEL_INTERNAL_ERROR',
    key,
    `${what}: ${err instanceof Error ? err.message : String(err)}`,
  );
}

export function patchLookup(cls: RequestClass): void {
  const proto = cls?.prototype;
  const original = proto?._lookup;
  if (typeof original !== 'function') throw new Error('Request has no _lookup()');
  // The same file can reach us twice (require and import hooks): wrap once.
  if (original[kOriginal] !== undefined) return;
  const lookup: Lookup = function _lookup(this: HapiRequest) {
    const out = original.call(this);
    noteRoute(this);
    return out;
  };
  lookup[kOriginal] = original;
  proto._lookup = lookup;
}

export function unpatchLookup(cls: RequestClass | undefined): void {
  // Only when ours is still on top: unwrapping from under another wrapper would remove it too.
  const proto = cls?.prototype;
  const original = proto?._lookup?.[kOriginal];
  if (proto && original !== undefined) proto._lookup = original;
}

function noteRoute(request: HapiRequest): void {
  try {
    const record = recordOf(request.raw?.req);
    if (record === undefined) return; // server.inject(), or a request the distro does not track
    const route = request.route;
    if (route === undefined) return;
    if (route.method === '_special') {
      record.unmatched = true;
      return;
    }
    const path = route.path;
    if (typeof path === 'string' && path !== '') record.template = path;
  } catch (err) {
    report(
      'hapi-route',
      'hapi route source: reading the matched route failed and was skipped',
      err,
    );
  }
}
