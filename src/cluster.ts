/**
 * Services that run as several processes: Node's `cluster` and PM2.
 *
 * The rule (docs/metrics.md, "Multi-process services"):
 * - A `cluster` primary that runs the distro holds the one management port and serves the sum
 *   of its workers' series; its workers never bind a port and hand their series over the
 *   cluster IPC channel when the primary asks.
 * - Under PM2 (whose daemon is the cluster primary and runs no distro), and for cluster workers
 *   whose primary does not run the distro, every instance binds its own port:
 *   `DATALAB_METRICS_PORT + instance`, the instance being PM2's `NODE_APP_INSTANCE` (0, 1, …).
 *
 * PM2 puts the application's environment (the ecosystem file's `env`) into `process.env` only in
 * its process container, after the preload ran; the container receives it as the JSON variable
 * `pm2_env`, which is read here so that every worker honours the operator's settings.
 */
import type { ChildProcess } from 'node:child_process';
import type { Cluster, Worker } from 'node:cluster';
import type { InternalCheckDefinition } from './health/runner';

/** Set in the environment of the workers a distro-running primary forks: its PID. */
export const PRIMARY_MARK = 'DLOTEL_CLUSTER_PRIMARY';

/** IPC commands. The `NODE_` prefix makes Node deliver them as `internalMessage`, so the
 * application's own `process.on('message')` handlers never see them. */
const HELLO = 'NODE_DLOTEL_HELLO';
const COLLECT = 'NODE_DLOTEL_COLLECT';
const METRICS = 'NODE_DLOTEL_METRICS';
/** A worker's last request series, sent from its `exit` event. */
const FINAL = 'NODE_DLOTEL_FINAL';

export type Env = Readonly<Record<string, string | undefined>>;

/** What the process is in a multi-process service. */
export type ProcessRole =
  /** A worker of a distro-running cluster primary: no port, series go to the primary. */
  | { readonly kind: 'cluster-worker' }
  /** One of several instances that each bind `port + offset` (PM2, distro-less primary). */
  | {
      readonly kind: 'instance';
      readonly offset: number;
      readonly manager: 'pm2' | 'cluster';
      /** Take the lowest free port from `port + offset` up (worker ids are never reused). */
      readonly scan?: boolean;
    }
  /** A process of its own (a cluster primary included). */
  | { readonly kind: 'process' }
  /** PM2 itself (its CLI, its daemon) when the preload reached it through NODE_OPTIONS. */
  | { readonly kind: 'manager' };

export interface Pm2Context {
  /** The application's environment as PM2 will set it, merged over the current one. */
  readonly env: Env;
  /** The application's script (the process's own argv[1] is PM2's container). */
  readonly mainScript: string | undefined;
  readonly cwd: string | undefined;
  /** NODE_APP_INSTANCE (or the variable the app's `instance_var` names). */
  readonly instance: number | undefined;
}

/**
 * PM2's view of this process, when PM2 started it. Cluster mode passes the app's settings as
 * the JSON variable `pm2_env` (ProcessContainer.js copies it into process.env later); fork mode
 * spawns with them in the environment already, plus `pm_exec_path`.
 */
export function pm2Context(env: Env): Pm2Context | undefined {
  let merged: Record<string, string | undefined> | undefined;
  const raw = env.pm2_env;
  if (raw !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      parsed = undefined;
    }
    if (parsed !== null && typeof parsed === 'object') {
      merged = { ...env };
      // The container copies every key; only scalar ones can be settings.
      for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
        if (typeof v === 'string') merged[k] = v;
        else if (typeof v === 'number' || typeof v === 'boolean') merged[k] = String(v);
      }
    }
  }
  if (merged === undefined) {
    if (env.pm_exec_path === undefined || env.pm_id === undefined) return undefined;
    merged = { ...env };
  }
  const instanceVar = merged.instance_var || 'NODE_APP_INSTANCE';
  const instance = Number(merged[instanceVar]);
  return {
    env: merged,
    mainScript: merged.pm_exec_path,
    cwd: merged.pm_cwd,
    instance: Number.isSafeInteger(instance) && instance >= 0 ? instance : undefined,
  };
}

