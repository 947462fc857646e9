/**
 * The SDK 3 trace SDK reads no environment variables: the distro reads OTEL_BSP_* and the span
 * limits itself and builds the processors and the tracer provider with them. Checked here in a
 * real service under the preload, exporting to the in-process OTLP receiver.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { type AppProcess, ROOT, request, startApp } from '../support/app';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';

/** Spans per trace export request (OTLP/JSON bodies). */
function batchSizes(receiver: OtlpReceiver): number[] {
  return receiver.bodies
    .filter((b) => b.path === '/v1/traces')
    .map((b) => {
      const body = JSON.parse(b.raw.toString('utf8')) as {
        resourceSpans?: { scopeSpans?: { spans?: unknown[] }[] }[];
      };
      let n = 0;
      for (const rs of body.resourceSpans ?? [])
        for (const ss of rs.scopeSpans ?? []) n += ss.spans?.length ?? 0;
      return n;
    });
}

/** Log records per logs export request (OTLP/JSON bodies). */
function logBatchSizes(receiver: OtlpReceiver): number[] {
  return receiver.bodies
    .filter((b) => b.path === '/v1/logs')
    .map((b) => {
      const body = JSON.parse(b.raw.toString('utf8')) as {
        resourceLogs?: { scopeLogs?: { logRecords?: unknown[] }[] }[];
      };
      let n = 0;
      for (const rl of body.resourceLogs ?? [])
        for (const sl of rl.scopeLogs ?? []) n += sl.logRecords?.length ?? 0;
      return n;
    });
}

describe('OTEL_BSP_* and span limits under SDK 3', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver;
  let app: AppProcess | undefined;

  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });
  beforeEach(() => receiver.clear());
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  it('OTEL_BSP_MAX_EXPORT_BATCH_SIZE=7: batches of at most 7 spans; the span limit cuts values', async () => {
    const REQUESTS = 30;
    app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        // JSON bodies, so that the spans of each export request can be counted.
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '7',
        // Only full batches leave before shutdown: the SDK's 512 would export nothing here.
        OTEL_BSP_SCHEDULE_DELAY: '60000',
        OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: '12',
      },
    });
    for (let i = 0; i < REQUESTS; i++) {
      assert.equal(await request(app.url(`/users/abcdefghijklmnop${i}`)), 200);
    }
    const full = Math.floor(REQUESTS / 7) * 7;
    await receiver.waitFor(() => receiver.spans.length >= full, 10_000, `${full} spans`);
    const beforeShutdown = batchSizes(receiver);
    assert.deepEqual(beforeShutdown, Array(full / 7).fill(7), 'full batches leave at once');

    // The rest leaves with the shutdown flush.
    await app.stop();
    app = undefined;
    await receiver.waitFor(() => receiver.spans.length >= REQUESTS, 10_000, 'every span');
    const sizes = batchSizes(receiver);
    assert.ok(sizes.length > 1, `more than one batch: ${sizes}`);
    assert.ok(
      sizes.every((n) => n >= 1 && n <= 7),
      `every batch holds 1-7 spans: ${sizes}`,
    );
    assert.equal(
      sizes.reduce((a, b) => a + b, 0),
      receiver.spans.length,
    );

    // OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT=12: the long path is cut, short values are kept.
    const values = receiver.spans.flatMap((s) =>
      Object.values(s.attributes).filter((v): v is string => typeof v === 'string'),
    );
    assert.ok(
      values.every((v) => v.length <= 12),
      values.filter((v) => v.length > 12).join(', '),
    );
    assert.ok(values.includes('/users/abcde'), 'the path, cut to 12 characters');
    assert.ok(values.includes('GET'));
  });

  it('OTEL_BLRP_MAX_EXPORT_BATCH_SIZE=4: log batches of at most 4 records; the log record limit cuts values', async () => {
    const REQUESTS = 5; // 3 records each, 1 at start-up
    app = await startApp({
      fixture: 'logger-app.mjs',
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_TRACES_EXPORTER: 'none',
        OTEL_METRICS_EXPORTER: 'prometheus',
        OTEL_LOGS_EXPORTER: 'otlp',
        OTEL_BLRP_MAX_EXPORT_BATCH_SIZE: '4',
        // Only full batches leave before shutdown: the SDK's 512 would export nothing here.
        OTEL_BLRP_SCHEDULE_DELAY: '60000',
        OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT: '9',
      },
    });
    for (let i = 0; i < REQUESTS; i++) {
      assert.equal(await request(app.url(`/orders/abcdefghijklmnop${i}`)), 200);
    }
    const total = 1 + 3 * REQUESTS;
    const full = Math.floor(total / 4) * 4;
    await receiver.waitFor(() => receiver.logs.length >= full, 10_000, `${full} log records`);
    assert.deepEqual(
      logBatchSizes(receiver),
      Array(full / 4).fill(4),
      'full batches leave at once',
    );
    await app.stop();
    app = undefined;
    await receiver.waitFor(() => receiver.logs.length >= total, 10_000, 'every log record');
    const sizes = logBatchSizes(receiver);
    assert.ok(
      sizes.every((n) => n >= 1 && n <= 4),
      `every batch holds 1-4 records: ${sizes}`,
    );
    const paths = receiver.logs
      .map((l) => l.attributes.path)
      .filter((v): v is string => typeof v === 'string');
    assert.ok(paths.length >= REQUESTS, `the path attribute is exported: ${paths}`);
    assert.ok(
      paths.every((p) => p === '/orders/a'),
      `the path, cut to 9 characters: ${paths}`,
    );
  });

  it('a bad OTEL_BSP_* value: one warning naming variable, value and default; spans still flow', async () => {
    app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 'lots',
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    });
    assert.equal(await request(app.url('/users/1')), 200);
    await receiver.waitFor(() => receiver.spans.length >= 1, 10_000, 'a span');
    const warnings = app.warnings();
    assert.deepEqual(warnings, [
      'DLOTEL_CONFIG_INVALID: OTEL_BSP_MAX_EXPORT_BATCH_SIZE="lots" is not a whole number from 1 to 1000000; using the default 512',
    ]);
  });
});

describe('loading the configuration', () => {
  it('prints nothing and writes no variable: parsing returns the warnings', () => {
    const script = `
      const before = JSON.stringify(process.env);
      const { parseConfig } = require(${JSON.stringify(join(ROOT, 'dist', 'src', 'config.js'))});
      const { warnings } = parseConfig(process.env);
      if (JSON.stringify(process.env) !== before) throw new Error('the environment changed');
      process.stdout.write(String(warnings.length));
    `;
    const child = spawnSync(process.execPath, ['-e', script], {
      env: { PATH: process.env.PATH ?? '', OTEL_BSP_MAX_QUEUE_SIZE: 'many', OTEL_LOG_LEVEL: 'x' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stderr, '');
    assert.equal(child.stdout, '2', 'two warnings returned, none printed');
  });
});
