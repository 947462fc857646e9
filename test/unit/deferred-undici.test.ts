import assert from 'node:assert/strict';
import { channel } from 'node:diagnostics_channel';
import { createNoopMeter } from '@opentelemetry/api';
import { InstrumentationBase } from '@opentelemetry/instrumentation';
import { deferredUndiciInstrumentation, UNDICI_CREATE_CHANNEL } from '../../src/deferred-undici';
import { setWarningSink, type WarningCode } from '../../src/warnings';

/** Stands for instrumentation-undici: records what its create listener received. */
class FakeUndici extends InstrumentationBase {
  readonly received: unknown[] = [];
  meterProviders: unknown[] = [];
  constructor() {
    super('fake-undici', '1.0.0', { enabled: false });
  }
  protected init(): [] {
    return [];
  }
  onRequestCreated(message: unknown): void {
    this.received.push(message);
  }
  override setMeterProvider(provider: Parameters<InstrumentationBase['setMeterProvider']>[0]) {
    this.meterProviders.push(provider);
    super.setMeterProvider(provider);
  }
}

const NOOP_METER_PROVIDER = { getMeter: () => createNoopMeter() };

describe('deferredUndiciInstrumentation', () => {
  const create = channel(UNDICI_CREATE_CHANNEL);

  it('loads nothing until the first undici request, then hands it that request', () => {
    const made: FakeUndici[] = [];
    const deferred = deferredUndiciInstrumentation(() => {
      const fake = new FakeUndici();
      made.push(fake);
      return fake;
    });
    try {
      deferred.setMeterProvider(NOOP_METER_PROVIDER);
      assert.equal(made.length, 0);
      const first = { request: { path: '/first' } };
      create.publish(first);
      assert.equal(made.length, 1);
      assert.deepEqual(made[0]?.received, [first]);
      assert.deepEqual(made[0]?.meterProviders, [NOOP_METER_PROVIDER]);
      // From here on the real instrumentation listens by itself: the stand-in no longer does.
      create.publish({ request: { path: '/second' } });
      assert.equal(made.length, 1);
      assert.equal(made[0]?.received.length, 1);
    } finally {
      deferred.disable();
    }
  });

  it('never loads when disabled before any request', () => {
    let loads = 0;
    const deferred = deferredUndiciInstrumentation(() => {
      loads++;
      return new FakeUndici();
    });
    deferred.disable();
    create.publish({ request: {} });
    assert.equal(loads, 0);
  });

  it('reports a package that fails to load with its code, and the request goes on', () => {
    const seen: [WarningCode, string][] = [];
    const previous = setWarningSink((code, message) => seen.push([code, message]));
    let loads = 0;
    const deferred = deferredUndiciInstrumentation(() => {
      loads++;
      throw new Error("Cannot find module '@opentelemetry/instrumentation-undici'");
    });
    try {
      assert.doesNotThrow(() => create.publish({ request: {} }));
      create.publish({ request: {} });
      assert.equal(loads, 1);
      assert.equal(seen.length, 1);
      assert.equal(seen[0]?.[0], 'DLOTEL_INSTRUMENTATION_FAILED');
      assert.match(seen[0]?.[1] ?? '', /"undici" could not be loaded \(Cannot find module/);
    } finally {
      setWarningSink(previous);
      deferred.disable();
    }
  });
});