function loadCluster(): Cluster {
  return require('node:cluster') as Cluster;
}

let role: ProcessRole | undefined;

/** Decided once per process, from the environment it was started with. */
export function processRole(env: Env = process.env): ProcessRole {
  role ??= decideRole(env, loadCluster().isWorker, process.ppid, process.argv[1]);
  return role;
}

const PM2_ITSELF = /[\\/]pm2[\\/](bin[\\/][\w-]+|lib[\\/]Daemon\.js)$/;

export function decideRole(
  env: Env,
  isWorker: boolean,
  ppid: number,
  mainScript?: string,
): ProcessRole {
  // PM2's daemon is the primary of the instances: answering for them is their job.
  if (mainScript !== undefined && PM2_ITSELF.test(mainScript)) return { kind: 'manager' };
  const pm2 = pm2Context(env);
  if (pm2 !== undefined) {
    // Under PM2 the daemon is the primary; it runs no distro, so nothing aggregates.
    return { kind: 'instance', offset: pm2.instance ?? 0, manager: 'pm2' };
  }
  if (!isWorker) return { kind: 'process' };
  if (env[PRIMARY_MARK] === String(ppid)) return { kind: 'cluster-worker' };
  // A primary without the distro (cluster.setupPrimary({ execArgv }) giving it to the workers
  // only): each worker its own port. Cluster ids are never reused, so a respawned worker would
  // move to a new port every time: NODE_APP_INSTANCE when a manager sets it, else the lowest
  // free port from DATALAB_METRICS_PORT up.
  const instance = env.NODE_APP_INSTANCE === undefined ? Number.NaN : Number(env.NODE_APP_INSTANCE);
  if (Number.isSafeInteger(instance) && instance >= 0) {
    return { kind: 'instance', offset: instance, manager: 'cluster' };
  }
  return { kind: 'instance', offset: 0, manager: 'cluster', scan: true };
}

/** Wire form of a metric collection (JSON over the IPC channel). */
export interface WireMetric {
  /** name, description, unit */
  readonly n: string;
  readonly d: string;
  readonly u: string;
  /** DataPointType */
  readonly t: number;
  /** monotonic sum */
  readonly m: boolean;
  /** [attributes, value]: a number, or a histogram; a counter's exemplar after, if any */
  readonly p: readonly (
    | readonly [Record<string, unknown>, number | WireHistogram]
    | readonly [Record<string, unknown>, number, WireExemplar]
  )[];
}

/** An exemplar (metrics/instruments.ts) on the wire. */
export interface WireExemplar {
  /** trace ID, span ID, correlation ID (when it has one) */
  readonly t: string;
  readonly s: string;
  readonly c?: string;
  /** value, time (ms since the epoch) */
  readonly v: number;
  readonly ms: number;
}

export interface WireHistogram {
  readonly count: number;
  readonly sum: number;
  readonly min: number | null;
  readonly max: number | null;
  /** Boundaries; null stands for Infinity, which JSON cannot carry. */
  readonly b: readonly (number | null)[];
  readonly c: readonly number[];
  /** Exemplars by bucket, when the histogram has any. */
  readonly x?: readonly (WireExemplar | null)[];
}

export type Collect = () => Promise<readonly WireMetric[]>;
/** The distro's request counters and histograms, collected synchronously (at exit). */
export type CollectFinal = () => readonly WireMetric[];

let primaryInstalled = false;

/**
 * In a process that may become a cluster primary: mark the workers it forks, so that they know
 * their primary aggregates, and call `onFork` for each one (the primary then binds the port).
 */
