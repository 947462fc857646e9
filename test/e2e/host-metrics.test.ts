/**
 * host-metrics, off by default as in auto-instrumentations-node: enabled, its host gauges reach
 * /metrics with the `service` label every series carries.
 */
import assert from 'node:assert/strict';
import { type AppProcess, startApp } from '../support/app';
import { samplesNamed } from '../support/prometheus-text';

describe('host-metrics', function () {
  this.timeout(30_000);
  let app: AppProcess | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  it('enabled: system CPU and memory series, each with service', async () => {
    app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http,host-metrics' },
    });
    const samples = await app.scrape();
    const cpu = samplesNamed(samples, 'system_cpu_time_total');
    assert.ok(cpu.length > 0, 'system_cpu_time_total');
    assert.ok(
      samples.some((s) => s.name.startsWith('system_memory_')),
      'system memory series',
    );
    for (const s of samples.filter((x) => x.name.startsWith('system_'))) {
      assert.equal(s.labels.service, 'fixture-service', s.name);
    }
    assert.deepEqual(app.warnings(), []);
  });

  it('off by default', async () => {
    app = await startApp({ fixture: 'plain-http-app.mjs' });
    const samples = await app.scrape();
    assert.deepEqual(
      samples.filter((s) => s.name.startsWith('system_')).map((s) => s.name),
      [],
    );
  });
});
