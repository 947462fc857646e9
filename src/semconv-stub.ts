/**
 * `@opentelemetry/semantic-conventions` is a 380 KB module (its index re-exports every stable and
 * deprecated constant) that @opentelemetry/core loads at start-up for four constants; the SDK and
 * the instrumentations the distro loads read about thirty more. Parsing it was about 7 MiB of
 * peak RSS and 10 ms of the preload's start-up. So before the SDK is loaded, the module cache
 * entry of that index answers the stable constants below, whose values the semantic conventions
 * guarantee never change (test/unit/semconv-stub.test.ts checks them against the package); the
 * first read of any other name loads the real index once, and every name answers from it.
 */
import { readFileSync } from 'node:fs';
import { Module } from 'node:module';
import { dirname } from 'node:path';
import { warnOnce } from './warnings';

const PACKAGE = '@opentelemetry/semantic-conventions';

/** What core, resources, sdk-trace, exporter-prometheus and the shipped instrumentations read. */
export const STABLE_CONSTANTS: Readonly<Record<string, string>> = Object.freeze({
  ATTR_CLIENT_ADDRESS: 'client.address',
  ATTR_DB_NAMESPACE: 'db.namespace',
  ATTR_DB_OPERATION_NAME: 'db.operation.name',
  ATTR_DB_QUERY_TEXT: 'db.query.text',
  ATTR_DB_SYSTEM_NAME: 'db.system.name',
  ATTR_ERROR_TYPE: 'error.type',
  ATTR_EXCEPTION_MESSAGE: 'exception.message',
  ATTR_EXCEPTION_STACKTRACE: 'exception.stacktrace',
  ATTR_EXCEPTION_TYPE: 'exception.type',
  ATTR_HTTP_REQUEST_METHOD: 'http.request.method',
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL: 'http.request.method_original',
  ATTR_HTTP_RESPONSE_STATUS_CODE: 'http.response.status_code',
  ATTR_HTTP_ROUTE: 'http.route',
  ATTR_NETWORK_PEER_ADDRESS: 'network.peer.address',
  ATTR_NETWORK_PEER_PORT: 'network.peer.port',
  ATTR_NETWORK_PROTOCOL_VERSION: 'network.protocol.version',
  ATTR_OTEL_SCOPE_NAME: 'otel.scope.name',
  ATTR_OTEL_SCOPE_VERSION: 'otel.scope.version',
  ATTR_SERVER_ADDRESS: 'server.address',
  ATTR_SERVER_PORT: 'server.port',
  ATTR_SERVICE_NAME: 'service.name',
  ATTR_TELEMETRY_SDK_LANGUAGE: 'telemetry.sdk.language',
  ATTR_TELEMETRY_SDK_NAME: 'telemetry.sdk.name',
  ATTR_TELEMETRY_SDK_VERSION: 'telemetry.sdk.version',
  ATTR_URL_FULL: 'url.full',
  ATTR_URL_PATH: 'url.path',
  ATTR_URL_QUERY: 'url.query',
  ATTR_URL_SCHEME: 'url.scheme',
  ATTR_USER_AGENT_ORIGINAL: 'user_agent.original',
  DB_SYSTEM_NAME_VALUE_POSTGRESQL: 'postgresql',
  METRIC_DB_CLIENT_OPERATION_DURATION: 'db.client.operation.duration',
  METRIC_HTTP_CLIENT_REQUEST_DURATION: 'http.client.request.duration',
  METRIC_HTTP_SERVER_REQUEST_DURATION: 'http.server.request.duration',
  TELEMETRY_SDK_LANGUAGE_VALUE_NODEJS: 'nodejs',
});

/** The names a rolldown-built CommonJS index exports (`exports.NAME = …;`, one per line). */
export function exportedNames(source: string): string[] {
  const names: string[] = [];
  const prefix = '\nexports.';
  for (let at = source.indexOf(prefix); at !== -1; at = source.indexOf(prefix, at + 1)) {
    const start = at + prefix.length;
    const end = source.indexOf(' = ', start);
    const name = end === -1 ? '' : source.slice(start, end);
    if (/^[A-Za-z_$][\w$]*$/.test(name)) names.push(name);
  }
  return names;
}

/**
 * The exports object of the stand-in: a plain object with every name of `names` as its own
 * property, so that reads, `in` and enumeration behave as on the real module's. The `constants`
 * are plain values, read at the cost of any property (the instrumentations read some on every
 * request); each other name is a getter that calls `load()` once and turns every property into
 * the real module's value.
 */
export function lazyExports(
  names: readonly string[],
  constants: Readonly<Record<string, string>>,
  load: () => object,
): Record<string | symbol, unknown> {
  const target: Record<string | symbol, unknown> = {};
  let loaded = false;
  const fill = () => {
    if (loaded) return;
    loaded = true;
    let real: object = {};
    try {
      real = load();
    } catch (err) {
      // The package answered at start-up; a copy removed from disk since must not throw into
      // whatever library reads a constant (possibly while serving a request).
      warnOnce(
        'DLOTEL_INTERNAL_ERROR',
        'semconv-load',
        `${PACKAGE} could not be loaded (${err instanceof Error ? err.message : String(err)}); its other constants read as undefined`,
      );
    }
    for (const name of names) {
      if (!Object.hasOwn(real, name) && !Object.hasOwn(constants, name)) delete target[name];
    }
    // Redefined in place: the keys keep the real module's order.
    Object.defineProperties(target, Object.getOwnPropertyDescriptors(real));
  };
  for (const name of names) {
    if (Object.hasOwn(constants, name)) {
      target[name] = constants[name];
      continue;
    }
    Object.defineProperty(target, name, {
      enumerable: true,
      configurable: true,
      get() {
        fill();
        return target[name];
      },
      set(value: unknown) {
        fill();
        target[name] = value;
      },
    });
  }
  return target;
}

type ModuleInternals = typeof Module & {
  _cache: Record<string, Module | undefined>;
  _nodeModulePaths(dir: string): string[];
};

/** Module.prototype.load: compiles a file into that module (what require() does on a miss). */
type LoadableModule = Module & { load(filename: string): void };

/**
 * Puts the stand-in in the module cache for the copy of the package that @opentelemetry/core
 * loads, unless something already loaded it. Does nothing when either cannot be resolved: the
 * SDK then fails to load as it would have, with its usual warning.
 */
export function installSemconvStub(): void {
  const M = Module as ModuleInternals;
  let filename: string;
  try {
    const core = require.resolve('@opentelemetry/core');
    filename = require.resolve(PACKAGE, { paths: [dirname(core)] });
  } catch {
    return;
  }
  if (M._cache[filename] !== undefined) return;
  let names: string[];
  try {
    names = exportedNames(readFileSync(filename, 'utf8'));
  } catch {
    return;
  }
  // Another layout than the one this was written for: the package loads as it is.
  if (!Object.keys(STABLE_CONSTANTS).every((name) => names.includes(name))) return;
  const stub = new Module(filename);
  stub.filename = filename;
  stub.paths = M._nodeModulePaths(dirname(filename));
  stub.exports = lazyExports(names, STABLE_CONSTANTS, () => {
    // The real index, compiled into a module of its own: the stand-in keeps the cache entry, so
    // that every requirer, before and after, holds the same exports object.
    const real = new Module(filename, stub) as LoadableModule;
    real.filename = filename;
    real.paths = stub.paths;
    real.load(filename);
    return real.exports as object;
  });
  stub.loaded = true;
  M._cache[filename] = stub;
}
