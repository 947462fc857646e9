/**
 * Last line of defence for values in spans: runs while a span is ending, before any exporter
 * sees it. instrumentation-pg already records a sanitised exception event, but it copies the
 * raw error message into the span status, and PostgreSQL error messages quote the offending
 * value (`invalid input syntax for type integer: "<value>"`). The status gets the sanitised text.
 * instrumentation-mysql2 does the same with MySQL's messages (`Duplicate entry '<value>' for
 * key …`), with no exception event to take a sanitised text from: the quoted parts are cut.
 * The other SQL instrumentations (mysql, tedious, oracledb, knex, cassandra-driver) record the
 * statement as the application wrote it, inline literals included: its literals are replaced
 * with `?`, as the distro does for pg and mysql2 when the query starts.
 */
import { SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { type SqlDialect, sanitizeMysqlError, sanitizeSql } from './db/sql';

const PG_SCOPE = '@opentelemetry/instrumentation-pg';
const MYSQL2_SCOPE = '@opentelemetry/instrumentation-mysql2';

/** Scopes whose spans carry SQL (or CQL) text as the application wrote it, and its dialect. */
const RAW_SQL_SCOPES: ReadonlyMap<string, SqlDialect> = new Map<string, SqlDialect>([
  ['@opentelemetry/instrumentation-mysql', 'mysql'],
  ['@opentelemetry/instrumentation-tedious', 'postgresql'],
  ['@opentelemetry/instrumentation-oracledb', 'postgresql'],
  ['@opentelemetry/instrumentation-knex', 'mysql'],
  ['@opentelemetry/instrumentation-cassandra-driver', 'postgresql'],
]);
const STATEMENT_KEYS = ['db.query.text', 'db.statement'] as const;

export class SpanScrubber implements SpanProcessor {
  onStart(): void {}

  onEnding(span: Span): void {
    const scope = span.instrumentationScope.name;
    const dialect = RAW_SQL_SCOPES.get(scope);
    if (dialect !== undefined) {
      for (const key of STATEMENT_KEYS) {
        const text = span.attributes[key];
        if (typeof text === 'string') span.setAttribute(key, sanitizeSql(text, dialect));
      }
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
