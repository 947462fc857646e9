/**
 * Puts `correlation.id` on every span started while a request is handled (SPEC §4/§5), so a
 * backend search by correlation ID finds every span, not only the server span.
 */
import type { Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { correlationIdFrom } from './context';
import { CORRELATION_ATTRIBUTE } from './id';

export class CorrelationSpanProcessor implements SpanProcessor {
  onStart(span: Span, parentContext: Context): void {
    const id = correlationIdFrom(parentContext);
    if (id !== undefined) span.setAttribute(CORRELATION_ATTRIBUTE, id);
  }

  onEnd(_span: ReadableSpan): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
