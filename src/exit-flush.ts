/**
 * The last export, from the process's `exit` event, where nothing asynchronous can run any more:
 * `process.exit()` (an application's own SIGTERM handler, `server.close(() => process.exit(0))`)
 * and a crash (an uncaught exception or an unhandled rejection: Node emits `exit` after deciding
 * the error is fatal) end the process without the event loop turning again.
 *
 * Measured alternatives (docs/configuration.md, "Exports on exit"): intercepting `process.exit()`
 * to flush asynchronously first lets the code after the call run and serve requests meanwhile;
 * an `uncaughtException` listener that re-throws after a flush changes the source line Node
 * prints above the stack. Doing the work inside `exit` changes neither the exit code, nor
 * stderr, nor what runs: the process is only held, at most DATALAB_EXIT_FLUSH_TIMEOUT_MS.
 *
 * What is still buffered is taken synchronously: the batch processors' queues, the batches an
 * exporter was sending, the distro's request counters and histograms. The local trace file is
 * appended to synchronously. OTLP needs the network: the spans and series go as JSON to a short
 * Node process (exit-sender.ts) run with `spawnSync`, which exports them with the same exporters
 * and configuration, and is killed at the time limit.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Attributes, HrTime, Link, SpanContext, TraceState } from '@opentelemetry/api';
import type { ExportResult } from '@opentelemetry/core';
import type { ScopeMetrics } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import type { OtlpProtocol } from './config';
import { injectFault } from './faults';
import { type AbandonedRequest, applyOutcome } from './metrics/outcome';
import { otelEnvAtStart } from './start-env';

/** A span exporter that remembers the batches it is sending: lost if the process ends now. */
export interface TrackedSpanExporter extends SpanExporter {
  inFlight(): ReadableSpan[];
}

export function trackInFlight(inner: SpanExporter): TrackedSpanExporter {
  const sending = new Set<ReadableSpan[]>();
  return {
    export(spans: ReadableSpan[], done: (result: ExportResult) => void) {
      sending.add(spans);
      inner.export(spans, (result) => {
        sending.delete(spans);
        done(result);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
    inFlight: () => [...sending].flat(),
  };
}

/** The spans a batch processor holds and has not handed to its exporter yet, taken out of it. */
export function takeQueued(processor: unknown): ReadableSpan[] {
  const queue = (processor as { _finishedSpans?: ReadableSpan[] })._finishedSpans;
  return Array.isArray(queue) ? queue.splice(0) : [];
}

export interface WireContext {
  traceId: string;
  spanId: string;
  traceFlags: number;
  isRemote?: boolean;
  traceState?: string;
}

export interface WireSpan {
  name: string;
  kind: number;
  spanContext: WireContext;
  parentSpanContext?: WireContext;
  startTime: HrTime;
  endTime: HrTime;
  duration: HrTime;
  status: ReadableSpan['status'];
  attributes: Attributes;
  links: { context: WireContext; attributes?: Attributes; droppedAttributesCount?: number }[];
  events: ReadableSpan['events'];
  scope: ReadableSpan['instrumentationScope'];
  droppedAttributesCount: number;
  droppedEventsCount: number;
  droppedLinksCount: number;
}

/** What the sender process receives on its stdin. */
export interface ExitPayload {
  protocol: { traces: OtlpProtocol; metrics: OtlpProtocol };
  resource: Attributes;
  spans: WireSpan[];
  scopeMetrics: ScopeMetrics[];
  timeoutMs: number;
}

function wireContext(sc: SpanContext): WireContext {
  return {
    traceId: sc.traceId,
    spanId: sc.spanId,
    traceFlags: sc.traceFlags,
    isRemote: sc.isRemote,
    traceState: sc.traceState?.serialize(),
  };
}

export function toWire(span: ReadableSpan): WireSpan {
  return {
    name: span.name,
    kind: span.kind,
    spanContext: wireContext(span.spanContext()),
    parentSpanContext: span.parentSpanContext ? wireContext(span.parentSpanContext) : undefined,
    startTime: span.startTime,
    endTime: span.endTime,
    duration: span.duration,
    status: span.status,
    attributes: span.attributes,
    links: span.links.map((l: Link) => ({
      context: wireContext(l.context),
      attributes: l.attributes,
      droppedAttributesCount: l.droppedAttributesCount,
    })),
    events: span.events,
    scope: span.instrumentationScope,
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
  };
}

function spanContextOf(wire: WireContext, makeTraceState: (s: string) => TraceState): SpanContext {
  return {
    traceId: wire.traceId,
    spanId: wire.spanId,
    traceFlags: wire.traceFlags,
    isRemote: wire.isRemote,
    traceState: wire.traceState ? makeTraceState(wire.traceState) : undefined,
  };
}

/** The sender's side of toWire: a span the OTLP exporters serialise as the original. */
export function fromWire(
  wire: WireSpan,
  resource: ReadableSpan['resource'],
  makeTraceState: (serialized: string) => TraceState,
): ReadableSpan {
  const sc = spanContextOf(wire.spanContext, makeTraceState);
  return {
    name: wire.name,
    kind: wire.kind,
    spanContext: () => sc,
    parentSpanContext: wire.parentSpanContext
      ? spanContextOf(wire.parentSpanContext, makeTraceState)
      : undefined,
    startTime: wire.startTime,
    endTime: wire.endTime,
    duration: wire.duration,
    ended: true,
    status: wire.status,
    attributes: wire.attributes,
    links: wire.links.map((l) => ({ ...l, context: spanContextOf(l.context, makeTraceState) })),
    events: wire.events,
    resource,
    instrumentationScope: wire.scope,
    droppedAttributesCount: wire.droppedAttributesCount,
    droppedEventsCount: wire.droppedEventsCount,
    droppedLinksCount: wire.droppedLinksCount,
  };
}

/**
 * NODE_OPTIONS would load the preload, TypeScript loaders, --inspect (a second debugger on the
 * same port) and heap limits into the sender, which only has the exit budget to run in; the
 * other NODE_* variables below change what the sender prints or loads. pm2_env is PM2's copy of
 * the application's settings: the OTEL_* ones are passed on explicitly.
 */
const NOT_FOR_SENDER: ReadonlySet<string> = new Set([
  'NODE_OPTIONS',
  'NODE_DEBUG',
  'NODE_DEBUG_NATIVE',
  'NODE_INSPECT_RESUME_ON_START',
  'NODE_V8_COVERAGE',
  'NODE_PENDING_DEPRECATION',
  'NODE_COMPILE_CACHE',
  'NODE_REPL_EXTERNAL_MODULE',
  'pm2_env',
]);

/** The sender's environment: the application's, with the OTEL_* variables the exporters use. */
export function senderEnv(
  env: NodeJS.ProcessEnv = process.env,
  otel: Readonly<Record<string, string>> = otelEnvAtStart(),
): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env)) {
    if (!key.startsWith('OTEL_') && !NOT_FOR_SENDER.has(key)) out[key] = value;
  }
  return { ...out, ...otel, OTEL_SDK_DISABLED: 'true' };
}

