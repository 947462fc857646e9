/** The public API of @datalab/otel. The zero-code path is `--import @datalab/otel/register`. */

export { currentTelemetry } from './bootstrap';
export type { Config } from './config';
export { CORRELATION_ATTRIBUTE, isValidCorrelationId } from './correlation/id';
export { createLogger, type LoggerOptions } from './logging/logger';
export { DISTRO_NAME, DISTRO_VERSION } from './version';
