/**
 * Carries the correlation ID between services: the `x-correlation-id` header (name configurable)
 * and the `correlation.id` baggage entry, on every outbound call the OpenTelemetry http and fetch
 * instrumentations make, and back in on every inbound request.
 *
 * It owns W3C baggage when baggage propagation is on, because a generated ID is not in the
 * context's baggage (see context.ts): on inject it adds the entry before the baggage header is
 * written, so the next service sees it either way.
 */
import {
  type Context,
  propagation,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
} from '@opentelemetry/api';
import { correlationIdFrom, withCorrelationId } from './context';
import { CORRELATION_BAGGAGE_KEY, isValidCorrelationId } from './id';

/** Whether a plain header object (node:http's outgoing carrier) already has `name`. */
function hasHeader(carrier: unknown, name: string): boolean {
  if (carrier === null || typeof carrier !== 'object') return false;
  for (const key of Object.keys(carrier)) if (key.toLowerCase() === name) return true;
  return false;
}

export class CorrelationPropagator implements TextMapPropagator {
  constructor(
    private readonly header: string,
    private readonly baggage: TextMapPropagator | undefined,
  ) {}

  inject(ctx: Context, carrier: unknown, setter: TextMapSetter): void {
    const id = correlationIdFrom(ctx);
    // An application that forwards the header itself keeps its value: adding ours would make
    // the next service receive "a, a", which is no valid ID.
    if (id !== undefined && !hasHeader(carrier, this.header)) setter.set(carrier, this.header, id);
    if (!this.baggage) return;
    let out = ctx;
    if (id !== undefined) {
      const bag = propagation.getBaggage(ctx) ?? propagation.createBaggage();
      if (bag.getEntry(CORRELATION_BAGGAGE_KEY)?.value !== id) {
        out = propagation.setBaggage(ctx, bag.setEntry(CORRELATION_BAGGAGE_KEY, { value: id }));
      }
    }
    this.baggage.inject(out, carrier, setter);
  }

  extract(ctx: Context, carrier: unknown, getter: TextMapGetter): Context {
    let out = this.baggage ? this.baggage.extract(ctx, carrier, getter) : ctx;
    // Baggage comes from the client as much as the header does: validate it the same way.
    const bag = propagation.getBaggage(out);
    const fromBaggage = bag?.getEntry(CORRELATION_BAGGAGE_KEY)?.value;
    if (bag && fromBaggage !== undefined && !isValidCorrelationId(fromBaggage)) {
      out = propagation.setBaggage(out, bag.removeEntry(CORRELATION_BAGGAGE_KEY));
    }
    const fromHeader = getter.get(carrier, this.header);
    if (isValidCorrelationId(fromHeader)) return withCorrelationId(out, fromHeader);
    if (isValidCorrelationId(fromBaggage)) return withCorrelationId(out, fromBaggage);
    return out;
  }

  fields(): string[] {
    return this.baggage ? [this.header, ...this.baggage.fields()] : [this.header];
  }
}
