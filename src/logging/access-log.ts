/**
 * DATALAB_ACCESS_LOG=true: one line per completed request, in the distro's record format, on
 * stdout. Written directly rather than through winston: it runs on the response's close, outside
 * the request's context, with every field already known.
 */
import type { Config } from '../config';
import { baseFields, renderJson, renderPretty } from './format';

export interface AccessRecord {
  readonly method: string;
  readonly endpoint: string;
  readonly status: string;
  readonly durationSeconds: number;
  readonly traceId?: string;
  readonly correlationId?: string;
}

export function createAccessLog(
  config: Config,
  write: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
): (r: AccessRecord) => void {
  const pretty = config.logging.format === 'pretty';
  return (r) => {
    const failed = r.status.charCodeAt(0) === 53; /* '5' */
    const record = {
      // The seed logs handler failures as "Request processing failed".
      ...baseFields(
        failed ? 'error' : 'info',
        failed ? 'Request processing failed' : 'request completed',
        config.serviceName,
        Date.now(),
      ),
      ...(r.traceId ? { trace_id: r.traceId } : {}),
      ...(r.correlationId ? { correlation_id: r.correlationId } : {}),
      method: r.method,
      endpoint: r.endpoint,
      status: Number(r.status),
      duration: r.durationSeconds,
    };
    try {
      write(pretty ? renderPretty(record) : renderJson(record));
    } catch {
      // stdout closed: the access log is not worth an exception in the app.
    }
  };
}
