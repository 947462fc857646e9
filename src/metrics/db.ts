/**
 * Database metrics (SPEC §3): connections checked out of the application's pg pools, and the
 * latency of every PostgreSQL query and Redis command in one histogram family.
 */
import type { Attributes, Histogram, Meter } from '@opentelemetry/api';
import type { ClientRegistry, OperationRecorder } from '../db/clients';

/** OpenTelemetry's advice for database client durations, in seconds. */
export const DB_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

export function createDbMetrics(
  meter: Meter,
  service: string,
  registry: ClientRegistry,
): OperationRecorder {
  const serviceAttributes: Attributes = Object.freeze({ service });
  meter
    .createObservableGauge('database_connections_active', {
      description: 'PostgreSQL connections checked out of the application pg pools, all pools.',
    })
    .addCallback((result) => result.observe(registry.checkedOutConnections(), serviceAttributes));

  const histogram: Histogram = meter.createHistogram('db_client_operation_duration_seconds', {
    description: 'Duration of PostgreSQL queries and Redis commands, as the application sees them.',
    unit: 's',
    advice: { explicitBucketBoundaries: DB_BUCKETS },
  });
  // Attribute objects per (system, operation): both sets are small and closed.
  const attributes = new Map<string, Attributes>();
  return (system, operation, seconds) => {
    const key = `${system} ${operation}`;
    let attrs = attributes.get(key);
    if (attrs === undefined) {
      attrs = Object.freeze({ service, db_system: system, operation });
      attributes.set(key, attrs);
    }
    histogram.record(seconds, attrs);
  };
}