export function installPrimary(onFork: () => void): void {
  if (primaryInstalled) return;
  primaryInstalled = true;
  const cluster = loadCluster();
  if (!cluster.isPrimary) return;
  const fork = cluster.fork;
  // Wrapping fork is the one way to give the worker an environment variable; everything else
  // it does is unchanged.
  cluster.fork = function forkWithMark(this: Cluster, env?: object) {
    return fork.call(this, { ...env, [PRIMARY_MARK]: String(process.pid) });
  } as Cluster['fork'];
  cluster.on('fork', (worker: Worker) => {
    onFork();
    trackWorker(worker);
  });
}

interface WorkerState {
  readonly worker: Worker;
  /** Said hello: runs the distro and answers collections. */
  ready: boolean;
  last?: readonly WireMetric[];
  pending?: { readonly id: number; readonly done: (m: readonly WireMetric[] | undefined) => void };
}

const workers = new Map<number, WorkerState>();
/**
 * Counters and histograms of the workers that exited, added up into one collection (a crash
 * loop must not grow the scrape), so that totals never go down.
 */
let retired: readonly WireMetric[] | undefined;
let nextRequestId = 1;

function trackWorker(worker: Worker): void {
  const state: WorkerState = { worker, ready: false };
  workers.set(worker.id, state);
  const proc = worker.process as ChildProcess;
  proc.on('internalMessage', (message: unknown) => {
    const m = message as { cmd?: unknown; id?: unknown; metrics?: unknown };
    if (m === null || typeof m !== 'object') return;
    if (m.cmd === HELLO) state.ready = true;
    else if (m.cmd === FINAL && Array.isArray(m.metrics)) {
      state.last = withFinal(state.last, m.metrics as WireMetric[]);
    } else if (m.cmd === METRICS && Array.isArray(m.metrics)) {
      state.ready = true;
      const pending = state.pending;
      if (pending !== undefined && pending.id === m.id) pending.done(m.metrics as WireMetric[]);
    }
  });
  // The worker's last message (FINAL, written from its `exit` event) may be read after its
  // `exit` is seen here: it is retired once the process has exited and its channel is closed,
  // which comes after every message in it. Until then scrapes use its last series.
  let exited = false;
  let closed = false;
  const retire = () => {
    if (!exited || !closed || !workers.has(worker.id)) return;
    workers.delete(worker.id);
    if (state.last === undefined) return;
    const { MetricsMerger } =
      require('./metrics/aggregate') as typeof import('./metrics/aggregate');
    retired = new MetricsMerger().sum([...(retired ? [retired] : []), onlyCumulative(state.last)]);
  };
  worker.once('exit', () => {
    exited = true;
    closed ||= !proc.connected;
    state.pending?.done(undefined);
    retire();
  });
  proc.once('disconnect', () => {
    closed = true;
    retire();
  });
}

/** The last collection with the series of the worker's FINAL message in place of their own. */
export function withFinal(
  last: readonly WireMetric[] | undefined,
  final: readonly WireMetric[],
): readonly WireMetric[] {
  const names = new Set(final.map((m) => m.n));
  return [...(last ?? []).filter((m) => !names.has(m.n)), ...final];
}

function onlyCumulative(metrics: readonly WireMetric[]): readonly WireMetric[] {
  // Gauges describe a process that no longer exists; counters and histograms stay in the sums.
  return metrics.filter((m) => m.t === HISTOGRAM || (m.t === SUM && m.m));
}

// sdk-metrics' DataPointType values (stable: part of its exported enum).
const HISTOGRAM = 0;
const SUM = 3;

/**
 * The series of every live worker (fresh, or the last ones it sent when it does not answer in
 * time) and of the workers that exited. Empty outside a cluster primary.
 */
