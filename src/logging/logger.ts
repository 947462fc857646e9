/**
 * `createLogger()`: a winston logger in the distro's record format (SPEC §6), with the trace and
 * correlation IDs of whatever request is being handled, and secret-named fields redacted.
 */
import { context, trace } from '@opentelemetry/api';
import type { Logger, LoggerOptions as WinstonOptions } from 'winston';
import { type Config, type LogLevelName, loadConfig } from '../config';
import { correlationIdFrom } from '../correlation/context';
import { baseFields, type LogRecordFields, redact, renderJson, renderPretty } from './format';

export interface LoggerOptions {
  /** Default: DATALAB_LOG_LEVEL, else info. */
  readonly level?: LogLevelName;
  /** Default: DATALAB_LOG_FORMAT, else pretty at debug level and JSON otherwise. */
  readonly format?: 'json' | 'pretty';
  /** Default: the service name (OTEL_SERVICE_NAME, package.json name, …). */
  readonly service?: string;
  /** Field names to redact in addition to the built-in ones and DATALAB_REDACT_KEYS. */
  readonly redactKeys?: readonly string[];
  /** Fields added to every record. */
  readonly defaultMeta?: Readonly<Record<string, unknown>>;
  /** Extra winston options (transports replace the default stdout one). */
  readonly winston?: Omit<WinstonOptions, 'level' | 'format' | 'defaultMeta'>;
}

const MESSAGE = Symbol.for('message');
const CONTRACT = new Set(['level', 'message', 'service', 'timestamp', 'iso_timestamp']);

/** The fields of the active span and request, for records made while handling one. */
export function contextFields(): Partial<LogRecordFields> {
  const ctx = context.active();
  const sc = trace.getSpan(ctx)?.spanContext();
  const out: Partial<LogRecordFields> = {};
  if (sc && trace.isSpanContextValid(sc)) {
    out.trace_id = sc.traceId;
    out.span_id = sc.spanId;
    out.trace_flags = sc.traceFlags & 1 ? '01' : '00';
  }
  const correlationId = correlationIdFrom(ctx);
  if (correlationId !== undefined) out.correlation_id = correlationId;
  return out;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  // Required here, not at the top: the preload must have patched winston before it loads.
  const winston = require('winston') as typeof import('winston');
  const config: Config = loadConfig();
  const service = options.service ?? config.serviceName;
  const style = options.format ?? config.logging.format;
  const keys = new Set(
    [...config.logging.redactKeys, ...(options.redactKeys ?? [])].map((k) => k.toLowerCase()),
  );
  const colors = style === 'pretty' && process.stdout.isTTY === true;

  const distroFormat = winston.format((info) => {
    const { level, message, ...meta } = info as Record<string, unknown> & { level: string };
    const record: LogRecordFields = {
      ...baseFields(
        level,
        typeof message === 'string' ? message : String(message ?? ''),
        service,
        Date.now(),
      ),
      ...contextFields(),
    };
    const cleaned = redact(meta, keys) as Record<string, unknown>;
    const target = info as Record<string, unknown>;
    for (const [k, v] of Object.entries(cleaned)) {
      if (CONTRACT.has(k) || v === undefined) continue;
      record[k] = v;
      // Other transports (the OTLP one the instrumentation adds) read `info`, not our line.
      target[k] = v;
    }
    (info as Record<string | symbol, unknown>)[MESSAGE] =
      style === 'pretty' ? renderPretty(record, colors) : renderJson(record);
    return info;
  });

  return winston.createLogger({
    transports: [new winston.transports.Console()],
    ...options.winston,
    level: options.level ?? config.logging.level,
    defaultMeta: options.defaultMeta,
    format: winston.format.combine(winston.format.errors({ stack: true }), distroFormat()),
  });
}
