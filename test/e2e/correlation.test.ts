/**
 * The on-call path end to end: two real services under the preload (A calls B with fetch and with
 * node:http), their own winston loggers, an OTLP receiver. A correlation ID from a response
 * header must lead to every log line and every span of that request in both services.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { type AppProcess, startApp } from '../support/app';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';

const HEX32 = /^[0-9a-f]{32}$/;

interface LogLine {
  message?: string;
  level?: string;
  trace_id?: string;
  span_id?: string;
  trace_flags?: string;
  correlation_id?: string;
  [key: string]: unknown;
}

function jsonLines(app: AppProcess): LogLine[] {
  return app.stdout
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine)
    .filter((l) => l.message !== undefined);
}

/** A raw HTTP/1.1 exchange, for header values no well-behaved client would send. */
function rawGet(port: number, path: string, headerLines: string[]): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(
        Buffer.from(
          `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headerLines.join('\r\n')}\r\n\r\n`,
          'latin1',
        ),
      );
    });
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => {
      answer += c;
    });
    socket.on('error', () => resolve(answer));
    socket.on('close', () => resolve(answer));
  });
}

function headerOf(raw: string, name: string): string[] {
  const head = raw.split('\r\n\r\n')[0] ?? '';
  return head
    .split('\r\n')
    .slice(1)
    .filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    .map((l) => l.slice(name.length + 1).trim());
}

/** Service B (CommonJS, --require), then service A (ESM, --import, access log on) calling it. */
async function startServices(
  env: Record<string, string>,
): Promise<{ a: AppProcess; b: AppProcess }> {
  const b = await startApp({
    fixture: 'svc-b.cjs',
    preload: 'require',
    env: { ...env, OTEL_SERVICE_NAME: 'svc-b' },
  });
  const a = await startApp({
    fixture: 'svc-a.mjs',
    env: {
      ...env,
      OTEL_SERVICE_NAME: 'svc-a',
      SERVICE_B_URL: b.url('/'),
      DATALAB_ACCESS_LOG: 'true',
    },
  });
  return { a, b };
}

/** 200 overlapping requests to service A's /echo, each with its own ID: each answer and log line keeps it. */
async function checkConcurrentIds(a: AppProcess): Promise<void> {
  const ids = Array.from({ length: 200 }, (_, i) => `req-${i}-${randomBytes(3).toString('hex')}`);
  const answers = await Promise.all(
    ids.map(async (id, n) => {
      const res = await fetch(a.url(`/echo?n=${n}`), { headers: { 'x-correlation-id': id } });
      await res.arrayBuffer();
      return res.headers.get('x-correlation-id');
    }),
  );
  assert.deepEqual(answers, ids);
  await new Promise((r) => setTimeout(r, 100));
  const echoes = jsonLines(a).filter((l) => l.message === 'echo');
  const byN = new Map(echoes.map((l) => [Number(l.n), l.correlation_id]));
  for (let n = 0; n < ids.length; n++) assert.equal(byN.get(n), ids[n], `line of request ${n}`);
}

/** Every span exported, and none (no span sink): the correlation IDs must not differ. */
const BOTH_MODES: [string, Record<string, string>][] = [
  ['traced', {}],
  ['metrics only', { OTEL_TRACES_EXPORTER: 'none', DATALAB_TRACES_FILE: 'false' }],
];