export async function collectWorkers(timeoutMs = 2_000): Promise<(readonly WireMetric[])[]> {
  const asked: Promise<readonly WireMetric[] | undefined>[] = [];
  for (const state of workers.values()) {
    if (!state.ready || !state.worker.isConnected()) {
      if (state.last) asked.push(Promise.resolve(state.last));
      continue;
    }
    asked.push(askWorker(state, timeoutMs));
  }
  // A worker that retires while this collection waits is in its answers already: the sum of
  // the retired ones is the one from before the wait, or it would be counted twice.
  const retiredBefore = retired;
  const answers = await Promise.all(asked);
  const found = answers.filter((a): a is readonly WireMetric[] => a !== undefined);
  return retiredBefore === undefined ? found : [...found, retiredBefore];
}

function askWorker(
  state: WorkerState,
  timeoutMs: number,
): Promise<readonly WireMetric[] | undefined> {
  // One collection per worker at a time: a second scrape waits for the same answer.
  state.pending?.done(state.last);
  const id = nextRequestId++;
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(state.last), timeoutMs);
    timer.unref();
    const finish = (metrics: readonly WireMetric[] | undefined) => {
      clearTimeout(timer);
      if (state.pending?.id === id) state.pending = undefined;
      if (metrics !== undefined) state.last = metrics;
      resolve(metrics ?? state.last);
    };
    state.pending = { id, done: finish };
    try {
      // With a callback, a send that fails reports there rather than as an 'error' event.
      state.worker.process.send({ cmd: COLLECT, id }, undefined, undefined, () => {});
    } catch {
      finish(state.last);
    }
  });
}

/** Whether this process is a cluster primary that forked workers (live or exited). */
export function hasWorkers(): boolean {
  return workers.size > 0 || retired !== undefined;
}

/** Number of workers the primary knows about, and how many of them are connected. */
export function workerCounts(): { forked: number; connected: number } {
  let connected = 0;
  for (const state of workers.values()) if (state.worker.isConnected()) connected++;
  return { forked: workers.size, connected };
}

/**
 * `/health` of a cluster primary: its own checks, plus `cluster_workers`, unhealthy when no
 * worker is connected (the primary itself serves no request). Absent outside a primary.
 */
export function clusterWorkersCheck(): InternalCheckDefinition {
  let peak = 0;
  return {
    name: 'cluster_workers',
    applies: hasWorkers,
    check: () => {
      const { forked, connected } = workerCounts();
      peak = Math.max(peak, forked);
      return {
        status: connected > 0 ? 'healthy' : 'unhealthy',
        message: `${connected} of ${peak} workers connected`,
        connected,
        peak,
      };
    },
  };
}

let workerInstalled = false;
let collectFinal: CollectFinal | undefined;

/** In a cluster worker of a distro-running primary: answer its collections. */
export function serveCollections(collect: Collect, final?: CollectFinal): void {
  if (workerInstalled || typeof process.send !== 'function') return;
  workerInstalled = true;
  collectFinal = final;
  process.on('internalMessage' as 'message', (message: unknown) => {
    const m = message as { cmd?: unknown; id?: unknown };
    if (m === null || typeof m !== 'object' || m.cmd !== COLLECT) return;
    collect().then(
      (metrics) => reply({ cmd: METRICS, id: m.id, metrics }),
      () => reply({ cmd: METRICS, id: m.id, metrics: [] }),
    );
  });
  reply({ cmd: HELLO });
}

function reply(message: object): void {
  try {
    if (process.connected) process.send?.(message, undefined, undefined, () => {});
  } catch {
    // The primary is gone: nothing to answer.
  }
}

/**
 * From the worker's `exit` event (shutdown.ts, after the requests still open were counted): its
 * request series as they end, so that the primary's totals keep what the worker counted after
 * its last scrape. Nothing asynchronous runs any more, but libuv writes to the IPC channel at
 * once when nothing is queued before, so the message is in the channel when the process ends.
 */
export function sendFinalCollection(): void {
  if (collectFinal === undefined) return;
  try {
    reply({ cmd: FINAL, metrics: collectFinal() });
  } catch {
    // The primary keeps the series of the worker's last scrape.
  }
}
