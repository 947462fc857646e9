import assert from 'node:assert/strict';
import {
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  propagation,
  ROOT_CONTEXT,
} from '@opentelemetry/api';
import { W3CBaggagePropagator } from '@opentelemetry/core';
import { correlationIdFrom, withCorrelationId } from '../../src/correlation/context';
import { isValidCorrelationId } from '../../src/correlation/id';
import { CorrelationPropagator } from '../../src/correlation/propagator';

describe('isValidCorrelationId', () => {
  it('accepts up to 128 characters of [A-Za-z0-9._:-]', () => {
    for (const ok of ['a', 'order-42.retry:1', 'A_b.C:d-9', 'x'.repeat(128)]) {
      assert.ok(isValidCorrelationId(ok), ok);
    }
  });
  it('rejects everything else', () => {
    for (const bad of [
      '',
      'x'.repeat(129),
      'abc\r\nset-cookie: x=1',
      'a b',
      'a,b',
      'é',
      'a\u0000b',
      'a\tb',
      'a/b',
      undefined,
      ['a'],
      42,
    ]) {
      assert.ok(!isValidCorrelationId(bad), JSON.stringify(bad));
    }
  });
});

describe('CorrelationPropagator', () => {
  // `propagation` needs no global propagator here: the propagator is called directly.
  const p = new CorrelationPropagator('x-correlation-id', new W3CBaggagePropagator());

  it('extracts a valid header; the header wins over baggage', () => {
    const ctx = p.extract(
      ROOT_CONTEXT,
      { 'x-correlation-id': 'from-header', baggage: 'correlation.id=from-baggage' },
      defaultTextMapGetter,
    );
    assert.equal(correlationIdFrom(ctx), 'from-header');
  });

  it('falls back to a valid baggage entry, and drops an invalid one', () => {
    const fromBaggage = p.extract(
      ROOT_CONTEXT,
      { baggage: 'correlation.id=upstream-7,other=1' },
      defaultTextMapGetter,
    );
    assert.equal(correlationIdFrom(fromBaggage), 'upstream-7');
    const hostile = p.extract(
      ROOT_CONTEXT,
      { 'x-correlation-id': 'x'.repeat(200), baggage: 'correlation.id=a%0D%0Ab,other=1' },
      defaultTextMapGetter,
    );
    assert.equal(correlationIdFrom(hostile), undefined);
    const bag = propagation.getBaggage(hostile);
    assert.equal(bag?.getEntry('correlation.id'), undefined);
    assert.equal(bag?.getEntry('other')?.value, '1', 'other baggage untouched');
  });

  it('injects the header and the baggage entry', () => {
    const carrier: Record<string, string> = {};
    p.inject(withCorrelationId(ROOT_CONTEXT, 'abc-1'), carrier, defaultTextMapSetter);
    assert.equal(carrier['x-correlation-id'], 'abc-1');
    assert.equal(carrier.baggage, 'correlation.id=abc-1');
  });

  it("keeps a header the application forwards itself (no 'a, a' downstream)", () => {
    const carrier: Record<string, string> = { 'X-Correlation-Id': 'set-by-app' };
    p.inject(withCorrelationId(ROOT_CONTEXT, 'ours'), carrier, defaultTextMapSetter);
    assert.equal(carrier['X-Correlation-Id'], 'set-by-app');
    assert.equal(carrier['x-correlation-id'], undefined);
  });

  it('injects nothing outside a request', () => {
    const carrier: Record<string, string> = {};
    p.inject(context.active(), carrier, defaultTextMapSetter);
    assert.deepEqual(carrier, {});
  });

  it('works without baggage propagation', () => {
    const noBaggage = new CorrelationPropagator('x-request-id', undefined);
    const carrier: Record<string, string> = {};
    noBaggage.inject(withCorrelationId(ROOT_CONTEXT, 'r-1'), carrier, defaultTextMapSetter);
    assert.deepEqual(carrier, { 'x-request-id': 'r-1' });
    assert.deepEqual(noBaggage.fields(), ['x-request-id']);
  });
});
