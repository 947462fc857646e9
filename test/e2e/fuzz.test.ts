/**
 * Hostile input, generated: raw-socket requests with CR/LF, NUL, invalid UTF-8 and 64 KB header
 * values (the correlation header, traceparent and baggage included), 10 KB paths,
 * percent-encoding, `..`, unicode, unknown and lower-case methods, thousands of distinct paths
 * and query strings, against a fixture under the preload with the access log on. Then garbage in
 * every variable the distro reads.
 *
 * The generator is seeded (mulberry32) and reproducible: FUZZ_SEED=<n> (or `random`) and
 * FUZZ_CASES=<n> override the defaults; every failure message names the seed. `npm run fuzz`
 * runs the same file with many more cases.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { join } from 'node:path';
import { SETTINGS } from '../../src/config';
import { type AppProcess, freePort, request, startApp, TEST_TRACES_DIR } from '../support/app';
import { parsePrometheusText, samplesNamed } from '../support/prometheus-text';

const SEED =
  process.env.FUZZ_SEED === 'random'
    ? Math.floor(Math.random() * 2 ** 32)
    : Number(process.env.FUZZ_SEED ?? 0x5eed) >>> 0;
const CASES = Math.max(1, Number(process.env.FUZZ_CASES ?? 300) || 300);
const MAX_ENDPOINTS = 50;
const REPRO = `reproduce with FUZZ_SEED=${SEED} FUZZ_CASES=${CASES}`;

/** mulberry32: a tiny, good-enough seeded PRNG. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  constructor(readonly next: () => number) {}
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  word(max = 12): string {
    const chars = 'abcdefghijklmnopqrstuvwxyz0123456789-_.~';
    let out = '';
    for (let i = 1 + this.int(max); i > 0; i--) out += chars[this.int(chars.length)];
    return out;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** A piece of a request line or header: text (sent as UTF-8) or raw bytes. */
type Part = string | Buffer;
const buf = (p: Part) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p);
const cat = (...parts: Part[]) => Buffer.concat(parts.map(buf));

function method(g: Gen): string {
  return g.pick([
    'GET',
    'GET',
    'GET',
    'POST',
    'PUT',
    'DELETE',
    'PATCH',
    'HEAD',
    'OPTIONS',
    'get',
    'post',
    'Get',
    'FOO',
    'PROPFIND',
    'M-SEARCH',
    'BREW',
    'PURGE',
    'X'.repeat(1 + g.int(40)),
  ]);
}

function target(g: Gen): Part {
  switch (g.int(12)) {
    case 0:
      return `/${'a'.repeat(10_240)}`;
    case 1:
      return `/${Array.from({ length: 800 }, () => g.word(12)).join('/')}`.slice(0, 10_240);
    case 2:
      return g.pick([
        '/%2e%2e/%2e%2e/etc/passwd',
        '/a%2Fb%2F..%2F..%2Fc',
        '/%00/%0d%0a/%zz/%',
        '/%E2%82%AC/%ff%fe/%C0%AF',
        `/x?q=%0A%7B%22level%22%3A%22error%22%7D&r=${g.word()}`,
      ]);
    case 3:
      return g.pick(['/../../etc/passwd', '/a/./b/../../c', '/..', '//..//..//', '/./.']);
    case 4:
      return g.pick(['/café/日本語/😀', '/\u202eevil', '/ünï/cödé?q=ä', '/\u2028\u2029']);
    case 5:
      return cat('/', Buffer.from(g.bytes(1 + g.int(64)).filter((b) => b > 0x20 && b !== 0x7f)));
    case 6:
      return g.pick(['http://evil.example/x', 'http://evil.example', '*', 'evil.example:443']);
    case 7:
      return `/users/${g.int(1e9)}/orders/${g.bytes(8).toString('hex')}?page=${g.int(100)}`;
    default:
      // Thousands of distinct paths and query strings.
      return `/p${g.int(100_000)}/${g.word()}${g.chance(0.5) ? `?${g.word()}=${g.word(30)}` : ''}`;
  }
}

