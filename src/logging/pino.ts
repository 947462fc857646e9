/**
 * The application's own pino loggers (Fastify's included): the request's trace and correlation
 * IDs on every record, secret-named fields redacted, and, with a logs exporter, each record sent
 * over OTLP once (SPEC §5/§6).
 *
 * Everything happens on the thread that logs: the fields come from a mixin and the redaction from
 * the `formatters.log` hook, both of which pino runs before it serializes the record, so a
 * `pino.transport()` worker receives a line that already has them. The OTLP copy is made from that
 * same line, redacted the same way. instrumentation-pino is not used: its mixin and its log sending
 * do nothing while it is disabled, and a deferred instrumentation is built disabled (see
 * instrumentations.ts); it would also add no `correlation_id` without a span (metrics only).
 */
import { context, isSpanContextValid, logs, SeverityNumber, trace } from '@opentelemetry/api';
import {
  InstrumentationBase,
  type InstrumentationConfig,
  InstrumentationNodeModuleDefinition,
} from '@opentelemetry/instrumentation';
import { correlationIdFrom } from '../correlation/context';
import { DISTRO_VERSION } from '../version';
import { warnOnce } from '../warnings';
import { isSecretKey, REDACTED } from './format';

const VERSIONS = ['>=8 <11'];
const kPatched = Symbol('datalab.otel.pino');
const PINO_METADATA: unique symbol = Symbol.for('pino.metadata') as never;
const MAX_DEPTH = 6;
const KNOWN_KEYS = 1024;
/** How a `service` binding appears in a logger's serialized bindings. */
const SERVICE_BINDING = '"service":';

export interface PinoOptions extends InstrumentationConfig {
  /** Added as `service` to records that have none. */
  readonly service: string;
  /** Lower-case field names redacted besides the built-in secret-like ones. */
  readonly redactKeys: readonly string[];
  /** Whether records also go to the logs API (a logs exporter is configured). */
  readonly sendLogs: boolean;
}

interface PinoSymbols {
  readonly mixinSym: symbol;
  readonly formattersSym: symbol;
  readonly streamSym: symbol;
  readonly chindingsSym: symbol;
  readonly messageKeySym: symbol;
  readonly errorKeySym: symbol;
}

type PinoLogger = Record<symbol, unknown> & {
  levels?: { labels?: Record<number, string>; values?: Record<string, number> };
};
type PinoFunction = ((...args: unknown[]) => PinoLogger) & {
  symbols?: PinoSymbols;
  pino?: unknown;
  default?: unknown;
  multistream?: (streams: unknown[], opts?: unknown) => Record<string, unknown>;
  [kPatched]?: true;
};
type Mixin = (obj: unknown, level: number, logger: PinoLogger) => Record<string, unknown>;
interface Formatters {
  level?: unknown;
  bindings?: unknown;
  log?: (obj: Record<string, unknown>) => Record<string, unknown>;
}

function failed(what: string, err: unknown): void {
  warnOnce(
    'DLOTEL_INTERNAL_ERROR',
    `pino-${what}`,
    `pino ${what} failed and was skipped: ${err instanceof Error ? err.message : String(err)}`,
  );
}

/** Only plain objects and arrays are walked: a class instance (Fastify's request) is pino's
 * serializers' business, and walking it could cost more than the record. */