describe('correlation IDs across services, in spans and logs', () => {
  let receiver: OtlpReceiver;
  let a: AppProcess;
  let b: AppProcess;

  before(async () => {
    receiver = await startOtlpReceiver();
    const otlp = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' };
    ({ a, b } = await startServices(otlp));
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await receiver.close();
  });

  async function checkRequest(path: string, inbound?: string): Promise<string> {
    const res = await fetch(a.url(path), {
      headers: inbound === undefined ? {} : { 'x-correlation-id': inbound },
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const id = res.headers.get('x-correlation-id') as string;
    const traceresponse = res.headers.get('traceresponse') ?? '';
    const traceId = traceresponse.split('-')[1] as string;
    assert.match(traceresponse, /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    if (inbound === undefined) {
      assert.match(id, HEX32);
      assert.equal(id, traceId, 'a generated ID is the trace ID');
    } else {
      assert.equal(id, inbound, 'a valid inbound ID is echoed');
    }

    // Spans of both services for this trace, every one carrying the ID.
    await receiver.waitFor(
      () =>
        new Set(
          receiver.spans
            .filter((s) => s.traceId === traceId)
            .map((s) => s.resource['service.name']),
        ).size === 2 &&
        receiver.spans.some(
          (s) => s.traceId === traceId && s.kind === 2 && s.resource['service.name'] === 'svc-a',
        ),
      10_000,
      `spans of ${traceId} from both services`,
    );
    const spans = receiver.spans.filter((s) => s.traceId === traceId);
    assert.ok(spans.length >= 4, `${spans.length} spans`);
    for (const span of spans) {
      assert.equal(
        span.attributes['correlation.id'],
        id,
        `${span.resource['service.name']} ${span.name} carries correlation.id`,
      );
    }

    // Log lines of both services for this request: same correlation ID, same trace.
    await new Promise((r) => setTimeout(r, 100));
    const linesA = jsonLines(a).filter((l) => l.trace_id === traceId);
    const linesB = jsonLines(b).filter((l) => l.trace_id === traceId);
    assert.equal(linesA.filter((l) => l.app === 'svc-a').length, 2, 'A logged twice');
    assert.equal(linesB.length, 1, 'B logged once');
    assert.ok(
      linesA.some((l) => l.message === 'request completed'),
      'access log line',
    );
    for (const line of [...linesA, ...linesB]) {
      assert.equal(line.correlation_id, id, JSON.stringify(line));
    }
    for (const line of [...linesA.filter((l) => l.app), ...linesB]) {
      assert.match(line.span_id ?? '', /^[0-9a-f]{16}$/);
      assert.equal(line.trace_flags, '01');
    }
    // B's own printf logger prints the injected fields too.
    const printf = b.stdout.filter((l) => l.startsWith('PRINTF') && l.includes(traceId));
    assert.equal(printf.length, 1);
    assert.match(
      printf[0] as string,
      new RegExp(
        `trace_id=${traceId} span_id=[0-9a-f]{16} trace_flags=01 correlation_id=${id.replace(/[.]/g, '\\.')}$`,
      ),
    );
    return id;
  }

  it('A → B with fetch, no inbound header: the ID is the trace ID, everywhere', async () => {
    await checkRequest('/via-fetch');
  });

  it('A → B with http.request, no inbound header', async () => {
    await checkRequest('/via-http');
  });

  it('an inbound x-correlation-id is echoed, adopted by B, on every span and line', async () => {
    await checkRequest('/via-fetch', 'order-42.retry:1');
    await checkRequest('/via-http', 'order-42.retry:1');
  });

  it('hostile inbound values never reach a header, a log line or a span: a fresh ID is used', async () => {
    const tag = randomBytes(6).toString('hex');
    const hostile = [
      // CR/LF injection: on the wire it ends the header line; what follows must not surface.
      [`x-correlation-id: crlf${tag}\r\nset-cookie: injected${tag}=1`],
      [`x-correlation-id: long${tag}${'a'.repeat(129)}`],
      [`x-correlation-id: nonascii${tag}\u00e9\u00ff`],
      [`x-correlation-id: ctl${tag}\u0001x`],
      [`x-correlation-id: sp ace${tag}`],
      ['x-correlation-id: '],
      [`x-correlation-id: dup${tag}`, `x-correlation-id: dup2${tag}`],
      [`baggage: correlation.id=bag%0D%0A${tag}`],
    ];
    for (const lines of hostile) {
      const raw = await rawGet(a.port, '/via-fetch', lines);
      const status = Number(raw.split(' ')[1]);
      assert.ok(status === 200 || status === 400, `status ${status} for ${JSON.stringify(lines)}`);
      assert.equal(headerOf(raw, 'set-cookie').length, 0, 'no injected response header');
      if (status === 200) {
        const ids = headerOf(raw, 'x-correlation-id');
        assert.equal(ids.length, 1);
        // "crlf<tag>" alone is a valid ID (the injection was cut at the line end); anything
        // else must have been replaced by the trace ID.
        if (!(lines[0] as string).includes('crlf')) assert.match(ids[0] as string, HEX32);
      }
    }
    await new Promise((r) => setTimeout(r, 500));
    const everywhere = [
      ...a.stdout,
      ...a.stderr,
      ...b.stdout,
      ...b.stderr,
      ...receiver.bodies.map((x) => x.raw.toString('latin1')),
    ].join('\n');
    for (const needle of [
      `injected${tag}`,
      `long${tag}`,
      `nonascii${tag}`,
      `ctl${tag}`,
      `ace${tag}`,
      `dup${tag}`,
      `bag`,
    ]) {
      if (needle === 'bag') {
        assert.ok(!everywhere.includes(`bag%0D%0A${tag}`) && !everywhere.includes(`bag\r\n${tag}`));
      } else {
        assert.ok(!everywhere.includes(needle), `${needle} leaked`);
      }
    }
  });

  it('200 concurrent requests: every log line carries its own request ID', async () => {
    await checkConcurrentIds(a);
  });
});

describe('correlation IDs with no span sink (metrics only)', () => {
  let receiver: OtlpReceiver;
  let a: AppProcess;
  let b: AppProcess;

  before(async () => {
    receiver = await startOtlpReceiver();
    const metricsOnly = {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_TRACES_EXPORTER: 'none',
    };
    ({ a, b } = await startServices(metricsOnly));
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await receiver.close();
  });

  async function call(path: string, headers: Record<string, string>): Promise<string> {
    const res = await fetch(a.url(path), { headers });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(res.headers.get('traceresponse'), null, 'no trace, no traceresponse');
    return res.headers.get('x-correlation-id') as string;
  }

  /** The lines of both services that carry `id`, after they have been written. */
  async function linesOf(id: string): Promise<{ linesA: LogLine[]; linesB: LogLine[] }> {
    await new Promise((r) => setTimeout(r, 100));
    return {
      linesA: jsonLines(a).filter((l) => l.correlation_id === id),
      linesB: jsonLines(b).filter((l) => l.correlation_id === id),
    };
  }

  for (const path of ['/via-fetch', '/via-http']) {
    it(`${path}: a generated ID is returned, logged by A and carried to B`, async () => {
      const id = await call(path, {});
      assert.match(id, HEX32);
      const { linesA, linesB } = await linesOf(id);
      assert.equal(linesA.filter((l) => l.app === 'svc-a').length, 2, 'A logged twice');
      assert.ok(
        linesA.some((l) => l.message === 'request completed'),
        'access log line',
      );
      assert.equal(linesB.length, 1, 'B logged once');
      assert.equal(linesB[0]?.seen_header, true, 'B received the header');
      for (const line of [...linesA, ...linesB]) assert.equal(line.trace_id, undefined);
    });

    it(`${path}: an inbound ID is echoed and adopted by B`, async () => {
      const inbound = `order-${randomBytes(3).toString('hex')}.retry:1`;
      assert.equal(await call(path, { 'x-correlation-id': inbound }), inbound);
      const { linesA, linesB } = await linesOf(inbound);
      assert.equal(linesA.filter((l) => l.app === 'svc-a').length, 2);
      assert.equal(linesB.length, 1);
    });

    it(`${path}: an upstream trace passes through, and its trace ID is the correlation ID`, async () => {
      const traceId = randomBytes(16).toString('hex');
      const parent = randomBytes(8).toString('hex');
      const id = await call(path, { traceparent: `00-${traceId}-${parent}-01` });
      assert.equal(id, traceId);
      const { linesA, linesB } = await linesOf(id);
      assert.equal(linesB.length, 1);
      // Both services log the upstream trace: the span context travelled unchanged.
      for (const line of [...linesA.filter((l) => l.app), ...linesB]) {
        assert.equal(line.trace_id, traceId, JSON.stringify(line));
        assert.equal(line.span_id, parent);
      }
    });
  }

  it('hostile inbound values are replaced, never echoed', async () => {
    const tag = randomBytes(6).toString('hex');
    for (const lines of [
      [`x-correlation-id: crlf${tag}\r\nset-cookie: injected${tag}=1`],
      [`x-correlation-id: long${tag}${'a'.repeat(129)}`],
      [`x-correlation-id: dup${tag}`, `x-correlation-id: dup2${tag}`],
    ]) {
      const raw = await rawGet(a.port, '/via-fetch', lines);
      assert.equal(headerOf(raw, 'set-cookie').length, 0);
      const ids = headerOf(raw, 'x-correlation-id');
      assert.equal(ids.length, 1);
      if (!(lines[0] as string).includes('crlf')) assert.match(ids[0] as string, HEX32);
    }
    await new Promise((r) => setTimeout(r, 300));
    const everywhere = [...a.stdout, ...a.stderr, ...b.stdout, ...b.stderr].join('\n');
    for (const needle of [`injected${tag}`, `long${tag}`, `dup${tag}`]) {
      assert.ok(!everywhere.includes(needle), `${needle} leaked`);
    }
  });

  it('200 concurrent requests: every log line carries its own request ID, and no span is sent', async () => {
    await checkConcurrentIds(a);
    assert.equal(receiver.spans.length, 0);
  });
});

describe('correlation IDs in pg and ioredis callbacks (a pool of one connection)', () => {
  let app: AppProcess | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  for (const [mode, env] of BOTH_MODES) {
    it(`${mode}: every callback logs its own request's ID, queued requests included`, async () => {
      app = await startApp({ fixture: 'callback-db-app.cjs', preload: 'require', env });
      const running = app;
      const ids = Array.from({ length: 8 }, (_, i) => `cb-${i}-${randomBytes(3).toString('hex')}`);
      const statuses = await Promise.all(
        ids.map(async (id) => {
          const res = await fetch(running.url('/'), { headers: { 'x-correlation-id': id } });
          await res.arrayBuffer();
          return res.status;
        }),
      );
      assert.deepEqual(statuses, Array(ids.length).fill(200));
      await new Promise((r) => setTimeout(r, 100));
      const lines = jsonLines(running).filter((l) => String(l.message).endsWith(' answered'));
      assert.equal(lines.length, ids.length * 3, 'three callbacks per request');
      for (const line of lines) assert.equal(line.error, undefined, JSON.stringify(line));
      for (const id of ids) {
        const own = lines.filter((l) => l.correlation_id === id).map((l) => l.message);
        assert.deepEqual(own.sort(), ['client answered', 'pg answered', 'redis answered'], id);
      }
    });
  }
});

describe('correlation IDs in handlers that run after the request body was read', () => {
  let app: AppProcess | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  for (const [mode, env] of BOTH_MODES) {
    it(`${mode}: body-parser and 'data' listeners log their own request's ID`, async () => {
      app = await startApp({ fixture: 'body-log-app.cjs', preload: 'require', env });
      const running = app;
      const calls = Array.from({ length: 12 }, (_, i) => ({
        id: `body-${i}-${randomBytes(3).toString('hex')}`,
        path: i % 2 === 0 ? '/parsed' : '/raw',
        // Large enough to arrive in several 'data' events.
        name: `n${i}-${'x'.repeat(100_000)}`.slice(0, 100_000),
      }));
      const statuses = await Promise.all(
        calls.map(async ({ id, path, name }) => {
          const res = await fetch(running.url(path), {
            method: 'POST',
            headers: { 'x-correlation-id': id, 'content-type': 'application/json' },
            body: JSON.stringify({ name }),
          });
          await res.arrayBuffer();
          return res.status;
        }),
      );
      assert.deepEqual(statuses, Array(calls.length).fill(200));
      await new Promise((r) => setTimeout(r, 100));
      const lines = jsonLines(running).filter((l) => typeof l.name === 'string');
      assert.equal(lines.length, calls.length + calls.length / 2);
      for (const { id, name } of calls) {
        const own = lines.filter((l) => l.name === name);
        assert.ok(own.length > 0, id);
        for (const line of own) assert.equal(line.correlation_id, id, String(line.message));
      }
    });
  }
});
