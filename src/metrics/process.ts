/**
 * Process metrics: `memory_usage_bytes` (SPEC §3, resident set size); the process series of
 * prom-client's default metrics, under its names, types and help texts (SPEC §3: dashboards and
 * alerts written for prom-client keep working); and the Node.js runtime health series, measured as
 * OpenTelemetry's runtime instrumentation measures them (metrics/runtime.ts) and renamed by view
 * to Prometheus conventions with the `service` label.
 *
 * Everything here is read in observable callbacks, that is when a reader collects (a scrape, a
 * push): nothing is recorded per request.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Attributes, BatchObservableResult, Meter, Observable } from '@opentelemetry/api';
import { AggregationType, type ViewOptions } from '@opentelemetry/sdk-metrics';
import { warnOnce } from '../warnings';

export function createProcessMetrics(meter: Meter, service: string): void {
  const attributes: Attributes = Object.freeze({ service });
  meter
    .createObservableGauge('memory_usage_bytes', {
      description: 'Resident set size of the process.',
      unit: 'By',
    })
    // memoryUsage.rss() reads one number; memoryUsage() would walk the V8 heap as well.
    .addCallback((result) => result.observe(process.memoryUsage.rss(), attributes));
  createPromClientMetrics(meter, service, process.platform === 'linux');
}

/** A callback that reports its first failure and never throws into the SDK (or the app). */
function guarded<A extends unknown[]>(what: string, callback: (...args: A) => void) {
  return (...args: A): void => {
    try {
      callback(...args);
    } catch (err) {
      warnOnce('DLOTEL_INTERNAL_ERROR', `process-metrics-${what}`, `${what} metrics: ${err}`);
    }
  };
}

/**
 * prom-client 15's default process metrics (lib/metrics/process*.js, osMemoryHeap*.js,
 * version.js), same names, types, help and, on Linux, the same /proc sources. Differences, all
 * in the values' favour: the CPU counters count from the process's start (prom-client's from
 * when it was set up), the start time is not rounded to the second, and the file-descriptor
 * limit is read at every collection (it can be raised while the process runs).
 */
export function createPromClientMetrics(meter: Meter, service: string, linux: boolean): void {
  const attributes: Attributes = Object.freeze({ service });

  const cpuUser = meter.createObservableCounter('process_cpu_user_seconds_total', {
    description: 'Total user CPU time spent in seconds.',
    unit: 's',
  });
  const cpuSystem = meter.createObservableCounter('process_cpu_system_seconds_total', {
    description: 'Total system CPU time spent in seconds.',
    unit: 's',
  });
  const cpuTotal = meter.createObservableCounter('process_cpu_seconds_total', {
    description: 'Total user and system CPU time spent in seconds.',
    unit: 's',
  });
  meter.addBatchObservableCallback(
    guarded('cpu', (result: BatchObservableResult) => {
      // getrusage(): every thread of the process, as /proc/<pid>/stat's utime and stime.
      const { user, system } = process.cpuUsage();
      result.observe(cpuUser, user / 1e6, attributes);
      result.observe(cpuSystem, system / 1e6, attributes);
      result.observe(cpuTotal, (user + system) / 1e6, attributes);
    }),
    [cpuUser, cpuSystem, cpuTotal],
  );

  // Once: a value computed at every collection would move with clock adjustments, and every
  // move would read as a restart in changes(process_start_time_seconds[…]).
  const startTime = Date.now() / 1000 - process.uptime();
  meter
    .createObservableGauge('process_start_time_seconds', {
      description: 'Start time of the process since unix epoch in seconds.',
      unit: 's',
    })
    .addCallback(guarded('start-time', (result) => result.observe(startTime, attributes)));

  const resident = meter.createObservableGauge('process_resident_memory_bytes', {
    description: 'Resident memory size in bytes.',
    unit: 'By',
  });
  if (linux) {
    const virtual = meter.createObservableGauge('process_virtual_memory_bytes', {
      description: 'Virtual memory size in bytes.',
      unit: 'By',
    });
    const heap = meter.createObservableGauge('process_heap_bytes', {
      description: 'Process heap size in bytes.',
      unit: 'By',
    });
    const observables: Observable[] = [resident, virtual, heap];
    meter.addBatchObservableCallback(
      guarded('memory', (result: BatchObservableResult) => {
        // procfs is served from kernel memory: this read does not block on a disk.
        const status = parseStatus(readFileSync('/proc/self/status', 'latin1'));
        if (status.VmRSS !== undefined) result.observe(resident, status.VmRSS, attributes);
        if (status.VmSize !== undefined) result.observe(virtual, status.VmSize, attributes);
        if (status.VmData !== undefined) result.observe(heap, status.VmData, attributes);
      }),
      observables,
    );
    meter
      .createObservableGauge('process_open_fds', {
        description: 'Number of open file descriptors.',
      })
      .addCallback(
        guarded('open-fds', (result) => {
          // The directory's own descriptor, open while it is listed, is not the application's.
          result.observe(readdirSync('/proc/self/fd').length - 1, attributes);
        }),
      );
    meter
      .createObservableGauge('process_max_fds', {
        description: 'Maximum number of open file descriptors.',
      })
      .addCallback(
        guarded('max-fds', (result) => {
          const max = parseMaxOpenFiles(readFileSync('/proc/self/limits', 'latin1'));
          if (max !== undefined) result.observe(max, attributes);
        }),
      );
  } else {
    resident.addCallback(
      guarded('memory', (result) => result.observe(process.memoryUsage.rss(), attributes)),
    );
  }

  const [major = '', minor = '', patch = ''] = process.version.slice(1).split('.');
  const versionAttributes: Attributes = Object.freeze({
    version: process.version,
    major,
    minor,
    patch,
    service,
  });
  meter
    .createObservableGauge('nodejs_version_info', { description: 'Node.js version info.' })
    .addCallback(guarded('version', (result) => result.observe(1, versionAttributes)));

  // Undocumented process methods, as prom-client reads them; skipped where a Node.js lacks them.
  const internals = process as unknown as {
    _getActiveHandles?: () => unknown[];
    _getActiveRequests?: () => unknown[];
  };
  // prom-client also exports `nodejs_active_handles_total` and `nodejs_active_requests_total`:
  // gauges named like counters, which `promtool check metrics` rejects. The per-type series carry
  // the same numbers (`sum without (type) (...)`).
  for (const [name, read, help] of [
    [
      'nodejs_active_handles',
      internals._getActiveHandles,
      'Number of active libuv handles grouped by handle type. Every handle type is C++ class name.',
    ],
    [
      'nodejs_active_requests',
      internals._getActiveRequests,
      'Number of active libuv requests grouped by request type. Every request type is C++ class name.',
    ],
  ] as const) {
    if (typeof read !== 'function') continue;
    meter.createObservableGauge(name, { description: help }).addCallback(
      guarded(name, (result) => {
        for (const [type, count] of countByType(read.call(process))) {
          result.observe(count, { type, ...attributes });
        }
      }),
    );
  }
}

