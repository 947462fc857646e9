/**
 * The seed's HealthChecker: checks run concurrently, each bounded by its own timeout, results
 * aggregated into healthy / degraded / unhealthy. Added here: one run shared by every concurrent
 * caller and cached for a short time (a probe storm must not become a query storm), at most one
 * outstanding call per check (a hung check is joined, never piled up), and the shutdown flag
 * that turns readiness off.
 */
import { performance } from 'node:perf_hooks';
import { context } from '@opentelemetry/api';
import { suppressTracing } from '@opentelemetry/core';
import { warnOnce } from '../warnings';
import {
  type CheckFunction,
  type CheckResult,
  HEALTH_DEFAULTS,
  HEALTH_STATUSES,
  type HealthCheckDefinition,
  type HealthReport,
  type HealthStatus,
  type LivenessReport,
  type ReadinessReport,
} from './types';

/** A check as the runner holds it; `applies` lets a built-in check be absent from a run. */
export interface RegisteredCheck {
  readonly name: string;
  readonly check: CheckFunction;
  readonly timeoutMs: number;
  readonly critical: boolean;
  readonly applies?: () => boolean;
}

export interface InternalCheckDefinition extends HealthCheckDefinition {
  /** Evaluated at the start of every run: false leaves the check out of that run's report. */
  applies?: () => boolean;
}

export interface HealthCheckerOptions {
  readonly service: string;
  readonly timeoutMs?: number;
  readonly cacheMs?: number;
  /** Milliseconds clock for the cache (tests inject one). */
  readonly now?: () => number;
}

interface CheckState {
  readonly definition: RegisteredCheck;
  /** The call still running from an earlier run that timed out: joined, not repeated. */
  pending?: Promise<unknown>;
}

const NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAX_MESSAGE = 500;

/** Any critical check not healthy → unhealthy; else any check not healthy → degraded. */
export function aggregateStatus(
  results: Iterable<{ readonly status: HealthStatus; readonly critical: boolean }>,
): HealthStatus {
  let degraded = false;
  for (const { status, critical } of results) {
    if (status === 'healthy') continue;
    if (critical) return 'unhealthy';
    degraded = true;
  }
  return degraded ? 'degraded' : 'healthy';
}

/** SPEC §7: 200 for healthy and degraded, 503 for unhealthy. */
export function httpStatusFor(status: HealthStatus): 200 | 503 {
  return status === 'unhealthy' ? 503 : 200;
}

/** Credentials in URLs (`postgres://user:secret@host`) never reach a report. */
export function redactCredentials(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)([^/@\s:]*):[^/@\s]*@/gi, '$1$2:***@');
}

export function describeError(err: unknown): string {
  let text: string;
  if (err instanceof Error) text = err.message || err.name;
  else if (typeof err === 'string') text = err;
  else {
    try {
      text = JSON.stringify(err) ?? String(err);
    } catch {
      text = String(err);
    }
  }
  const clean = redactCredentials(text).replace(/[\r\n]+/g, ' ');
  return clean.length > MAX_MESSAGE ? `${clean.slice(0, MAX_MESSAGE)}…` : clean;
}