function hostileValue(g: Gen): Part {
  switch (g.int(11)) {
    case 0:
      return `abc\r\ninjected: yes`;
    case 1:
      return `abc\rdef`;
    case 2:
      return `abc\ndef {"level":"error","message":"forged"}`;
    case 3:
      return `ab\u0000cd`;
    case 4:
      return cat('id-', Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82]), '-x');
    case 5:
      return 'x'.repeat(65_536);
    case 6:
      return 'a'.repeat(129);
    case 7:
      return '"quoted"\\back\tslash';
    case 8:
      return g.bytes(1 + g.int(200));
    case 9:
      return `ok-${g.word(20)}`;
    default:
      return '😀 ünïcödé';
  }
}

function headerLines(g: Gen): { headers: Buffer; correlation?: Part } {
  const lines: Part[] = [`Host: 127.0.0.1\r\n`];
  let correlation: Part | undefined;
  const n = g.int(5);
  for (let i = 0; i < n; i++) {
    const name = g.pick([
      'x-correlation-id',
      'x-correlation-id',
      'traceparent',
      'tracestate',
      'baggage',
      'user-agent',
      'cookie',
      'authorization',
      `x-${g.word(8)}`,
    ]);
    let value: Part;
    if (name === 'traceparent' && g.chance(0.5)) {
      value = `00-${g.bytes(16).toString('hex')}-${g.bytes(8).toString('hex')}-0${g.int(3)}`;
    } else if (name === 'baggage' && g.chance(0.5)) {
      value = cat('correlation.id=', hostileValue(g), `,k=${g.word()}`);
    } else value = hostileValue(g);
    if (name === 'x-correlation-id') correlation = correlation === undefined ? value : '';
    lines.push(cat(name, ': ', value, '\r\n'));
  }
  return { headers: cat(...lines), correlation };
}

interface Case {
  index: number;
  raw: Buffer;
  /** The correlation header value sent, '' when sent twice. */
  correlation?: string;
}

function makeCase(g: Gen, index: number): Case {
  const m = method(g);
  const { headers, correlation } = headerLines(g);
  const body = g.chance(0.2) ? g.bytes(g.int(2000)) : undefined;
  const raw = cat(
    m,
    ' ',
    target(g),
    ' HTTP/1.1\r\n',
    headers,
    body ? `Content-Length: ${body.length}\r\n` : '',
    'Connection: close\r\n\r\n',
    body ?? '',
  );
  return {
    index,
    raw,
    correlation: correlation === undefined ? undefined : buf(correlation).toString('latin1'),
  };
}

function describeCase(c: Case): string {
  const text = JSON.stringify(c.raw.toString('latin1'));
  return `case #${c.index} (${c.raw.length} bytes): ${text.length > 300 ? `${text.slice(0, 300)}…` : text}`;
}

/**
 * Sends the raw bytes and returns everything the server wrote before closing; `reset` when the
 * connection was reset (after a rejected request), which can cost the client data the server sent.
 */
function sendRaw(
  port: number,
  raw: Buffer,
  timeoutMs = 10_000,
): Promise<{ data: Buffer; reset: boolean } | 'timeout'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let reset = false;
    const socket = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('timeout');
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {
      reset = true; // a reset after a rejected request is fine
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), reset });
    });
    socket.end(raw);
  });
}

const VALID_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Every stdout line is one JSON object; stderr has no unhandled error and every distro line on it
 * is one JSON record. With `otelDiag`, OpenTelemetry's own diagnostics (OTEL_LOG_LEVEL, plain
 * text of the operator's own settings) may be on stderr too.
 */
