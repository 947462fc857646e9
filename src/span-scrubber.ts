/**
 * Last line of defence for values in spans: runs while a span is ending, before any exporter
 * sees it. instrumentation-pg already records a sanitised exception event, but it copies the
 * raw error message into the span status, and PostgreSQL error messages quote the offending
 * value (`invalid input syntax for type integer: "<value>"`). The status gets the sanitised text.
 */
import { SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';

const PG_SCOPE = '@opentelemetry/instrumentation-pg';

export class SpanScrubber implements SpanProcessor {
  onStart(): void {}

  onEnding(span: Span): void {
    if (span.instrumentationScope.name !== PG_SCOPE) return;
    if (span.status.code !== SpanStatusCode.ERROR || !span.status.message) return;
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
