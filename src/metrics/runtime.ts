/**
 * The Node.js runtime instruments behind the `nodejs_*` series (metrics/process.ts renames them
 * by view): event-loop delay percentiles and utilisation, V8 heap used per space, GC pauses.
 * They are measured as @opentelemetry/instrumentation-runtime-node measures them, under its
 * instrument names, units, bucket boundaries and scope name (the views, and any query on the
 * OTLP scope, keep matching); that package made some twenty instruments, fourteen of which the
 * distro dropped, and its 27 modules were ~25 ms of the preload's start-up.
 */
import {
  constants,
  monitorEventLoopDelay,
  PerformanceObserver,
  performance,
} from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import {
  type Attributes,
  type BatchObservableResult,
  type Histogram,
  type Meter,
  type ObservableGauge,
  type ObservableResult,
  ValueType,
} from '@opentelemetry/api';
import { InstrumentationBase, type InstrumentationConfig } from '@opentelemetry/instrumentation';
import { DISTRO_VERSION } from '../version';
import { RUNTIME_SCOPE } from './process';

/** The event-loop delay sampling period, in milliseconds (runtime-node's `monitoringPrecision`). */
const DELAY_RESOLUTION_MS = 10;
/** Fewer samples than this since the last collection say nothing: no delay is reported. */
const MIN_DELAY_SAMPLES = 5;
const GC_DURATION_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
];

const GC_KINDS: string[] = [];
GC_KINDS[constants.NODE_PERFORMANCE_GC_MAJOR] = 'major';
GC_KINDS[constants.NODE_PERFORMANCE_GC_MINOR] = 'minor';
GC_KINDS[constants.NODE_PERFORMANCE_GC_INCREMENTAL] = 'incremental';
GC_KINDS[constants.NODE_PERFORMANCE_GC_WEAKCB] = 'weakcb';
// One frozen attribute set per kind, and the view's renaming caches its result per kind
// (process.ts): a GC pause builds no attribute object.
const GC_ATTRIBUTES: Attributes[] = GC_KINDS.map((kind) => Object.freeze({ 'v8js.gc.type': kind }));

function seconds(nanoseconds: number): number {
  return Number.isNaN(nanoseconds) ? 0 : nanoseconds / 1e9;
}

export class RuntimeMetricsInstrumentation extends InstrumentationBase {
  private delay?: ReturnType<typeof monitorEventLoopDelay>;
  private gcObserver?: PerformanceObserver;
  private gcDuration?: Histogram;
  private registeredOn?: Meter;
  private lastUtilization = performance.eventLoopUtilization();

  constructor(config: InstrumentationConfig = {}) {
    super(RUNTIME_SCOPE, DISTRO_VERSION, config);
    // The base constructor enabled and measured before this class's fields existed.
    if (this.getConfig().enabled !== false) this.enable();
    this._updateMetricInstruments();
  }

  protected init(): [] {
    return [];
  }

  override enable(): void {
    super.enable();
    // Called by the base constructor too, before the fields below are initialised.
    if (!('lastUtilization' in this)) return;
    this.delay ??= monitorEventLoopDelay({ resolution: DELAY_RESOLUTION_MS });
    this.delay.enable();
    this.gcObserver ??= new PerformanceObserver((list) => {
      if (!this.isEnabled()) return;
      for (const entry of list.getEntries()) {
        const detail = (entry as { detail?: { kind?: number } }).detail;
        const attributes = GC_ATTRIBUTES[detail?.kind ?? -1];
        this.gcDuration?.record(entry.duration / 1e3, attributes);
      }
    });
    this.gcObserver.observe({ entryTypes: ['gc'] });
  }

  override disable(): void {
    super.disable();
    this.delay?.disable();
    this.gcObserver?.disconnect();
  }

  protected override _updateMetricInstruments(): void {
    if (!('lastUtilization' in this)) return;
    const meter = this.meter;
    // The constructor registers on the global provider's meter, registerInstrumentations again on
    // the provider it is given: the same meter when that provider is the global one. One set of
    // callbacks: two would each take the event-loop figures since the previous collection.
    if (meter === this.registeredOn) return;
    this.registeredOn = meter;
    // Created in runtime-node's order: the series come out of /metrics in the same order.
    meter
      .createObservableGauge('nodejs.eventloop.utilization', {
        description: 'Event loop utilization',
        unit: '1',
      })
      .addCallback((result: ObservableResult) => {
        if (!this.isEnabled()) return;
        const now = performance.eventLoopUtilization();
        const delta = performance.eventLoopUtilization(now, this.lastUtilization);
        this.lastUtilization = now;
        result.observe(delta.utilization);
      });

    const gauge = (name: string, description: string): ObservableGauge =>
      meter.createObservableGauge(name, { description, unit: 's' });
    const max = gauge('nodejs.eventloop.delay.max', 'Event loop maximum delay.');
    const p50 = gauge('nodejs.eventloop.delay.p50', 'Event loop 50 percentile delay.');
    const p99 = gauge('nodejs.eventloop.delay.p99', 'Event loop 99 percentile delay.');
    meter.addBatchObservableCallback(
      (result: BatchObservableResult) => {
        const delay = this.delay;
        if (!this.isEnabled() || delay === undefined || delay.count < MIN_DELAY_SAMPLES) return;
        result.observe(max, seconds(delay.max));
        result.observe(p50, seconds(delay.percentile(50)));
        result.observe(p99, seconds(delay.percentile(99)));
        delay.reset();
      },
      [max, p50, p99],
    );

    this.gcDuration = meter.createHistogram('v8js.gc.duration', {
      description:
        'Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
      unit: 's',
      valueType: ValueType.DOUBLE,
      advice: { explicitBucketBoundaries: GC_DURATION_BUCKETS },
    });

    const heapUsed = meter.createObservableGauge('v8js.memory.heap.used', {
      description: 'Heap Memory size allocated.',
      unit: 'By',
    });
    heapUsed.addCallback((result: ObservableResult) => {
      if (!this.isEnabled()) return;
      for (const space of getHeapSpaceStatistics()) {
        result.observe(space.space_used_size, { 'v8js.heap.space.name': space.space_name });
      }
    });
  }
}
