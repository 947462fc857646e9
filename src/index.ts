/** The public API of @datalab/otel. The zero-code path is `--import @datalab/otel/register`. */

export { currentTelemetry } from './bootstrap';
export type { Config } from './config';
export { DISTRO_NAME, DISTRO_VERSION } from './version';
