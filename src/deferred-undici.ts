/**
 * instrumentation-undici (fetch and the undici package) is loaded when the process makes its
 * first undici request, not at start-up: it hooks no module, only diagnostics channels, and its
 * 19 modules were ~10 ms of the preload's start-up for services that may never call fetch().
 *
 * Until then one listener waits on `undici:request:create`, the first message of every undici
 * request. On the first one it creates the real instrumentation (which subscribes to all of its
 * channels), hands it the providers it was given, and passes it that first message, as its own
 * listener would have received it: the first request is traced and carries the propagation
 * headers like every later one. The price moves to that first request (the package loads
 * synchronously, once per process).
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { InstrumentationBase } from '@opentelemetry/instrumentation';
import { DISTRO_VERSION } from './version';
import { warn } from './warnings';

export const UNDICI_CREATE_CHANNEL = 'undici:request:create';

type TracerProvider = Parameters<Instrumentation['setTracerProvider']>[0];
type MeterProvider = Parameters<Instrumentation['setMeterProvider']>[0];

/** The listener instrumentation-undici subscribes to the create channel. */
interface UndiciListener {
  onRequestCreated?(message: unknown): void;
}

export function deferredUndiciInstrumentation(create: () => Instrumentation): Instrumentation {
  let real: Instrumentation | undefined;
  let failed = false;
  let tracerProvider: TracerProvider | undefined;
  let meterProvider: MeterProvider | undefined;
  let listening = false;

  const load = (): Instrumentation | undefined => {
    if (real !== undefined || failed) return real;
    try {
      real = create();
      if (tracerProvider !== undefined) real.setTracerProvider(tracerProvider);
      if (meterProvider !== undefined) real.setMeterProvider(meterProvider);
    } catch (err) {
      failed = true;
      warn(
        'DLOTEL_INSTRUMENTATION_FAILED',
        `instrumentation "undici" could not be loaded (${
          err instanceof Error ? err.message : String(err)
        }); fetch and undici requests are not instrumented`,
      );
    }
    return real;
  };

  // Runs inside the application's fetch(): whatever happens, the request goes on.
  const onFirstRequest = (message: unknown): void => {
    stopListening();
    const instrumentation = load();
    if (instrumentation === undefined) return;
    try {
      (instrumentation as unknown as UndiciListener).onRequestCreated?.(message);
    } catch {
      // instrumentation-undici guards its own listener; a throw here would be a span lost.
    }
  };
  const startListening = () => {
    if (listening) return;
    listening = true;
    subscribe(UNDICI_CREATE_CHANNEL, onFirstRequest);
  };
  function stopListening() {
    if (!listening) return;
    listening = false;
    unsubscribe(UNDICI_CREATE_CHANNEL, onFirstRequest);
  }

  class DeferredUndiciInstrumentation extends InstrumentationBase {
    constructor() {
      super('@datalab/otel/deferred-undici', DISTRO_VERSION, {});
    }
    protected init(): [] {
      return [];
    }
    override enable(): void {
      super.enable();
      if (real !== undefined) real.enable();
      else if (!failed) startListening();
    }
    override disable(): void {
      super.disable();
      stopListening();
      real?.disable();
    }
    override setTracerProvider(provider: TracerProvider): void {
      tracerProvider = provider;
      super.setTracerProvider(provider);
      real?.setTracerProvider(provider);
    }
    override setMeterProvider(provider: MeterProvider): void {
      meterProvider = provider;
      super.setMeterProvider(provider);
      real?.setMeterProvider(provider);
    }
  }
  return new DeferredUndiciInstrumentation();
}