function checkOutputs(app: AppProcess, problems: string[], otelDiag = false): void {
  for (const line of app.stdout) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      problems.push(`stdout line is not JSON: ${JSON.stringify(line.slice(0, 200))}`);
      continue;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      problems.push(`stdout line is not one JSON object: ${line.slice(0, 200)}`);
    }
  }
  for (const line of app.stderr) {
    if (/unhandledRejection|uncaughtException/.test(line)) {
      problems.push(`stderr: ${line.slice(0, 300)}`);
    }
    if (otelDiag && !line.includes('DLOTEL_') && !line.includes('@datalab/otel')) continue;
    try {
      const record = JSON.parse(line) as unknown;
      if (record === null || typeof record !== 'object') throw new Error('not an object');
    } catch {
      problems.push(`stderr line is not one JSON record: ${JSON.stringify(line.slice(0, 200))}`);
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe(`fuzz: hostile requests (seed ${SEED}, ${CASES} cases)`, function () {
  this.timeout(Math.max(60_000, CASES * 200));
  let app: AppProcess | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  it('never crashes, never injects a log line, keeps the endpoint cap, /metrics parses', async () => {
    app = await startApp({
      fixture: 'fuzz-app.mjs',
      env: {
        DATALAB_ACCESS_LOG: 'true',
        DATALAB_MAX_ENDPOINTS: String(MAX_ENDPOINTS),
        FUZZ_LENIENT: 'true',
      },
    });
    const running = app;
    const g = new Gen(mulberry32(SEED));
    const cases = Array.from({ length: CASES }, (_, i) => makeCase(g, i));
    const problems: string[] = [];
    let served = 0;
    let resets = 0;
    let hostileIdsServed = 0;
    let next = 0;
    const worker = async () => {
      while (next < cases.length) {
        const c = cases[next++] as Case;
        const answer = await sendRaw(running.port, c.raw);
        if (answer === 'timeout') {
          problems.push(`no answer within 10 s: ${describeCase(c)}`);
          continue;
        }
        if (answer.reset) resets++;
        const text = answer.data.toString('latin1');
        const status = /^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1];
        if (status === undefined) {
          // Node may close without a word on some malformed input; the process must survive it.
          if (!alive(running.pid)) problems.push(`process died after ${describeCase(c)}`);
          continue;
        }
        // Random header bytes can end the head early, so that the rest is a second request.
        served += [...text.matchAll(/(?:^|\r\n)HTTP\/1\.1 200 /g)].length;
        if (status !== '200' && !['400', '431', '413'].includes(status)) {
          problems.push(`status ${status}: ${describeCase(c)}`);
        }
        if (status !== '200') continue;
        const head = text.slice(0, text.indexOf('\r\n\r\n'));
        const id = /^x-correlation-id: (.*)$/im.exec(head)?.[1];
        if (id === undefined || !VALID_ID.test(id)) {
          problems.push(`response x-correlation-id ${JSON.stringify(id)}: ${describeCase(c)}`);
        } else if (c.correlation !== undefined && id !== c.correlation) {
          if (!VALID_ID.test(c.correlation)) hostileIdsServed++;
          else {
            problems.push(`valid correlation ID not kept: ${describeCase(c)}`);
          }
        }
        if (!/^traceresponse: 00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/im.test(head)) {
          problems.push(`traceresponse missing or malformed: ${describeCase(c)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));

    assert.ok(alive(running.pid), `the process died; ${REPRO}`);
    assert.equal(await request(running.url('/after-the-storm')), 200, REPRO);
    assert.ok(served > CASES / 4, `only ${served} of ${CASES} cases were served; ${REPRO}`);
    // The lenient parser lets hostile correlation IDs through to the distro, which replaces them.
    if (CASES >= 200) assert.ok(hostileIdsServed > 0, `no hostile ID reached the distro; ${REPRO}`);

    // /metrics parses, and the endpoint label stays within the cap plus the overflow series.
    const text = await running.scrapeText();
    const samples = parsePrometheusText(text);
    const requests = samplesNamed(samples, 'http_requests_total');
    const endpoints = new Set(requests.map((s) => s.labels.endpoint));
    assert.ok(
      endpoints.size <= MAX_ENDPOINTS + 1,
      `${endpoints.size} endpoint values (cap ${MAX_ENDPOINTS} + __overflow__); ${REPRO}`,
    );
    if (CASES >= 200) assert.ok(endpoints.has('__overflow__'), `overflow reached; ${REPRO}`);
    const durations = new Set(
      samplesNamed(samples, 'http_request_duration_seconds_count').map((s) => s.labels.endpoint),
    );
    assert.ok(durations.size <= MAX_ENDPOINTS + 1, `${durations.size} duration endpoints`);
    // Every served request is counted once (plus the one after the storm). A reset connection
    // can hide a 200 the server did send, so those few may be counted without being seen here.
    const counted = requests.reduce((n, s) => n + s.value, 0);
    assert.ok(
      counted >= served + 1 && counted <= served + 1 + resets,
      `${counted} requests counted, ${served} + 1 served, ${resets} resets; ${REPRO}`,
    );

    // Let the last access-log lines reach us, then check every line of output.
    await new Promise((r) => setTimeout(r, 200));
    checkOutputs(running, problems);
    const accessLines = running.stdout.filter((l) => l.includes('"request completed"'));
    assert.equal(accessLines.length, counted, 'one access-log line per counted request');
    const overflow = running.warnings().filter((w) => w.startsWith('DLOTEL_ENDPOINT_OVERFLOW'));
    assert.ok(overflow.length <= 1, overflow.join('\n'));
    assert.deepEqual(problems.slice(0, 20), [], `${problems.length} problems; ${REPRO}`);
  });
});

/** Every variable the distro knows: the settings table (the OTLP exporters' own included). */
function configVariables(): string[] {
  return SETTINGS.map((s) => s.env).sort();
}

const GARBAGE = [
  'abc',
  '-1',
  '0',
  '99999999999999999999',
  '1e3',
  'NaN',
  'true,false',
  ' , , ',
  '=,=,=',
  '%zz%',
  '💥\u202e',
  'line1\nline2 {"level":"error","message":"forged"}',
  '"quoted"\\',
  'null',
  '{}',
  '../../etc',
  'http://[::1',
  'none,otlp,zzz',
  'x'.repeat(5000),
];

describe(`fuzz: garbage configuration (seed ${SEED})`, function () {
  this.timeout(120_000);
  const variants = Math.max(3, Math.min(50, Math.floor(CASES / 100)));
  const variables = configVariables();

  it('lists the variables the distro reads', () => {
    for (const name of [
      'DATALAB_METRICS_PORT',
      'DATALAB_MANAGEMENT_TOKEN',
      'DATALAB_MAX_ENDPOINTS',
      'OTEL_TRACES_EXPORTER',
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'OTEL_SERVICE_NAME',
    ]) {
      assert.ok(variables.includes(name), name);
    }
  });

  for (let v = 0; v < variants; v++) {
    it(`variant ${v}: garbage in all ${variables.length} variables; warns and serves`, async () => {
      const g = new Gen(mulberry32((SEED + 7919 * (v + 1)) >>> 0));
      const env: Record<string, string> = {};
      for (const name of variables) env[name] = g.pick(GARBAGE);
      // Paths the harness needs stay sane: files go under the test's temporary directory, and
      // in two variants of three the management port is a real free one to scrape.
      env.DATALAB_TRACES_DIR = join(TEST_TRACES_DIR, `garbage-${v}`, g.word());
      const metricsPort = v % 3 === 2 ? undefined : await freePort();
      if (metricsPort !== undefined) {
        env.DATALAB_METRICS_PORT = String(metricsPort);
        env.DATALAB_METRICS_HOST = '127.0.0.1';
      }
      let app: AppProcess | undefined;
      try {
        app = await startApp({ fixture: 'fuzz-app.mjs', env, waitForMetrics: false });
        assert.equal(await request(app.url('/users/1')), 200, `serves; ${REPRO} (variant ${v})`);
        assert.equal(await request(app.url('/users/2'), { method: 'POST' }), 200);
        const invalid = app.warnings().filter((w) => w.startsWith('DLOTEL_CONFIG_INVALID'));
        assert.ok(invalid.length >= 5, `warnings printed:\n${app.stderr.join('\n')}`);
        if (metricsPort !== undefined) {
          const token = (env.DATALAB_MANAGEMENT_TOKEN ?? '').trim();
          const validToken = /^[\x21-\x7e]{16,512}$/.test(token);
          const base = `http://127.0.0.1:${metricsPort}`;
          const res = await fetch(`${base}/metrics`, {
            // A garbage token keeps /metrics closed, even to a caller who sends that garbage.
            headers: { authorization: `Bearer ${validToken ? token : 'not-the-garbage'}` },
          });
          const body = await res.text();
          // 404 when OTEL_METRICS_EXPORTER's garbage still named an exporter, but not prometheus.
          const expected = validToken ? [200, 404] : [401, 404];
          assert.ok(expected.includes(res.status), `/metrics ${res.status}, token ${token}`);
          if (res.status === 200) parsePrometheusText(body);
          assert.equal((await fetch(`${base}/health/live`)).status, 200, 'the probe stays open');
        }
        const problems: string[] = [];
        checkOutputs(app, problems, true);
        assert.deepEqual(problems.slice(0, 10), [], `${REPRO} (variant ${v})`);
        assert.ok(alive(app.pid));
      } finally {
        await app?.stop();
      }
    });
  }
});