function isPlain(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

export type SecretTest = (key: string) => boolean;

/** isSecretKey, remembered per field name: the same few names come back on every record. */
export function secretTest(keys: ReadonlySet<string>): SecretTest {
  const known = new Map<string, boolean>();
  return (key) => {
    let secret = known.get(key);
    if (secret === undefined) {
      secret = isSecretKey(key, keys);
      // Bounded: field names made from data (ids as keys) must not grow it forever.
      if (known.size < KNOWN_KEYS) known.set(key, secret);
    }
    return secret;
  };
}

function hasSecret(value: unknown, isSecret: SecretTest, depth: number): boolean {
  if (depth >= MAX_DEPTH || !isPlain(value)) return false;
  if (Array.isArray(value)) {
    for (const v of value) if (hasSecret(v, isSecret, depth + 1)) return true;
    return false;
  }
  for (const k in value) {
    if (isSecret(k)) return true;
    if (hasSecret(value[k], isSecret, depth + 1)) return true;
  }
  return false;
}

function redactCopy(value: unknown, isSecret: SecretTest, depth: number): unknown {
  if (depth >= MAX_DEPTH || !isPlain(value)) return value;
  if (Array.isArray(value)) return value.map((v) => redactCopy(v, isSecret, depth + 1));
  const out: Record<string, unknown> = {};
  for (const k in value) {
    out[k] = isSecret(k) ? REDACTED : redactCopy(value[k], isSecret, depth + 1);
  }
  return out;
}

/**
 * The record with the values of secret-named fields replaced. The record itself when it has none
 * (the usual case: nothing is copied); otherwise a copy, so the caller's object is left as it was.
 */
export function redactRecord(
  record: Record<string, unknown>,
  isSecret: SecretTest,
): Record<string, unknown> {
  return hasSecret(record, isSecret, 0)
    ? (redactCopy(record, isSecret, 0) as Record<string, unknown>)
    : record;
}

/** OTLP severity of a pino level: the standard six exactly, custom ones by their range. */
export function severityOf(level: number): SeverityNumber {
  if (!(level >= 10)) return SeverityNumber.TRACE;
  if (level >= 60) return SeverityNumber.FATAL;
  // 10 trace, 20 debug, 30 info, 40 warn, 50 error: each range starts at a multiple of 4.
  const band = Math.floor(level / 10) - 1;
  const step = Math.min(3, Math.floor(((level % 10) * 4) / 10));
  return (SeverityNumber.TRACE + band * 4 + step) as SeverityNumber;
}

/** Epoch milliseconds of a record's `time`, whichever of pino's time functions made it. */
function timeOf(time: unknown): number {
  if (typeof time === 'number') return time < 1e11 ? time * 1000 : time;
  if (typeof time === 'string') {
    const ms = Date.parse(time);
    if (!Number.isNaN(ms)) return ms;
  }
  return Date.now();
}

/**
 * A destination pino writes each serialized line to (through its multistream), next to the
 * application's own: the line becomes a log record of the logs API. It runs in the log call, so
 * the record gets the active span context like any other.
 */
class OtlpLine {
  // pino's multistream sets these before each write.
  lastLevel = 30;
  lastLogger: PinoLogger | undefined;
  // Asks the multistream for those.
  readonly [PINO_METADATA] = true;

  constructor(
    private readonly messageKey: string,
    private readonly errorKey: string,
  ) {}

  write(line: string): void {
    try {
      const parsed = JSON.parse(line) as unknown;
      if (parsed === null || typeof parsed !== 'object') return;
      const {
        time,
        level: _level,
        pid: _pid,
        hostname: _hostname,
        trace_id: _traceId,
        span_id: _spanId,
        trace_flags: _traceFlags,
        [this.messageKey]: body,
        [this.errorKey]: exception,
        ...attributes
      } = parsed as Record<string, unknown>;
      const ms = timeOf(time);
      const level = this.lastLevel;
      pinoLogsApiLogger().emit({
        timestamp: ms,
        observedTimestamp: ms,
        severityNumber: severityOf(level),
        severityText: this.lastLogger?.levels?.labels?.[level] ?? String(level),
        body: body as string | undefined,
        attributes: attributes as Record<string, never>,
        // The logs SDK turns it into exception.type/message/stacktrace.
        exception: exceptionOf(exception),
      });
    } catch (err) {
      failed('OTLP export of a record', err);
    }
  }
}

/** pino's `err` serializer names the class `type`; the logs SDK reads `name` (or `code`). */
function exceptionOf(err: unknown): unknown {
  if (err === null || typeof err !== 'object' || Array.isArray(err)) return err;
  const e = err as Record<string, unknown>;
  return typeof e.name !== 'string' && typeof e.type === 'string' ? { ...e, name: e.type } : e;
}

let apiLogger: ReturnType<typeof logs.getLogger> | undefined;
function pinoLogsApiLogger(): ReturnType<typeof logs.getLogger> {
  apiLogger ??= logs.getLogger('@datalab/otel/pino', DISTRO_VERSION);
  return apiLogger;
}

export class PinoInstrumentation extends InstrumentationBase<PinoOptions> {
  private readonly isSecret: SecretTest;

  constructor(options: PinoOptions) {
    super('@datalab/otel/pino', DISTRO_VERSION, options);
    this.isSecret = secretTest(new Set(options.redactKeys.map((k) => k.toLowerCase())));
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition(
        'pino',
        VERSIONS,
        (mod: unknown) => this.patchModule(mod),
        () => {},
      ),
    ];
  }

  private patchModule(mod: unknown): unknown {
    const isEsm = (mod as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === 'Module';
    const original = (isEsm ? (mod as { default: unknown }).default : mod) as PinoFunction;
    // The same module can reach us twice (require and import hooks): wrap once.
    if (typeof original !== 'function' || original[kPatched] === true) return mod;
    if (original.symbols === undefined) return mod;
    const instrumentation = this;
    const patched = Object.assign(function pino(this: unknown, ...args: unknown[]) {
      const logger = original.apply(this, args);
      try {
        instrumentation.patchLogger(logger, original);
      } catch (err) {
        failed('logger set-up', err);
      }
      return logger;
    }, original) as PinoFunction;
    // `pino.pino` and `pino.default` name the function itself (`const { pino } = require('pino')`).
    if (typeof patched.pino === 'function') patched.pino = patched;
    if (typeof patched.default === 'function') patched.default = patched;
    patched[kPatched] = true;
    if (isEsm) {
      const ns = mod as { default: unknown; pino?: unknown };
      ns.default = patched;
      if (ns.pino !== undefined) ns.pino = patched;
      return mod;
    }
    return patched;
  }

  /** Set once per logger made with `pino()`; its children share all three. */
  private patchLogger(logger: PinoLogger, pino: PinoFunction): void {
    const symbols = pino.symbols as PinoSymbols;
    const own = this.mixin(symbols.chindingsSym);
    const theirs = logger[symbols.mixinSym] as Mixin | undefined;
    logger[symbols.mixinSym] =
      typeof theirs === 'function'
        ? (obj: unknown, level: number, child: PinoLogger) =>
            Object.assign(own(obj, level, child), theirs(obj, level, child))
        : own;

    const formatters = logger[symbols.formattersSym] as Formatters;
    const theirLog = formatters.log;
    const isSecret = this.isSecret;
    const log = (obj: Record<string, unknown>): Record<string, unknown> => {
      const record = theirLog ? theirLog(obj) : obj;
      try {
        return redactRecord(record, isSecret);
      } catch (err) {
        failed('redaction', err);
        return record;
      }
    };
    logger[symbols.formattersSym] = { ...formatters, log };

    const { sendLogs } = this.getConfig();
    if (sendLogs && typeof pino.multistream === 'function') {
      const destination = logger[symbols.streamSym] as Record<string, unknown>;
      const otlp = new OtlpLine(
        String(logger[symbols.messageKeySym] ?? 'msg'),
        String(logger[symbols.errorKeySym] ?? 'err'),
      );
      const both = pino.multistream(
        [
          { level: 0, stream: destination },
          { level: 0, stream: otlp },
        ],
        { levels: logger.levels?.values },
      );
      // The multistream has no flush(): logger.flush() still reaches the application's stream.
      if (typeof destination.flush === 'function') {
        both.flush = (cb?: (err?: Error) => void) =>
          (destination.flush as (cb?: unknown) => unknown).call(destination, cb);
      }
      logger[symbols.streamSym] = both;
    }
  }

  /** The fields of the active request. A record's own fields take precedence (pino merges the
   * mixin's first), and `service` is left out when the logger's bindings have one. */
  private mixin(chindingsSym: symbol): Mixin {
    const service = this.getConfig().service;
    return (_obj: unknown, _level: number, logger: PinoLogger): Record<string, unknown> => {
      const out: Record<string, unknown> = {};
      try {
        const bindings = logger?.[chindingsSym];
        if (typeof bindings !== 'string' || !bindings.includes(SERVICE_BINDING)) {
          out.service = service;
        }
        const ctx = context.active();
        const sc = trace.getSpan(ctx)?.spanContext();
        if (sc !== undefined && isSpanContextValid(sc)) {
          out.trace_id = sc.traceId;
          out.span_id = sc.spanId;
          out.trace_flags = sc.traceFlags & 1 ? '01' : '00';
        }
        const correlationId = correlationIdFrom(ctx);
        if (correlationId !== undefined) out.correlation_id = correlationId;
      } catch (err) {
        failed('correlation', err);
      }
      return out;
    };
  }
}