/**
 * Whether a sender can run: it is this process's executable run on a script, which only a
 * Node binary does. A single-executable application would start itself again; other runtimes
 * (process.release.name other than "node") are not known to take the script the same way.
 */
export function canSpawnSender(): boolean {
  if (process.release?.name !== 'node') return false;
  try {
    const sea = require('node:sea') as { isSea?: () => boolean };
    if (sea.isSea?.() === true) return false;
  } catch {
    // No node:sea (before Node 20): not a single-executable application either.
  }
  return true;
}

/** Where the sender's compiled file is, next to this one. */
const SENDER = join(__dirname, 'exit-sender.js');

/**
 * Runs the sender and waits for it, at most `timeoutMs`. Returns why it failed, or undefined.
 * The preload is not loaded into the sender (OTEL_SDK_DISABLED): it must not export itself.
 */
export function sendAtExit(payload: ExitPayload): string | undefined {
  // Documented (docs/configuration.md, "Exports on exit"): no OTLP export at exit there.
  if (!canSpawnSender()) return undefined;
  const started = Date.now();
  const result = spawnSync(process.execPath, [SENDER], {
    input: JSON.stringify(payload),
    timeout: payload.timeoutMs,
    killSignal: 'SIGKILL',
    env: senderEnv(),
    stdio: ['pipe', 'ignore', 'pipe'],
    windowsHide: true,
    maxBuffer: 64 * 1024,
  });
  if (result.error !== undefined || result.signal !== null) {
    return `not sent within ${payload.timeoutMs} ms (${Date.now() - started} ms spent)`;
  }
  if (result.status !== 0) return result.stderr.toString().trim().slice(0, 300) || 'sender failed';
  return undefined;
}

/** Where the spans and series still in the process are, for flushAtExit. */
export interface ExitSources {
  readonly spanQueues: {
    /** A BatchSpanProcessor. */
    readonly processor: unknown;
    readonly otlp?: TrackedSpanExporter;
    readonly file?: { exportSync(spans: ReadableSpan[]): void };
  }[];
  /** The distro's request series, as the OTLP metric reader's producer reports them. */
  readonly metrics?: {
    unreported(): boolean;
    collectSync(): { resourceMetrics: { scopeMetrics: ScopeMetrics[] } };
  };
  readonly resource: { readonly attributes: Attributes };
  readonly protocol: ExitPayload['protocol'];
}

/**
 * Ends the server spans of requests still open with the status the metrics counted them with
 * (500 for one answered with nothing), then writes and sends what is left. Synchronous; returns a
 * failure to report, if any.
 */
export function flushAtExit(
  sources: ExitSources,
  abandonOpen: () => readonly AbandonedRequest[],
  timeoutMs: number,
): string | undefined {
  const failures: string[] = [];
  try {
    injectFault('exit-flush');
    for (const { span, status } of abandonOpen()) {
      // instrumentation-http may have ended it already (its own 'close' listener ran).
      if (!span.isRecording()) continue;
      applyOutcome(span, status, 'no response before the process exited');
      span.end();
    }
  } catch (err) {
    // What finished before still goes out.
    failures.push(`requests still open: ${err instanceof Error ? err.message : String(err)}`);
  }
  const spans: WireSpan[] = [];
  for (const queue of sources.spanQueues) {
    const queued = takeQueued(queue.processor);
    if (queue.file) {
      try {
        queue.file.exportSync(queued);
      } catch (err) {
        failures.push(`the local trace file: ${err instanceof Error ? err.message : String(err)}`);
      }
    } else if (queue.otlp) {
      for (const span of [...queue.otlp.inFlight(), ...queued]) spans.push(toWire(span));
    }
  }
  const metrics = sources.metrics;
  const scopeMetrics = metrics?.unreported()
    ? metrics.collectSync().resourceMetrics.scopeMetrics
    : [];
  if (spans.length > 0 || scopeMetrics.length > 0) {
    const failed = sendAtExit({
      protocol: sources.protocol,
      resource: sources.resource.attributes,
      spans,
      scopeMetrics,
      timeoutMs,
    });
    if (failed !== undefined) failures.push(`OTLP: ${failed}`);
  }
  return failures.length === 0 ? undefined : failures.join('; ');
}
