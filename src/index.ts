/** The public API of @datalab/otel. The zero-code path is `--import @datalab/otel/register`. */

export { currentTelemetry } from './bootstrap';
export type { Config } from './config';
export { CORRELATION_ATTRIBUTE, isValidCorrelationId } from './correlation/id';
export {
  addHealthCheck,
  healthHandler,
  removeHealthCheck,
  runHealthChecks,
} from './health/api';
export type { HealthHandlerOptions, HealthRequestHandler } from './health/http';
export type {
  CheckFunction,
  CheckOutcome,
  CheckResult,
  HealthCheckDefinition,
  HealthReport,
  HealthStatus,
} from './health/types';
export { createLogger, type LoggerOptions } from './logging/logger';
export { DISTRO_NAME, DISTRO_VERSION } from './version';
