/**
 * instrumentation-mysql2, held to the rules the pg instrumentation follows here: no value leaves
 * the process, and no root span for a query made outside any traced operation unless
 * DATALAB_DB_ROOT_SPANS asks for one.
 *
 * Left alone, it records `db.query.text` with the parameter values formatted into the statement
 * (`format(sql, values)`), names the span after the text before the first space (the whole
 * statement when it has none), and has no `requireParentSpan`. The masking hook gets our
 * sanitiser; the tracer it uses is wrapped to keep span names to the SQL keyword and to make no
 * root spans. Error statuses are scrubbed by span-scrubber.ts.
 */
import {
  type Context,
  context,
  INVALID_SPAN_CONTEXT,
  type Span,
  type SpanOptions,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { sanitizeMysql, sqlOperation } from './sql';

/** The instrumentation's span name is the statement's first word; anything else is cut down. */
function spanName(name: string): string {
  return /^[A-Za-z]{1,16}$/.test(name) ? name : sqlOperation(name);
}

/** What the instrumentation calls on its tracer: `startSpan` only. */
class GuardedTracer implements Tracer {
  constructor(
    readonly inner: Tracer,
    private readonly rootSpans: boolean,
  ) {}

  startSpan(name: string, options?: SpanOptions, ctx: Context = context.active()): Span {
    if (!this.rootSpans && trace.getSpan(ctx) === undefined) {
      return trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
    }
    return this.inner.startSpan(spanName(name), options, ctx);
  }

  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    ...args: unknown[]
  ): ReturnType<F> {
    return (this.inner.startActiveSpan as (...a: unknown[]) => ReturnType<F>)(
      spanName(name),
      ...args,
    );
  }
}

export function createMysql2Instrumentation(options: { rootSpans: boolean }): Instrumentation {
  const { MySQL2Instrumentation } =
    require('@opentelemetry/instrumentation-mysql2') as typeof import('@opentelemetry/instrumentation-mysql2');
  class DistroMySQL2Instrumentation extends MySQL2Instrumentation {
    private guarded: GuardedTracer | undefined;

    // Read once per query: the wrapper is made again only when the tracer provider changes.
    protected override get tracer(): Tracer {
      const inner = super.tracer;
      if (this.guarded?.inner !== inner) this.guarded = new GuardedTracer(inner, options.rootSpans);
      return this.guarded;
    }
  }
  return new DistroMySQL2Instrumentation({
    enabled: false,
    // The statement as written, literals replaced, instead of the text with the values in.
    maskStatement: true,
    maskStatementHook: sanitizeMysql,
  });
}
