/**
 * Logs as an operator reads them: createLogger() output field by field (JSON and pretty), log
 * export over OTLP, redaction, and the distro's own warnings in the same structured format.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { type AppProcess, startApp } from '../support/app';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function parsed(lines: readonly string[]): Record<string, unknown>[] {
  return lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

describe('logging', () => {
  let app: AppProcess | undefined;
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    receiver.clear();
  });

  it('createLogger() writes the contract fields, typed, and redacts secrets', async () => {
    const marker = `secret${randomBytes(6).toString('hex')}`;
    const bearer = `bearer${randomBytes(6).toString('hex')}`;
    app = await startApp({
      fixture: 'logger-app.mjs',
      env: { OTEL_SERVICE_NAME: 'logger-svc', MARKER: marker, DATALAB_ACCESS_LOG: 'true' },
    });
    const res = await fetch(app.url('/x?y=1'), { headers: { authorization: `Bearer ${bearer}` } });
    await res.text();
    const correlationId = res.headers.get('x-correlation-id');
    await new Promise((r) => setTimeout(r, 100));
    const records = parsed(app.stdout).filter((r) => r.message !== undefined);

    const boot = records.find((r) => r.message === 'started') as Record<string, unknown>;
    assert.equal(boot.level, 'info');
    assert.equal(boot.service, 'logger-svc');
    assert.equal(boot.phase, 'boot');
    assert.ok(!('trace_id' in boot) && !('correlation_id' in boot), 'no request, no ids');

    const line = records.find((r) => r.message === 'handling') as Record<string, unknown>;
    assert.deepEqual(Object.keys(line).slice(0, 9), [
      'level',
      'message',
      'service',
      'timestamp',
      'iso_timestamp',
      'trace_id',
      'span_id',
      'trace_flags',
      'correlation_id',
    ]);
    assert.equal(line.level, 'info');
    assert.equal(line.service, 'logger-svc');
    assert.equal(typeof line.timestamp, 'number');
    const ts = line.timestamp as number;
    assert.ok(Math.abs(ts - Date.now() / 1000) < 60, 'epoch seconds');
    assert.notEqual(Math.round(ts * 1000) % 1000, undefined);
    assert.match(line.iso_timestamp as string, ISO);
    assert.equal(new Date(line.iso_timestamp as string).getTime(), Math.round(ts * 1000));
    assert.match(line.trace_id as string, /^[0-9a-f]{32}$/);
    assert.match(line.span_id as string, /^[0-9a-f]{16}$/);
    assert.equal(line.trace_flags, '01');
    assert.equal(line.correlation_id, correlationId);
    assert.equal(line.correlation_id, line.trace_id, 'generated ID = trace ID');
    assert.equal(line.password, '[REDACTED]');
    assert.equal(line.authorization, '[REDACTED]');
    assert.deepEqual(line.nested, { apiToken: '[REDACTED]', keep: 'visible' });
    assert.equal(line.path, '/x?y=1');

    const multi = records.find((r) => r.level === 'warn') as Record<string, unknown>;
    assert.equal(multi.message, 'multi\nline\r\nmessage', 'kept, escaped inside one JSON line');
    const error = records.find((r) => r.level === 'error' && r.message === 'something failed');
    assert.match(String(error?.stack), /Error: something failed\n\s+at /);

    const access = records.find((r) => r.message === 'request completed') as Record<
      string,
      unknown
    >;
    assert.deepEqual(
      { ...access, timestamp: 0, iso_timestamp: '', duration: 0 },
      {
        level: 'info',
        message: 'request completed',
        service: 'logger-svc',
        timestamp: 0,
        iso_timestamp: '',
        trace_id: line.trace_id,
        correlation_id: correlationId,
        method: 'GET',
        endpoint: '/x',
        status: 200,
        duration: 0,
      },
    );
    assert.equal(typeof access.duration, 'number');

    // Every stdout line is one JSON object; no secret anywhere in what the process printed.
    for (const l of app.stdout) assert.doesNotThrow(() => JSON.parse(l), l);
    const all = [...app.stdout, ...app.stderr].join('\n');
    assert.ok(!all.includes(marker), 'logged secrets are redacted');
    assert.ok(!all.includes(bearer), 'the Authorization header is never logged');
  });

  it('redaction also holds for records exported over OTLP', async () => {
    const marker = `secret${randomBytes(6).toString('hex')}`;
    app = await startApp({
      fixture: 'logger-app.mjs',
      env: {
        MARKER: marker,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_LOGS_EXPORTER: 'otlp',
        OTEL_BLRP_SCHEDULE_DELAY: '100',
      },
    });
    await (await fetch(app.url('/'))).text();
    await receiver.waitFor(
      () => receiver.logs.some((l) => l.body === 'handling'),
      10_000,
      'the handling record',
    );
    const record = receiver.logs.find((l) => l.body === 'handling');
    assert.equal(record?.attributes.password, '[REDACTED]');
    for (const body of receiver.bodies) {
      assert.ok(!body.raw.toString('latin1').includes(marker), `marker in OTLP ${body.path}`);
    }
  });

  it('pretty format: one readable line per record, same ids, same redaction', async () => {
    const marker = `secret${randomBytes(6).toString('hex')}`;
    app = await startApp({
      fixture: 'logger-app.mjs',
      env: { OTEL_SERVICE_NAME: 'pretty-svc', MARKER: marker, DATALAB_LOG_FORMAT: 'pretty' },
    });
    const res = await fetch(app.url('/'));
    await res.text();
    const id = res.headers.get('x-correlation-id') as string;
    await new Promise((r) => setTimeout(r, 100));
    const handling = app.stdout.find((l) => l.includes(' handling '));
    assert.match(
      handling ?? '',
      new RegExp(
        `^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z INFO  \\[pretty-svc\\] handling  password=\\[REDACTED\\] .*trace=${id}  corr=${id}$`,
      ),
    );
    assert.ok(app.stdout.some((l) => l.includes('WARN  [pretty-svc] multi\\nline\\r\\nmessage')));
    assert.ok(!app.stdout.join('\n').includes(marker));
  });

  it('DATALAB_LOG_LEVEL=debug defaults to pretty, and filters below the level otherwise', async () => {
    app = await startApp({
      fixture: 'logger-app.mjs',
      env: { DATALAB_LOG_LEVEL: 'error', MARKER: 'm' },
    });
    await (await fetch(app.url('/'))).text();
    await new Promise((r) => setTimeout(r, 100));
    const records = parsed(app.stdout).filter((r) => r.message !== undefined);
    assert.deepEqual(
      records.map((r) => r.level),
      ['error'],
    );
    await app.stop();
    app = await startApp({
      fixture: 'logger-app.mjs',
      env: { DATALAB_LOG_LEVEL: 'debug', MARKER: 'm' },
    });
    assert.ok(app.stdout.some((l) => / INFO {2}\[fixture-service\] started/.test(l)));
  });

  it('OTEL_LOGS_EXPORTER=otlp exports every log line exactly once, with its trace context', async () => {
    app = await startApp({
      fixture: 'svc-b.cjs',
      preload: 'require',
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_LOGS_EXPORTER: 'otlp',
        OTEL_BLRP_SCHEDULE_DELAY: '100',
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    });
    for (let i = 0; i < 3; i++) await (await fetch(app.url('/work'))).text();
    await receiver.waitFor(() => receiver.logs.length >= 6, 10_000, 'six log records');
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(receiver.logs.length, 6, 'two loggers × three requests, no duplicates');
    const stdoutLines = parsed(app.stdout).filter((r) => r.message === 'B working');
    assert.equal(stdoutLines.length, 3);
    for (const line of stdoutLines) {
      const records = receiver.logs.filter((l) => l.traceId === line.trace_id);
      assert.equal(records.length, 2, 'the JSON and the printf logger, once each');
      for (const record of records) {
        assert.equal(record.spanId, line.span_id);
        assert.equal(record.body, 'B working');
        assert.equal(record.resource['service.name'], 'fixture-service');
      }
    }
  });

  it("the distro's own warnings use the structured format on stderr", async () => {
    app = await startApp({
      fixture: 'plain-http-app.mjs',
      env: { DATALAB_MAX_ENDPOINTS: 'lots', OTEL_SERVICE_NAME: 'warned' },
    });
    const warning = parsed(app.stderr).find((r) => r.logger === '@datalab/otel');
    assert.ok(warning, app.stderr.join('\n'));
    assert.equal(warning.level, 'warn');
    assert.equal(warning.code, 'DLOTEL_CONFIG_INVALID');
    assert.equal(warning.service, 'warned');
    assert.equal(typeof warning.timestamp, 'number');
    assert.match(warning.iso_timestamp as string, ISO);
    assert.match(warning.message as string, /^DATALAB_MAX_ENDPOINTS="lots" /);
    assert.ok(!app.stdout.some((l) => l.includes('DLOTEL_')), 'never on the app stdout');
  });
});