function jsonSafe(value: unknown): unknown {
  try {
    const text = JSON.stringify(value);
    return text === undefined ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

const RESERVED = new Set(['status', 'message', 'duration', 'critical']);

/** A check function's return value → status, message and the extra fields it reported. */
export function normalizeOutcome(value: unknown): {
  status: HealthStatus;
  message: string;
  fields: Record<string, unknown>;
} {
  if (value === undefined || value === null || value === true) {
    return { status: 'healthy', message: 'Check passed', fields: {} };
  }
  if (value === false) return { status: 'unhealthy', message: 'Check returned false', fields: {} };
  if (typeof value !== 'object' || Array.isArray(value)) {
    // The seed: a non-dict result is healthy when truthy.
    return value
      ? { status: 'healthy', message: 'Check passed', fields: {} }
      : { status: 'unhealthy', message: 'Check returned a falsy value', fields: {} };
  }
  const record = value as Record<string, unknown>;
  const fields: Record<string, unknown> = {};
  for (const key of Object.keys(record)) {
    if (RESERVED.has(key)) continue;
    const safe = jsonSafe(record[key]);
    if (safe !== undefined) fields[key] = safe;
  }
  const rawStatus = record.status;
  let status: HealthStatus = 'healthy';
  let message: string | undefined =
    typeof record.message === 'string' ? describeError(record.message) : undefined;
  if (rawStatus !== undefined) {
    if (HEALTH_STATUSES.includes(rawStatus as HealthStatus)) status = rawStatus as HealthStatus;
    else {
      status = 'unhealthy';
      message = `Check returned an invalid status: ${describeError(String(rawStatus))}`;
    }
  }
  message ??= status === 'healthy' ? 'Check passed' : `Check reported ${status}`;
  return { status, message, fields };
}

function seconds(ms: number): number {
  return Math.round(ms * 1000) / 1e6;
}

function formatTimeout(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))}s`;
}

type Settled =
  | { kind: 'value'; value: unknown }
  | { kind: 'error'; error: unknown }
  | { kind: 'timeout' };

export class HealthChecker {
  readonly service: string;
  readonly defaultTimeoutMs: number;
  readonly cacheMs: number;
  private readonly now: () => number;
  private readonly checks = new Map<string, CheckState>();
  private cached: { report: HealthReport; at: number } | undefined;
  private running: Promise<HealthReport> | undefined;
  private shuttingDown = false;
  /** Check runs started, per check name (tests and the docs' "one run per cache period"). */
  private readonly runCounts = new Map<string, number>();

  constructor(options: HealthCheckerOptions) {
    this.service = options.service;
    this.defaultTimeoutMs = positive(options.timeoutMs) ?? HEALTH_DEFAULTS.timeoutMs;
    this.cacheMs = options.cacheMs !== undefined && options.cacheMs >= 0 ? options.cacheMs : 0;
    this.now = options.now ?? Date.now;
  }

  /** Adds a check, replacing any check of the same name (built-in ones included). */
  add(definition: InternalCheckDefinition): void {
    if (definition === null || typeof definition !== 'object') {
      throw new TypeError('a health check is an object { name, check, timeoutMs?, critical? }');
    }
    const { name, check, timeoutMs, critical, applies } = definition;
    if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
      throw new TypeError(
        `health check name ${JSON.stringify(name)} must be 1-64 characters from [A-Za-z0-9_.:-]`,
      );
    }
    if (typeof check !== 'function') {
      throw new TypeError(`health check ${name}: check must be a function`);
    }
    if (timeoutMs !== undefined && positive(timeoutMs) === undefined) {
      throw new TypeError(`health check ${name}: timeoutMs must be a positive number`);
    }
    this.checks.delete(name);
    this.checks.set(name, {
      definition: {
        name,
        check,
        timeoutMs: positive(timeoutMs) ?? this.defaultTimeoutMs,
        critical: critical ?? true,
        applies,
      },
    });
    this.cached = undefined;
  }

  remove(name: string): boolean {
    const removed = this.checks.delete(name);
    if (removed) this.cached = undefined;
    return removed;
  }

  names(): string[] {
    return [...this.checks.keys()];
  }

  /** How many times each check has been started since the process began. */
  runs(): Record<string, number> {
    return Object.fromEntries(this.runCounts);
  }

  /**
   * The report: cached if younger than the cache period, else the run in progress, else a new
   * run. `fresh` skips the cache (but still joins a run in progress).
   */
  report(options: { fresh?: boolean } = {}): Promise<HealthReport> {
    if (!options.fresh && this.cached && this.now() - this.cached.at < this.cacheMs) {
      return Promise.resolve(this.cached.report);
    }
    if (this.running) return this.running;
    const run = this.runAll().finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }

  /** The last completed report, whatever its age. */
  latest(): HealthReport | undefined {
    return this.cached?.report;
  }

  /** Starts a run in the background when the cached one is stale (the metric's scrape). */
  refreshIfStale(): void {
    if (this.running) return;
    if (this.cached && this.now() - this.cached.at < this.cacheMs) return;
    this.report().catch((err: unknown) => {
      warnOnce('DLOTEL_INTERNAL_ERROR', 'health-refresh', `health check run failed: ${err}`);
    });
  }

  liveness(): LivenessReport {
    return { service: this.service, status: 'healthy', ...clock() };
  }

  async readiness(): Promise<ReadinessReport> {
    if (this.shuttingDown) return this.notReadyShuttingDown();
    const report = await this.report();
    // Shutdown may have begun while the checks ran.
    if (this.shuttingDown) return this.notReadyShuttingDown();
    const ready = report.status !== 'unhealthy';
    const out: ReadinessReport = {
      service: this.service,
      ready,
      status: report.status,
      timestamp: report.timestamp,
      uptime: report.uptime,
      checks: report.checks,
    };
    if (!ready) {
      const failing = Object.entries(report.checks)
        .filter(([, r]) => r.critical && r.status !== 'healthy')
        .map(([name]) => name);
      out.reason = `critical checks not healthy: ${failing.join(', ')}`;
    }
    return out;
  }

  /** SIGTERM/SIGINT: readiness answers 503 from now on; liveness and /health are unchanged. */
  beginShutdown(): void {
    this.shuttingDown = true;
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  private notReadyShuttingDown(): ReadinessReport {
    return { service: this.service, ready: false, reason: 'shutting down', ...clock() };
  }

  private async runAll(): Promise<HealthReport> {
    const states = [...this.checks.values()].filter((state) => this.applies(state.definition));
    const started = clock();
    const results = await Promise.all(states.map((state) => this.runOne(state)));
    const checks: Record<string, CheckResult> = {};
    states.forEach((state, i) => {
      checks[state.definition.name] = results[i] as CheckResult;
    });
    const report: HealthReport = {
      service: this.service,
      status: aggregateStatus(results),
      ...started,
      checks,
    };
    this.cached = { report, at: this.now() };
    return report;
  }

  private applies(check: RegisteredCheck): boolean {
    if (!check.applies) return true;
    try {
      return check.applies();
    } catch (err) {
      warnOnce(
        'DLOTEL_INTERNAL_ERROR',
        `health-applies-${check.name}`,
        `health check ${check.name} could not decide whether it applies: ${describeError(err)}`,
      );
      return false;
    }
  }

  private async runOne(state: CheckState): Promise<CheckResult> {
    const { timeoutMs, critical } = state.definition;
    const start = performance.now();
    const attempt = state.pending ?? this.invoke(state);
    const settled = await new Promise<Settled>((resolve) => {
      const timer = setTimeout(() => resolve({ kind: 'timeout' }), timeoutMs);
      // A hung check must not hold the process open either.
      timer.unref();
      attempt.then(
        (value) => {
          clearTimeout(timer);
          resolve({ kind: 'value', value });
        },
        (error: unknown) => {
          clearTimeout(timer);
          resolve({ kind: 'error', error });
        },
      );
    });
    const duration = seconds(performance.now() - start);
    if (settled.kind === 'timeout') {
      return {
        status: 'unhealthy',
        message: `Check timed out after ${formatTimeout(timeoutMs)}`,
        duration: seconds(timeoutMs),
        critical,
      };
    }
    if (settled.kind === 'error') {
      return {
        status: 'unhealthy',
        message: `Check failed: ${describeError(settled.error)}`,
        duration,
        critical,
      };
    }
    const { status, message, fields } = normalizeOutcome(settled.value);
    return { status, message, ...fields, duration, critical };
  }

  /** Calls the check function inside a guard: a synchronous throw becomes a rejection. */
  private invoke(state: CheckState): Promise<unknown> {
    const { name, check } = state.definition;
    this.runCounts.set(name, (this.runCounts.get(name) ?? 0) + 1);
    let attempt: Promise<unknown>;
    try {
      // The checks' own queries and pings are not the application's work: never traced.
      attempt = Promise.resolve(context.with(suppressTracing(context.active()), check));
    } catch (err) {
      attempt = Promise.reject(err);
    }
    state.pending = attempt;
    const clear = () => {
      if (state.pending === attempt) state.pending = undefined;
    };
    attempt.then(clear, clear);
    return attempt;
  }
}

function positive(value: number | undefined): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined;
}

function clock(): { timestamp: number; uptime: number } {
  return { timestamp: Date.now() / 1000, uptime: process.uptime() };
}
