/**
 * Every warning the distro can print has a stable code. Operators grep for them and
 * docs/warnings.md explains each; test/unit/warnings.test.ts keeps the two lists in step.
 */
import { baseFields, renderJson, renderPretty } from './logging/format';

export const WARNING_CODES = {
  DLOTEL_CONFIG_INVALID: 'A configuration variable has a value the distro cannot use.',
  DLOTEL_PORT_UNAVAILABLE: 'The management server could not listen on its host and port.',
  DLOTEL_PORT_YIELDED: 'The application listens on the management port; the distro gave it up.',
  DLOTEL_START_FAILED: 'Telemetry failed to start; the application runs without it.',
  DLOTEL_INSTRUMENTATION_FAILED: 'An instrumentation package could not be loaded or enabled.',
  DLOTEL_UNKNOWN_INSTRUMENTATION:
    'OTEL_NODE_ENABLED_INSTRUMENTATIONS or OTEL_NODE_DISABLED_INSTRUMENTATIONS names no instrumentation.',
  DLOTEL_EXPORT_FAILED: 'Exporting telemetry to its backend failed.',
  DLOTEL_ENDPOINT_OVERFLOW: 'The cap on distinct endpoint label values was reached.',
  DLOTEL_PEER_OVERFLOW: 'The cap on distinct peer label values of outbound calls was reached.',
  DLOTEL_INTERNAL_ERROR: 'An error inside a distro hook was caught and swallowed.',
  DLOTEL_NODE_UNSUPPORTED: 'The running Node.js is older than the distro supports; nothing starts.',
  DLOTEL_ESM_HOOKS_CONFLICT:
    "Another agent's ESM hooks were registered first; ours are not active.",
  DLOTEL_TYPESCRIPT_UNSUPPORTED: 'A TypeScript set-up the --import preload cannot serve.',
  DLOTEL_EXIT_FLUSH_INCOMPLETE:
    'Telemetry left when the process exited could not all be exported in time.',
} as const;

export type WarningCode = keyof typeof WARNING_CODES;

export type WarningSink = (code: WarningCode, message: string) => void;

// stderr, not a logger: warnings must work before (and without) any logging set-up. Until the
// configuration is known, a plain line; then the distro's record format (useStructuredWarnings).
let sink: WarningSink = (code, message) => {
  process.stderr.write(`${formatWarning(code, message)}\n`);
};

/**
 * Warnings in the distro's log record format (SPEC §6: "the distro's own diagnostics go through
 * the same structured format"), on stderr so that they never mix into the application's stdout.
 */
export function useStructuredWarnings(service: string, style: 'json' | 'pretty'): void {
  sink = (code, message) => {
    const record = {
      ...baseFields('warn', message, service, Date.now()),
      code,
      logger: '@datalab/otel',
    };
    process.stderr.write(`${style === 'pretty' ? renderPretty(record) : renderJson(record)}\n`);
  };
}

/** Tests and embedders redirect warnings; returns the previous sink. */
export function setWarningSink(next: WarningSink): WarningSink {
  const previous = sink;
  sink = next;
  return previous;
}

export function formatWarning(code: WarningCode, message: string): string {
  return `@datalab/otel warning ${code}: ${message}`;
}

export function warn(code: WarningCode, message: string): void {
  try {
    sink(code, message);
  } catch {
    // A broken stderr must not take the application down with it.
  }
}

const lastWarnedAt = new Map<string, number>();

/**
 * Repeating failures (an exporter that is down) would otherwise print once per attempt.
 * One line per key per interval is enough for an operator to notice.
 */
export function warnRateLimited(
  code: WarningCode,
  key: string,
  message: string,
  intervalMs = 60_000,
  now = Date.now(),
): boolean {
  const mapKey = `${code}:${key}`;
  const last = lastWarnedAt.get(mapKey);
  if (last !== undefined && now - last < intervalMs) return false;
  lastWarnedAt.set(mapKey, now);
  warn(code, message);
  return true;
}

const warnedOnce = new Set<string>();

export function warnOnce(code: WarningCode, key: string, message: string): void {
  const mapKey = `${code}:${key}`;
  if (warnedOnce.has(mapKey)) return;
  warnedOnce.add(mapKey);
  warn(code, message);
}

const deferred: Array<() => void> = [];

/**
 * For warnings raised before the configuration is read (the entry points' module hooks): held
 * until the configuration says in which format warnings are printed, so that every coded
 * warning comes out in the documented record format.
 */
export function warnOnceWhenConfigured(code: WarningCode, key: string, message: string): void {
  deferred.push(() => warnOnce(code, key, message));
}

/** Prints what warnOnceWhenConfigured() held; called once the warning format is set. */
export function flushDeferredWarnings(): void {
  for (const print of deferred.splice(0)) print();
}

/** Values echoed in warnings are quoted and cut, so a hostile value cannot forge log lines. */
export function quote(value: string, max = 80): string {
  const cut = value.length > max ? `${value.slice(0, max)}…` : value;
  return JSON.stringify(cut);
}
