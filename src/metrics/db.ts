/**
 * Database metrics (SPEC §3): connections in use in the application's pg and mysql2 pools (its
 * own or an ORM's), and the latency of every PostgreSQL and MySQL query and Redis command (ioredis,
 * node-redis 3 and 4) in one histogram family.
 */
import type { Attributes, Meter } from '@opentelemetry/api';
import type { ClientRegistry, OperationRecorder } from '../db/clients';
import { DistroHistogram, type HistogramSeries } from './instruments';

/** OpenTelemetry's advice for database client durations, in seconds. */
export const DB_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

/** `db_client_operation_duration_seconds`, exported through the readers' producers. */
export function createDbDurations(): DistroHistogram {
  return new DistroHistogram({
    name: 'db_client_operation_duration_seconds',
    description:
      'Duration of PostgreSQL and MySQL queries and Redis commands, as the application sees them.',
    unit: 's',
    boundaries: DB_BUCKETS,
  });
}

export function createDbMetrics(
  meter: Meter,
  service: string,
  registry: ClientRegistry,
  durations: DistroHistogram,
): OperationRecorder {
  const serviceAttributes: Attributes = Object.freeze({ service });
  meter
    .createObservableGauge('database_connections_active', {
      description:
        'Database connections in use: checked out of the application pg and mysql2 pools, or running a statement (or, for pg, in a transaction) on a connection an ORM pools itself.',
    })
    .addCallback((result) => result.observe(registry.checkedOutConnections(), serviceAttributes));

  // One series per (system, operation): both sets are small and closed.
  const series = new Map<string, HistogramSeries>();
  return (system, operation, seconds) => {
    const key = `${system} ${operation}`;
    let s = series.get(key);
    if (s === undefined) {
      s = durations.createSeries(Object.freeze({ service, db_system: system, operation }));
      series.set(key, s);
    }
    s.record(seconds);
  };
}
