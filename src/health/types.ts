/**
 * The health report's vocabulary (SPEC §7, the seed's HealthChecker): statuses, check
 * definitions, per-check results and the report served on `/health`.
 */

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy';

export const HEALTH_STATUSES: readonly HealthStatus[] = ['healthy', 'degraded', 'unhealthy'];

/** `health_check_status` values. */
export const STATUS_VALUE: Readonly<Record<HealthStatus, number>> = Object.freeze({
  healthy: 1,
  degraded: 0.5,
  unhealthy: 0,
});

/** Built-in checks, in report order; DATALAB_HEALTH_CHECKS selects among them. */
export const BUILTIN_HEALTH_CHECKS = ['database', 'redis', 'disk_space', 'memory'] as const;
export type BuiltinHealthCheck = (typeof BUILTIN_HEALTH_CHECKS)[number];

export const HEALTH_DEFAULTS = Object.freeze({
  timeoutMs: 5_000,
  // Long enough that a probe storm (several probes, several replicas of Prometheus, a curl loop)
  // costs one round of checks, short enough that a probe never reads a stale answer for long.
  cacheMs: 1_000,
  diskPath: '/',
  shutdownDelayMs: 0,
});

/**
 * What a check function may return. An object is the seed's dict: `status` (default healthy),
 * `message`, and any other JSON fields, which are copied into the report. `true` or nothing
 * means healthy, `false` unhealthy; throwing (or rejecting) means unhealthy with the error's
 * message.
 */
export interface CheckOutcome {
  status?: HealthStatus;
  message?: string;
  [field: string]: unknown;
}

// biome-ignore lint/suspicious/noConfusingVoidType: `async () => { await db.ping(); }` is a check.
export type CheckReturn = CheckOutcome | boolean | undefined | void;
export type CheckFunction = () => CheckReturn | Promise<CheckReturn>;

export interface HealthCheckDefinition {
  /** Key in the report's `checks` and the `check` label of health_check_status. */
  name: string;
  check: CheckFunction;
  /** Milliseconds before the check counts as unhealthy (default DATALAB_HEALTH_TIMEOUT_MS). */
  timeoutMs?: number;
  /** A failing critical check makes the service unhealthy, another one degraded (default true). */
  critical?: boolean;
}

/** One entry of the report's `checks`. */
export interface CheckResult {
  status: HealthStatus;
  message: string;
  /** Seconds the check took (the seed's unit). */
  duration: number;
  critical: boolean;
  [field: string]: unknown;
}

export interface HealthReport {
  service: string;
  status: HealthStatus;
  /** Epoch seconds when the checks ran (the seed's `time.time()`). */
  timestamp: number;
  /** Seconds since the process started. */
  uptime: number;
  checks: Record<string, CheckResult>;
}

export interface ReadinessReport {
  service: string;
  ready: boolean;
  /** Why the service is not ready: shutting down, or the failing critical checks. */
  reason?: string;
  /** Absent while shutting down: the checks are not run then. */
  status?: HealthStatus;
  timestamp: number;
  uptime: number;
  checks?: Record<string, CheckResult>;
}

export interface LivenessReport {
  service: string;
  status: 'healthy';
  timestamp: number;
  uptime: number;
}
