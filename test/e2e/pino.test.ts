/**
 * The application's own pino loggers under the preload: Fastify 5's built-in logger writing
 * through a `pino/file` transport (a worker thread), a node:http app with pino to stdout and with
 * a custom transport module. Every line made while a request is handled must carry that request's
 * IDs, secret-named fields must be redacted on the line and in the OTLP copy, and with
 * OTEL_LOGS_EXPORTER=otlp every record must be exported exactly once.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type AppProcess, FIXTURES, freePort, type Preload, ROOT, startApp } from '../support/app';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';

type Line = Record<string, unknown>;

const REQUESTS = 24;
const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

function jsonLines(text: readonly string[]): Line[] {
  return text.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
}

function fileLines(path: string): Line[] {
  if (!existsSync(path)) return [];
  return jsonLines(readFileSync(path, 'utf8').split('\n'));
}

/** Polls until `read` gives at least `count` items (a transport writes from its worker). */
async function atLeast<T>(read: () => T[], count: number, what: string): Promise<T[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const items = read();
    if (items.length >= count) return items;
    if (Date.now() > deadline) throw new Error(`${what}: ${items.length} of ${count}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('pino loggers of the application', () => {
  let receiver: OtlpReceiver;
  let app: AppProcess | undefined;
  let dir: string;
  before(async () => {
    receiver = await startOtlpReceiver();
    dir = mkdtempSync(join(tmpdir(), 'datalab-otel-pino-'));
  });
  after(async () => {
    await receiver.close();
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    receiver.clear();
  });

  const fixtures: [string, Preload][] = [
    ['fastify-pino-app.cjs', 'require'],
    ['fastify-pino-app.mjs', 'import'],
  ];
  for (const [fixture, preload] of fixtures) {
    for (const traced of [true, false]) {
      const mode = traced ? 'traced' : 'metrics only';
      it(`Fastify 5 (${fixture}, ${mode}), pino/file transport: ${REQUESTS} concurrent requests, every line has its own IDs`, async () => {
        const logFile = join(dir, `${fixture}-${traced}.log`);
        app = await startApp({
          fixture,
          preload,
          env: {
            LOG_FILE: logFile,
            OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
            OTEL_BSP_SCHEDULE_DELAY: '100',
            ...(traced ? {} : { OTEL_TRACES_EXPORTER: 'none', DATALAB_TRACES_FILE: 'false' }),
          },
        });
        const tag = randomBytes(4).toString('hex');
        const idOf = (n: number) => `pino-${tag}-${n}`;
        // Request 0 continues a caller's trace: with no span sink, its lines carry that trace.
        const upstreamTrace = randomBytes(16).toString('hex');
        const upstreamSpan = randomBytes(8).toString('hex');
        await Promise.all(
          Array.from({ length: REQUESTS }, async (_, n) => {
            const res = await fetch(app?.url(`/work/${n}`) as string, {
              headers: {
                'x-correlation-id': idOf(n),
                ...(n === 0 ? { traceparent: `00-${upstreamTrace}-${upstreamSpan}-01` } : {}),
              },
            });
            assert.equal(res.status, 200);
            assert.equal(res.headers.get('x-correlation-id'), idOf(n));
            await res.arrayBuffer();
          }),
        );
        // Four lines per request: Fastify's two, the handler's two.
        const lines = await atLeast(
          () => fileLines(logFile).filter((l) => l.reqId !== undefined),
          REQUESTS * 4,
          'request lines in the transport file',
        );
        assert.equal(lines.length, REQUESTS * 4);

        const byRequest = new Map<string, Line[]>();
        for (const line of lines) {
          const group = byRequest.get(line.reqId as string) ?? [];
          group.push(line);
          byRequest.set(line.reqId as string, group);
        }
        assert.equal(byRequest.size, REQUESTS);

        const serverSpans = traced
          ? await (async () => {
              await receiver.waitFor(
                () => receiver.spans.filter((s) => s.kind === 2).length >= REQUESTS,
                10_000,
                'server spans',
              );
              return receiver.spans.filter((s) => s.kind === 2);
            })()
          : [];
        for (const group of byRequest.values()) {
          const incoming = group.find((l) => l.msg === 'incoming request') as Line;
          assert.ok(incoming, JSON.stringify(group));
          const n = Number((incoming.req as { url: string }).url.split('/')[2]);
          const id = idOf(n);
          assert.deepEqual(group.map((l) => l.msg).sort(), [
            'handled',
            'handling',
            'incoming request',
            'request completed',
          ]);
          const span = serverSpans.find((s) => s.attributes['correlation.id'] === id);
          if (traced) assert.ok(span, `the server span of ${id}`);
          for (const line of group) {
            assert.equal(line.correlation_id, id, JSON.stringify(line));
            assert.equal(line.service, 'fixture-service');
            if (traced) {
              assert.match(line.trace_id as string, HEX32);
              assert.equal(line.trace_id, span?.traceId, JSON.stringify(line));
              assert.equal(line.span_id, span?.spanId);
              assert.equal(line.trace_flags, '01');
              if (n === 0) assert.equal(line.trace_id, upstreamTrace, 'the caller trace continues');
            } else if (n === 0) {
              assert.equal(line.trace_id, upstreamTrace, JSON.stringify(line));
              assert.equal(line.span_id, upstreamSpan);
              assert.equal(line.trace_flags, '01');
            } else {
              assert.equal(line.trace_id, undefined, JSON.stringify(line));
              assert.equal(line.span_id, undefined);
            }
            if (line.n !== undefined) assert.equal(line.n, String(n));
          }
          const handling = group.find((l) => l.msg === 'handling') as Line;
          assert.equal(handling.password, '[REDACTED]');
        }
        // Outside a request: the service, no request IDs.
        const started = fileLines(logFile).find((l) => l.msg === 'started') as Line;
        assert.equal(started.service, 'fixture-service');
        assert.equal(started.correlation_id, undefined);
        assert.equal(started.trace_id, undefined);
        assert.deepEqual(app.warnings(), []);
      });
    }
  }

  it('the pino instrumentation is loaded when the application loads pino, not at start-up', async () => {
    const env: Record<string, string> = { PATH: process.env.PATH ?? '' };
    env.DATALAB_METRICS_PORT = String(await freePort());
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--require', '@datalab/otel/register', join(FIXTURES, 'pino-lazy.cjs')],
      { cwd: ROOT, env, timeout: 20_000 },
    );
    assert.deepEqual(JSON.parse(stdout.trim().split('\n').pop() as string), {
      before: false,
      after: true,
    });
  });

  for (const dest of ['stdout', 'custom'] as const) {
    it(`node:http + pino (${dest === 'stdout' ? 'stdout' : 'custom transport module'}): IDs, redaction on the line and over OTLP, each record exported once`, async () => {
      const logFile = join(dir, `http-${dest}.log`);
      app = await startApp({
        fixture: 'pino-http-app.mjs',
        env: {
          ...(dest === 'custom' ? { PINO_DEST: 'custom', LOG_FILE: logFile } : {}),
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_LOGS_EXPORTER: 'otlp',
          OTEL_BLRP_SCHEDULE_DELAY: '100',
          OTEL_BSP_SCHEDULE_DELAY: '100',
        },
      });
      const tag = randomBytes(4).toString('hex');
      const ids = Array.from({ length: 5 }, (_, n) => `http-${tag}-${n}`);
      await Promise.all(
        ids.map(async (id, n) => {
          const res = await fetch(app?.url(`/r/${n}`) as string, {
            headers: { 'x-correlation-id': id },
          });
          await res.text();
        }),
      );
      const read = () =>
        (dest === 'custom' ? fileLines(logFile) : jsonLines(app?.stdout ?? [])).filter(
          (l) => l.msg !== undefined,
        );
      // "started", "bound" and two per request.
      const lines = await atLeast(read, 2 + ids.length * 2, 'pino lines');
      assert.equal(lines.length, 2 + ids.length * 2);
      assert.equal(lines.find((l) => l.msg === 'started')?.service, 'fixture-service');
      assert.equal(lines.find((l) => l.msg === 'bound')?.service, 'billing');
      if (dest === 'stdout') {
        const bound = app.stdout.find((l) => l.includes('"msg":"bound"')) as string;
        assert.equal(bound.split('"service":').length, 2, `one service field: ${bound}`);
      }
      for (const [n, id] of ids.entries()) {
        const mine = lines.filter((l) => l.path === `/r/${n}`);
        assert.equal(mine.length, 2);
        for (const line of mine) {
          assert.equal(line.correlation_id, id, JSON.stringify(line));
          assert.match(line.trace_id as string, HEX32);
          assert.match(line.span_id as string, HEX16);
          if (dest === 'custom') assert.equal(line.via, 'custom', 'written by the custom module');
        }
        const handling = mine.find((l) => l.msg === 'handling') as Line;
        assert.equal(handling.password, '[REDACTED]');
        assert.deepEqual(handling.nested, { apiToken: '[REDACTED]', keep: 'visible' });
      }

      await receiver.waitFor(
        () => receiver.logs.length >= lines.length,
        10_000,
        'one OTLP record per line',
      );
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(receiver.logs.length, lines.length, 'each record exactly once');
      for (const line of lines) {
        const records = receiver.logs.filter(
          (r) =>
            r.body === line.msg &&
            (line.path === undefined
              ? r.attributes.path === undefined
              : r.attributes.path === line.path),
        );
        assert.equal(records.length, 1, JSON.stringify(line));
        const record = records[0];
        assert.equal(record?.traceId ?? '', (line.trace_id as string | undefined) ?? '');
        assert.equal(record?.spanId ?? '', (line.span_id as string | undefined) ?? '');
        assert.equal(record?.attributes.correlation_id, line.correlation_id);
        assert.equal(record?.severityText, line.level === 40 ? 'warn' : 'info');
        assert.equal(record?.resource['service.name'], 'fixture-service');
        if (line.msg === 'done') {
          assert.equal(record?.attributes['exception.type'], 'Error');
          assert.equal(record?.attributes['exception.message'], 'slow backend');
          assert.match(record?.attributes['exception.stacktrace'] as string, /pino-http-app\.mjs/);
        }
        if (line.msg === 'handling') {
          assert.equal(record?.attributes.password, '[REDACTED]');
          assert.deepEqual(record?.attributes.nested, { apiToken: '[REDACTED]', keep: 'visible' });
        }
      }
      assert.ok(
        !JSON.stringify(receiver.logs, (_k, v) => (typeof v === 'bigint' ? String(v) : v)).match(
          /hunter2|tok-123/,
        ),
        'no secret value reaches the collector',
      );
    });
  }
});
