/**
 * One `@opentelemetry/api` for everything the distro loads.
 *
 * npm places a package as high in the tree as its own peer range allows. In an application whose
 * OpenTelemetry 2.x packages keep `@opentelemetry/api` 1.9 at the top of node_modules, the contrib
 * instrumentations that accept any api from 1.3 or 1.7 land next to that 1.9, while the SDK 3
 * packages they bring (`@opentelemetry/instrumentation` 0.300, `@opentelemetry/core` 3) need 1.10
 * (npm only warns "ERESOLVE overriding peer dependency"). Loaded as they are, they fail: api 1.9
 * has no logs API. So while the distro loads its own dependencies, a request for the api resolves
 * as if the distro itself made it, and every one of them shares the distro's copy. Requests made
 * outside these synchronous loads (the application's own) are never redirected.
 */
import * as nodeModule from 'node:module';

type ResolveFilename = (
  this: unknown,
  request: string,
  parent: unknown,
  isMain: boolean,
  options?: unknown,
) => string;

const API = '@opentelemetry/api';
const ModuleClass = nodeModule.Module as unknown as { _resolveFilename: ResolveFilename };
let depth = 0;

function isApiRequest(request: string): boolean {
  return request === API || request.startsWith(`${API}/`);
}

/** Runs `load` (synchronous requires) with api requests resolved from the distro's location. */
export function withDistroApi<T>(load: () => T): T {
  if (depth > 0 || typeof ModuleClass._resolveFilename !== 'function') return load();
  const original = ModuleClass._resolveFilename;
  const distroModule = module;
  const redirected: ResolveFilename = function resolveFilename(request, parent, isMain, options) {
    if (depth > 0 && isApiRequest(request)) {
      return original.call(this, request, distroModule, isMain, options);
    }
    return original.call(this, request, parent, isMain, options);
  };
  ModuleClass._resolveFilename = redirected;
  depth++;
  try {
    return load();
  } finally {
    depth--;
    // Another patch on top of ours would go with it: leave ours then, inert outside a load.
    if (ModuleClass._resolveFilename === redirected) ModuleClass._resolveFilename = original;
  }
}