/** Handles or requests by constructor name, as prom-client groups them. */
export function countByType(list: readonly unknown[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of list) {
    const type = (item as { constructor?: { name?: unknown } } | null | undefined)?.constructor
      ?.name;
    if (typeof type !== 'string') continue;
    counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return counts;
}

/** VmRSS, VmSize and VmData of /proc/<pid>/status, in bytes. */
export function parseStatus(text: string): { VmRSS?: number; VmSize?: number; VmData?: number } {
  const out: { VmRSS?: number; VmSize?: number; VmData?: number } = {};
  for (const line of text.split('\n')) {
    const key = line.slice(0, line.indexOf(':'));
    if (key !== 'VmRSS' && key !== 'VmSize' && key !== 'VmData') continue;
    // `VmRSS:\t  123456 kB`: the kernel always writes kibibytes here.
    const kib = Number.parseInt(line.slice(key.length + 1).trim(), 10);
    if (Number.isFinite(kib)) out[key] = kib * 1024;
  }
  return out;
}

/** The soft limit of `Max open files` in /proc/<pid>/limits; none when unlimited. */
export function parseMaxOpenFiles(text: string): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith('Max open files')) continue;
    const soft = Number(line.slice('Max open files'.length).trim().split(/\s+/)[0]);
    return Number.isFinite(soft) ? soft : undefined;
  }
  return undefined;
}

export const RUNTIME_SCOPE = '@opentelemetry/instrumentation-runtime-node';

/** runtime-node instrument → Prometheus name, and the attribute renamed to a label. */
export const RUNTIME_METRICS: readonly {
  instrument: string;
  name: string;
  attribute?: [from: string, to: string];
}[] = [
  { instrument: 'nodejs.eventloop.delay.p50', name: 'nodejs_eventloop_delay_p50_seconds' },
  { instrument: 'nodejs.eventloop.delay.p99', name: 'nodejs_eventloop_delay_p99_seconds' },
  { instrument: 'nodejs.eventloop.delay.max', name: 'nodejs_eventloop_delay_max_seconds' },
  { instrument: 'nodejs.eventloop.utilization', name: 'nodejs_eventloop_utilization_ratio' },
  {
    instrument: 'v8js.memory.heap.used',
    name: 'nodejs_heap_used_bytes',
    attribute: ['v8js.heap.space.name', 'space'],
  },
  {
    instrument: 'v8js.gc.duration',
    name: 'nodejs_gc_duration_seconds',
    attribute: ['v8js.gc.type', 'gc_type'],
  },
];

/**
 * Keeps `service` and one renamed attribute. The result is cached per incoming value (a GC kind,
 * a heap space: a handful), so recording a GC pause builds no attribute object.
 */
function attributeRenamer(service: string, attribute: readonly [string, string] | undefined) {
  const plain: Attributes = Object.freeze({ service });
  const byValue = new Map<unknown, Attributes>();
  return {
    process: (incoming: Attributes): Attributes => {
      if (attribute === undefined) return plain;
      const value = incoming[attribute[0]];
      if (value === undefined) return plain;
      let out = byValue.get(value);
      if (out === undefined) {
        out = Object.freeze({ service, [attribute[1]]: value });
        if (byValue.size < 64) byValue.set(value, out);
      }
      return out;
    },
  };
}

/** Views: the selected runtime instruments renamed, every other runtime instrument dropped. */
export function runtimeViews(service: string): ViewOptions[] {
  const views: ViewOptions[] = RUNTIME_METRICS.map(({ instrument, name, attribute }) => ({
    meterName: RUNTIME_SCOPE,
    instrumentName: instrument,
    name,
    attributesProcessors: [attributeRenamer(service, attribute)],
  }));
  // Every other runtime instrument: a matching view replaces the default stream, and a dropped
  // stream exports nothing, while the renamed instruments above keep their own stream.
  views.push({
    meterName: RUNTIME_SCOPE,
    instrumentName: '*',
    aggregation: { type: AggregationType.DROP },
  });
  return views;
}

export const HOST_METRICS_SCOPE = '@opentelemetry/instrumentation-host-metrics';

/** host-metrics' series get the `service` label every series carries, their own kept. */
export function hostMetricsViews(service: string): ViewOptions[] {
  return [
    {
      meterName: HOST_METRICS_SCOPE,
      instrumentName: '*',
      attributesProcessors: [{ process: (incoming: Attributes) => ({ ...incoming, service }) }],
    },
  ];
}
