/**
 * Last line of defence for values in spans: runs while a span is ending, before any exporter
 * sees it. instrumentation-pg already records a sanitised exception event, but it copies the
 * raw error message into the span status, and PostgreSQL error messages quote the offending
 * value (`invalid input syntax for type integer: "<value>"`). The status gets the sanitised text.
 * instrumentation-mysql2 does the same with MySQL's messages (`Duplicate entry '<value>' for
 * key …`), with no exception event to take a sanitised text from: the quoted parts are cut.
 * The other SQL instrumentations (mysql, tedious, oracledb, knex, cassandra-driver) record the
 * statement as the application wrote it, inline literals included: its literals are replaced
 * with `?`, as the distro does for pg and mysql2 when the query starts. They also copy the
 * driver's error message, which quotes the offending value, into the status and the exception
 * event: its quoted parts are cut, as for mysql2.
 */
import { SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { type SqlDialect, sanitizeMysqlError, sanitizeSql } from './db/sql';

const PG_SCOPE = '@opentelemetry/instrumentation-pg';
const MYSQL2_SCOPE = '@opentelemetry/instrumentation-mysql2';

const KNEX_SCOPE = '@opentelemetry/instrumentation-knex';

/**
 * Scopes whose spans carry SQL (or CQL) text as the application wrote it, and its dialect (the
 * standard one, where `"…"` is a name, unless the database is MySQL's). Knex talks to any
 * database: its span's `db.system` says which.
 */
const RAW_SQL_SCOPES: ReadonlyMap<string, SqlDialect> = new Map<string, SqlDialect>([
  ['@opentelemetry/instrumentation-mysql', 'mysql'],
  ['@opentelemetry/instrumentation-tedious', 'postgresql'],
  ['@opentelemetry/instrumentation-oracledb', 'postgresql'],
  [KNEX_SCOPE, 'postgresql'],
  ['@opentelemetry/instrumentation-cassandra-driver', 'postgresql'],
]);

const MYSQL_SYSTEMS: ReadonlySet<unknown> = new Set(['mysql', 'mariadb']);

function knexDialect(span: Span): SqlDialect {
  const system = span.attributes['db.system.name'] ?? span.attributes['db.system'];
  return MYSQL_SYSTEMS.has(system) ? 'mysql' : 'postgresql';
}
const STATEMENT_KEYS = ['db.query.text', 'db.statement'] as const;

export class SpanScrubber implements SpanProcessor {
  onStart(): void {}

  onEnding(span: Span): void {
    const scope = span.instrumentationScope.name;
    let dialect = RAW_SQL_SCOPES.get(scope);
    if (dialect !== undefined) {
      if (scope === KNEX_SCOPE) dialect = knexDialect(span);
      for (const key of STATEMENT_KEYS) {
        const text = span.attributes[key];
        if (typeof text === 'string') span.setAttribute(key, sanitizeSql(text, dialect));
      }
      scrubErrors(span);
      return;
    }
    if (span.status.code !== SpanStatusCode.ERROR || !span.status.message) return;
    if (scope === MYSQL2_SCOPE) {
      span.setStatus({
        code: SpanStatusCode.ERROR,
        message: sanitizeMysqlError(span.status.message),
      });
      return;
    }
    if (scope !== PG_SCOPE) return;
    const exception = span.events.find((e) => e.name === 'exception');
    const sanitized = exception?.attributes?.['exception.message'];
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: typeof sanitized === 'string' ? sanitized : 'PostgreSQL error',
    });
  }

  onEnd(_span: ReadableSpan): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** The quoted parts of a driver's error message cut from the status and the exception events. */
function scrubErrors(span: Span): void {
  const message = span.status.message;
  if (span.status.code === SpanStatusCode.ERROR && message) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: sanitizeMysqlError(message) });
  }
  for (const event of span.events) {
    const attributes = event.attributes as Record<string, unknown> | undefined;
    if (event.name !== 'exception' || attributes === undefined) continue;
    const raw = attributes['exception.message'];
    if (typeof raw !== 'string') continue;
    const clean = sanitizeMysqlError(raw);
    if (clean === raw) continue;
    attributes['exception.message'] = clean;
    const stack = attributes['exception.stacktrace'];
    if (typeof stack === 'string')
      attributes['exception.stacktrace'] = stack.split(raw).join(clean);
  }
}
