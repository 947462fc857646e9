/**
 * The one record format of the distro (SPEC §6), shared by createLogger(), the access log and
 * the distro's own warnings: a JSON object per line, or a human-readable line. Pure functions.
 */
export interface LogRecordFields {
  level: string;
  message: string;
  service: string;
  /** Epoch seconds, with milliseconds. */
  timestamp: number;
  iso_timestamp: string;
  trace_id?: string;
  span_id?: string;
  trace_flags?: string;
  correlation_id?: string;
  [key: string]: unknown;
}

export const REDACTED = '[REDACTED]';

/** Field names that are secrets wherever they appear in a name (`db_password`, `authToken`). */
const SECRET_PARTS = ['password', 'passwd', 'secret', 'token'];
const MAX_DEPTH = 6;

export function isSecretKey(key: string, keys: ReadonlySet<string>): boolean {
  const lower = key.toLowerCase();
  if (keys.has(lower)) return true;
  for (const part of SECRET_PARTS) if (lower.includes(part)) return true;
  return false;
}

/** A copy of `value` with the values of secret-named fields replaced by `[REDACTED]`. */
export function redact(value: unknown, keys: ReadonlySet<string>, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return '[Object]';
  if (Array.isArray(value)) return value.map((v) => redact(v, keys, depth + 1));
  if (value instanceof Error) {
    return { name: value.name, message: value.message, stack: value.stack };
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = isSecretKey(k, keys) ? REDACTED : redact(v, keys, depth + 1);
  }
  return out;
}

const ORDER = [
  'level',
  'message',
  'service',
  'timestamp',
  'iso_timestamp',
  'trace_id',
  'span_id',
  'trace_flags',
  'correlation_id',
] as const;

function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** One line of JSON, contract fields first. JSON escaping keeps CR/LF out of the line. */
export function renderJson(record: LogRecordFields): string {
  const ordered: Record<string, unknown> = {};
  for (const k of ORDER) if (record[k] !== undefined) ordered[k] = record[k];
  for (const [k, v] of Object.entries(record)) if (!(k in ordered)) ordered[k] = v;
  try {
    return JSON.stringify(ordered, jsonReplacer);
  } catch {
    // Circular structures: keep the contract fields rather than lose the line.
    const safe: Record<string, unknown> = {};
    for (const k of ORDER) if (record[k] !== undefined) safe[k] = record[k];
    safe.meta = '[unserializable]';
    return JSON.stringify(safe);
  }
}

const COLORS: Record<string, string> = {
  error: '\x1b[31m',
  warn: '\x1b[33m',
  info: '\x1b[32m',
  http: '\x1b[36m',
  verbose: '\x1b[36m',
  debug: '\x1b[34m',
  silly: '\x1b[35m',
};

/** Escapes control characters, so a message cannot forge a second line. */
function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point.
  return /[\x00-\x1f\x7f]/.test(text) ? JSON.stringify(text).slice(1, -1) : text;
}

/**
 * `2026-11-28T09:00:00.123Z INFO  [orders] message  key=value  trace=… corr=…`: for people at a
 * terminal (the seed's ConsoleRenderer at DEBUG).
 */
export function renderPretty(record: LogRecordFields, colors = false): string {
  const level = record.level.toUpperCase().padEnd(5);
  const painted = colors ? `${COLORS[record.level] ?? ''}${level}\x1b[0m` : level;
  const extras: string[] = [];
  for (const [k, v] of Object.entries(record)) {
    if ((ORDER as readonly string[]).includes(k)) continue;
    extras.push(`${k}=${typeof v === 'string' ? oneLine(v) : renderValue(v)}`);
  }
  if (record.trace_id) extras.push(`trace=${record.trace_id}`);
  if (record.correlation_id) extras.push(`corr=${record.correlation_id}`);
  const tail = extras.length > 0 ? `  ${extras.join('  ')}` : '';
  return `${record.iso_timestamp} ${painted} [${oneLine(record.service)}] ${oneLine(record.message)}${tail}`;
}

function renderValue(v: unknown): string {
  try {
    return JSON.stringify(v, jsonReplacer) ?? String(v);
  } catch {
    return '[unserializable]';
  }
}

export function baseFields(level: string, message: string, service: string, nowMs: number) {
  return {
    level,
    message,
    service,
    timestamp: nowMs / 1000,
    iso_timestamp: new Date(nowMs).toISOString(),
  };
}
