/**
 * The first thing both entry points run. On a Node.js older than the distro supports, the SDK
 * would fail part way through start-up (or worse, half start), so nothing is loaded at all: one
 * warning, and the application runs exactly as it would without the preload flag. Only
 * warnings.ts (pure functions) is loaded before the check, so this file must stay that light;
 * after a failed check, config.ts's package.json lookup (Node built-ins only) names the service.
 */
import { isMainThread } from 'node:worker_threads';
import { useStructuredWarnings, warn } from './warnings';

/** Keep in step with `engines.node` in package.json (a unit test checks it). */
export const MIN_NODE_VERSION = '22.15.0';

type Version = readonly [number, number, number];

export function parseNodeVersion(version: string): Version {
  const [major = 0, minor = 0, patch = 0] = version
    .replace(/^v/, '')
    .split('.')
    .map((part) => Number.parseInt(part, 10) || 0);
  return [major, minor, patch];
}

export function atLeast(version: string, min: string): boolean {
  const a = parseNodeVersion(version);
  const b = parseNodeVersion(min);
  for (let i = 0; i < 3; i++) {
    if ((a[i] as number) !== (b[i] as number)) return (a[i] as number) > (b[i] as number);
  }
  return true;
}

const kWarned = Symbol.for('@datalab/otel.node-unsupported');

/**
 * True when the running Node.js is supported. Otherwise prints DLOTEL_NODE_UNSUPPORTED once per
 * process (the preload may be loaded twice, and worker threads inherit it) and returns false.
 */
export function nodeIsSupported(version = process.versions.node): boolean {
  if (atLeast(version, MIN_NODE_VERSION)) return true;
  const g = globalThis as { [kWarned]?: boolean };
  if (g[kWarned] || !isMainThread) return false;
  g[kWarned] = true;
  // The configuration is not parsed on an unsupported Node (it may need newer APIs): the record
  // carries the service name as SPEC §1 derives it, and the format the environment asks for.
  useStructuredWarnings(
    serviceName(),
    process.env.DATALAB_LOG_FORMAT === 'pretty' ? 'pretty' : 'json',
  );
  warn(
    'DLOTEL_NODE_UNSUPPORTED',
    `Node.js ${version} is not supported (@datalab/otel needs Node.js >= ${MIN_NODE_VERSION}); telemetry is off and the application runs without it`,
  );
  return false;
}

function serviceName(): string {
  if (process.env.OTEL_SERVICE_NAME) return process.env.OTEL_SERVICE_NAME;
  try {
    const { findAppPackage } = require('./config') as typeof import('./config');
    return findAppPackage(process.argv[1], process.cwd()).name ?? 'unknown_service:node';
  } catch {
    return 'unknown_service:node';
  }
}
