/**
 * The programmatic health API (exported from `@datalab/otel`): add checks, run them, and serve
 * the probes on the application's own server. Under the preload these act on the checker the
 * management server serves; without it (the package imported but not preloaded) on a checker of
 * their own with the built-in checks configured from the environment.
 */
import { currentTelemetry } from '../bootstrap';
import { loadConfig } from '../config';
import { ClientRegistry } from '../db/clients';
import { createHealthHandler, type HealthHandlerOptions, type HealthRequestHandler } from './http';
import type { HealthChecker } from './runner';
import { createHealthChecker } from './setup';
import type { HealthCheckDefinition, HealthReport } from './types';

let standalone: HealthChecker | undefined;

function checker(): HealthChecker {
  const telemetry = currentTelemetry();
  if (telemetry) return telemetry.health;
  // No preload: no hooks found the application's clients, so database and redis fall back to
  // the environment's settings.
  standalone ??= createHealthChecker(loadConfig(), new ClientRegistry());
  return standalone;
}

/**
 * Adds a check to every report (and to readiness when critical, the default). A check with the
 * same name, built-in ones included, is replaced. Throws a TypeError on a malformed definition.
 */
export function addHealthCheck(definition: HealthCheckDefinition): void {
  checker().add({
    name: definition?.name,
    check: definition?.check,
    timeoutMs: definition?.timeoutMs,
    critical: definition?.critical,
  });
}

/** Removes a check (custom or built-in) by name; false when there was none. */
export function removeHealthCheck(name: string): boolean {
  return checker().remove(name);
}

/**
 * Runs the checks (or returns the report cached within DATALAB_HEALTH_CACHE_MS; `fresh: true`
 * skips the cache). Never rejects because of a check: failures are in the report.
 */
export function runHealthChecks(options: { fresh?: boolean } = {}): Promise<HealthReport> {
  return checker().report(options);
}

/**
 * A request handler serving `/health`, `/health/live` and `/health/ready` (or under
 * `options.path`) on the application's own server: `app.use(healthHandler())` in Express, or
 * `if (health(req, res)) return;` at the top of a node:http request listener.
 */
export function healthHandler(options?: HealthHandlerOptions): HealthRequestHandler {
  return createHealthHandler(checker, options);
}
