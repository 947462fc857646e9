/**
 * `health_check_status{service,check,critical}`: 1 healthy, 0.5 degraded, 0 unhealthy, from the latest
 * run. A scrape never waits for the checks (a hung database must not slow /metrics); it starts
 * a run in the background when the cached one is stale, so the series stay current even when
 * nothing probes /health.
 */
import type { Attributes, Meter } from '@opentelemetry/api';
import type { HealthChecker } from './runner';
import { STATUS_VALUE } from './types';

export function createHealthMetric(meter: Meter, service: string, checker: HealthChecker): void {
  const attributes = new Map<string, Attributes>();
  meter
    .createObservableGauge('health_check_status', {
      description: 'Health check status: 1 healthy, 0.5 degraded, 0 unhealthy.',
    })
    .addCallback((result) => {
      checker.refreshIfStale();
      const report = checker.latest();
      if (!report) return;
      for (const [check, { status, critical }] of Object.entries(report.checks)) {
        const key = `${check}\u0000${critical}`;
        let attrs = attributes.get(key);
        if (attrs === undefined) {
          // `critical` lets alerts page only for checks that make the service unhealthy.
          attrs = Object.freeze({ service, check, critical: String(critical) });
          attributes.set(key, attrs);
        }
        result.observe(STATUS_VALUE[status], attrs);
      }
    });
}
