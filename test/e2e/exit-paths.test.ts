/**
 * Exports on the exit paths real services take: `process.exit(0)` from the application's own
 * SIGTERM handler, `server.close(() => process.exit(0))`, an uncaught exception, an unhandled
 * rejection, a request the process exits without answering. Each run is compared with the same
 * run without the preload: same exit code, same stderr.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AppProcess, request, startApp, TEST_TRACES_DIR } from '../support/app';
import { blackHole } from '../support/black-hole';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver';

const SERVER = 2;
const ERROR = 2;
const NO_DEPENDENCIES = { PGHOST: '', PGPORT: '', PGUSER: '', PGDATABASE: '' };

type Exit = { code: number | null; signal: NodeJS.Signals | null };

interface Run {
  exit: Exit;
  stderr: string[];
  ms: number;
}

/** Nothing is exported before the exit unless the exit path does it. */
const BUFFERED = {
  OTEL_BSP_SCHEDULE_DELAY: '60000',
  OTEL_METRIC_EXPORT_INTERVAL: '60000',
  OTEL_METRICS_EXPORTER: 'otlp,prometheus',
};

/** Starts the fixture, lets `drive` act on it, waits for its exit. */
async function run(
  env: Record<string, string>,
  drive: (app: AppProcess) => Promise<void>,
  preload: 'import' | 'node-options' | 'none' = 'import',
): Promise<Run> {
  const app = await startApp({
    fixture: 'exit-app.mjs',
    preload,
    env: { ...NO_DEPENDENCIES, ...env },
  });
  started.push(app);
  const t0 = performance.now();
  await drive(app);
  const exit = await Promise.race([
    app.exited,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no exit:\n${app.stderr.join('\n')}`)), 15_000),
    ),
  ]);
  // The last lines of stderr may still be in the pipe when 'exit' fires.
  await new Promise((r) => setTimeout(r, 50));
  return { exit, stderr: withoutStartupNotice(app.stderr), ms: performance.now() - t0 };
}

/**
 * Node 26 deprecates module.register(), which the preload calls at start-up for the ESM hooks:
 * its notice is the preload's start-up output, not the exit's, and is left out of comparisons.
 */
function withoutStartupNotice(lines: readonly string[]): string[] {
  const notice = lines.findIndex((l) => l.includes('[DEP0205]'));
  if (notice === -1) return [...lines];
  const next = lines[notice + 1]?.startsWith('(Use `node --trace-deprecation') ? 2 : 1;
  return [...lines.slice(0, notice), ...lines.slice(notice + next)];
}

const started: AppProcess[] = [];

/** A request whose answer never comes (the process exits first): its outcome is not awaited. */
function fireAndForget(url: string): void {
  void request(url).catch(() => {});
}

function serverSpans(receiver: OtlpReceiver, path: string): ReceivedSpan[] {
  return receiver.spans.filter((s) => s.kind === SERVER && s.attributes['url.path'] === path);
}

function requestsTotal(receiver: OtlpReceiver, endpoint: string, status: string): number {
  let total = 0;
  for (const m of receiver.metrics) {
    if (m.name !== 'http_requests_total') continue;
    for (const p of m.dataPoints) {
      if (p.attributes.endpoint === endpoint && p.attributes.status === status) {
        total = Math.max(total, p.value ?? 0);
      }
    }
  }
  return total;
}

describe('exports on exit', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });
  afterEach(async () => {
    for (const app of started.splice(0)) await app.stop();
    receiver.clear();
  });

  const otlp = () => ({ ...BUFFERED, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });

  it('an app whose SIGTERM handler calls process.exit(0): every span and the request counts arrive, exit 0, the same stderr', async () => {
    const drive = async (app: AppProcess) => {
      for (let i = 0; i < 5; i++) assert.equal(await request(app.url('/ok')), 200);
      process.kill(app.pid, 'SIGTERM');
    };
    const bare = await run({ EXIT_MODE: 'exit-on-sigterm' }, drive, 'none');
    const withDistro = await run({ EXIT_MODE: 'exit-on-sigterm', ...otlp() }, drive);
    assert.deepEqual(withDistro.exit, { code: 0, signal: null });
    assert.deepEqual(withDistro.exit, bare.exit);
    assert.deepEqual(withDistro.stderr, bare.stderr);
    // Already at the receiver when the process had exited: the exit waited for them.
    assert.equal(serverSpans(receiver, '/ok').length, 5);
    assert.equal(requestsTotal(receiver, '/ok', '200'), 5);
    assert.ok(withDistro.ms < 5000, `exited after ${Math.round(withDistro.ms)} ms`);
  });

  it('server.close(() => process.exit(0)): the drained request is exported', async () => {
    const drive = async (app: AppProcess) => {
      const slow = request(app.url('/slow'));
      await new Promise((r) => setTimeout(r, 100));
      process.kill(app.pid, 'SIGTERM');
      assert.equal(await slow, 200);
    };
    const bare = await run({ EXIT_MODE: 'close-then-exit' }, drive, 'none');
    const withDistro = await run({ EXIT_MODE: 'close-then-exit', ...otlp() }, drive);
    assert.deepEqual(withDistro.exit, { code: 0, signal: null });
    assert.deepEqual(withDistro.stderr, bare.stderr);
    const [slow] = serverSpans(receiver, '/slow');
    assert.ok(slow, `spans: ${receiver.spans.map((s) => s.name).join(', ')}`);
    assert.equal(slow.attributes['http.response.status_code'], 200);
    assert.equal(requestsTotal(receiver, '/slow', '200'), 1);
  });

  for (const [path, what] of [
    ['/crash', 'an uncaught exception'],
    ['/reject', 'an unhandled rejection'],
  ] as const) {
    it(`${what}: the request it left unanswered is exported as a 500 error, exit 1, the same stderr`, async () => {
      const drive = async (app: AppProcess) => {
        assert.equal(await request(app.url('/ok')), 200);
        fireAndForget(app.url(path));
      };
      const bare = await run({}, drive, 'none');
      const withDistro = await run(otlp(), drive);
      assert.deepEqual(bare.exit, { code: 1, signal: null });
      assert.deepEqual(withDistro.exit, bare.exit);
      assert.deepEqual(withDistro.stderr, bare.stderr);
      assert.equal(serverSpans(receiver, '/ok').length, 1);
      const [crashed] = serverSpans(receiver, path);
      assert.ok(crashed, `spans: ${receiver.spans.map((s) => s.name).join(', ')}`);
      // The span and the metrics say the same: unanswered, 500, an error.
      assert.equal(crashed.attributes['http.response.status_code'], 500);
      assert.equal(crashed.status.code, ERROR);
      assert.equal(requestsTotal(receiver, path, '500'), 1);
    });
  }

  it('a crash whose export cannot finish: no warning above the stack trace, the same stderr', async () => {
    const hole = await blackHole();
    try {
      const drive = async (app: AppProcess) => {
        assert.equal(await request(app.url('/ok')), 200);
        fireAndForget(app.url('/crash'));
      };
      const bare = await run({}, drive, 'none');
      const withDistro = await run(
        {
          ...BUFFERED,
          OTEL_EXPORTER_OTLP_ENDPOINT: hole.url,
          DATALAB_EXIT_FLUSH_TIMEOUT_MS: '500',
        },
        drive,
      );
      assert.deepEqual(withDistro.exit, { code: 1, signal: null });
      assert.deepEqual(withDistro.stderr, bare.stderr);
    } finally {
      await hole.close();
    }
  });

  it('a handler that throws: its error span is exported, exit 1', async () => {
    const drive = async (app: AppProcess) => fireAndForget(app.url('/crash-sync'));
    const bare = await run({}, drive, 'none');
    const withDistro = await run(otlp(), drive);
    assert.deepEqual(withDistro.exit, bare.exit);
    assert.deepEqual(withDistro.exit, { code: 1, signal: null });
    // The error and what follows it are the same. The source line Node prints above it is not:
    // the distro catches a handler's error to end its server span and throws it again (as
    // instrumentation-http does), so
    // Node shows that line (as it does whenever a handler throws, exit or not).
    const error = (lines: string[]) =>
      lines.slice(lines.indexOf('')).filter((l) => !/^\s+at /.test(l));
    assert.deepEqual(error(withDistro.stderr), error(bare.stderr));
    assert.ok(error(bare.stderr).includes('RangeError: crashed in the handler on purpose'));
    const [crashed] = serverSpans(receiver, '/crash-sync');
    assert.ok(crashed, `spans: ${receiver.spans.map((s) => s.name).join(', ')}`);
    assert.equal(crashed.status.code, ERROR);
    assert.equal(requestsTotal(receiver, '/crash-sync', '500'), 1);
  });

  it("the application's own uncaughtException handler keeps control: its exit code and output", async () => {
    const drive = async (app: AppProcess) => fireAndForget(app.url('/crash'));
    const bare = await run({ APP_HANDLER: '1' }, drive, 'none');
    const withDistro = await run({ APP_HANDLER: '1', ...otlp() }, drive);
    assert.deepEqual(bare.exit, { code: 3, signal: null });
    assert.deepEqual(withDistro.exit, bare.exit);
    assert.deepEqual(withDistro.stderr, bare.stderr);
    assert.ok(bare.stderr.includes('handled by the application: crashed on purpose'));
    assert.equal(serverSpans(receiver, '/crash').length, 1);
  });

  it('process.exit() with a request open: a 500 error in the span and in the metrics', async () => {
    const drive = async (app: AppProcess) => fireAndForget(app.url('/exit'));
    const bare = await run({ EXIT_CODE: '4' }, drive, 'none');
    const withDistro = await run({ EXIT_CODE: '4', ...otlp() }, drive);
    assert.deepEqual(withDistro.exit, { code: 4, signal: null });
    assert.deepEqual(withDistro.stderr, bare.stderr);
    const [open] = serverSpans(receiver, '/exit');
    assert.ok(open, `spans: ${receiver.spans.map((s) => s.name).join(', ')}`);
    assert.equal(open.attributes['http.response.status_code'], 500);
    assert.equal(open.status.code, ERROR);
    assert.equal(requestsTotal(receiver, '/exit', '500'), 1);
  });

  it('the local trace store has the spans of an app that exits from its SIGTERM handler', async () => {
    const dir = mkdtempSync(join(TEST_TRACES_DIR, 'exit-'));
    try {
      const result = await run(
        { EXIT_MODE: 'exit-on-sigterm', DATALAB_TRACES_DIR: dir, OTEL_BSP_SCHEDULE_DELAY: '60000' },
        async (app) => {
          for (let i = 0; i < 3; i++) assert.equal(await request(app.url('/ok')), 200);
          process.kill(app.pid, 'SIGTERM');
        },
      );
      assert.deepEqual(result.exit, { code: 0, signal: null });
      const text = readdirSync(dir)
        .map((f) => readFileSync(join(dir, f), 'utf8'))
        .join('');
      const paths = [...text.matchAll(/"key":"url\.path","value":\{"stringValue":"([^"]+)"/g)].map(
        (m) => m[1],
      );
      assert.equal(paths.filter((p) => p === '/ok').length, 3, text.slice(0, 500));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the local trace store has the request that crashed the process', async () => {
    const dir = mkdtempSync(join(TEST_TRACES_DIR, 'crash-'));
    try {
      const result = await run(
        { DATALAB_TRACES_DIR: dir, OTEL_BSP_SCHEDULE_DELAY: '60000' },
        async (app) => {
          assert.equal(await request(app.url('/ok')), 200);
          fireAndForget(app.url('/crash'));
        },
      );
      assert.deepEqual(result.exit, { code: 1, signal: null });
      const text = readdirSync(dir)
        .map((f) => readFileSync(join(dir, f), 'utf8'))
        .join('');
      assert.match(text, /"stringValue":"\/crash"/);
      assert.match(text, /"stringValue":"\/ok"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a fault in the exit flush: the same exit code, the finished requests still exported, one warning', async () => {
    const drive = async (app: AppProcess) => {
      assert.equal(await request(app.url('/ok')), 200);
      process.kill(app.pid, 'SIGTERM');
    };
    const bare = await run({ EXIT_MODE: 'exit-on-sigterm' }, drive, 'none');
    const withDistro = await run(
      { EXIT_MODE: 'exit-on-sigterm', DATALAB_INTERNAL_FAULTS: 'exit-flush', ...otlp() },
      drive,
    );
    assert.deepEqual(withDistro.exit, bare.exit);
    const warnings = withDistro.stderr.filter((l) => l.includes('DLOTEL_'));
    assert.equal(warnings.length, 1, withDistro.stderr.join('\n'));
    assert.match(warnings[0] as string, /"code":"DLOTEL_EXIT_FLUSH_INCOMPLETE"/);
    assert.match(warnings[0] as string, /injected fault at exit-flush/);
    assert.deepEqual(
      withDistro.stderr.filter((l) => !l.includes('DLOTEL_')),
      bare.stderr,
    );
    assert.equal(serverSpans(receiver, '/ok').length, 1);
  });

  it('an app given the preload in NODE_OPTIONS still exports at exit; the sender loads neither the preload nor the other NODE_OPTIONS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'datalab-exit-'));
    try {
      // Every Node process started with this NODE_OPTIONS writes its PID here.
      const marks = join(dir, 'marks.txt');
      const marker = join(dir, 'mark.cjs');
      writeFileSync(
        marker,
        `require('node:fs').appendFileSync(${JSON.stringify(marks)}, process.pid + '\\n');\n`,
      );
      let pid = 0;
      const result = await run(
        { EXIT_MODE: 'exit-on-sigterm', NODE_OPTIONS: `--require ${marker}`, ...otlp() },
        async (app) => {
          pid = app.pid;
          for (let i = 0; i < 3; i++) assert.equal(await request(app.url('/ok')), 200);
          process.kill(app.pid, 'SIGTERM');
        },
        'node-options',
      );
      assert.deepEqual(result.exit, { code: 0, signal: null });
      assert.equal(serverSpans(receiver, '/ok').length, 3);
      assert.equal(requestsTotal(receiver, '/ok', '200'), 3);
      assert.deepEqual(readFileSync(marks, 'utf8').split('\n').filter(Boolean), [String(pid)]);
      assert.deepEqual(
        result.stderr.filter((l) => l.includes('DLOTEL_')),
        [],
        'no second start of the distro',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a backend that never answers holds the exit for DATALAB_EXIT_FLUSH_TIMEOUT_MS at most, the exit code unchanged', async () => {
    const hole = await blackHole();
    try {
      const result = await run(
        {
          ...BUFFERED,
          EXIT_MODE: 'exit-on-sigterm',
          OTEL_EXPORTER_OTLP_ENDPOINT: hole.url,
          DATALAB_EXIT_FLUSH_TIMEOUT_MS: '700',
        },
        async (app) => {
          assert.equal(await request(app.url('/ok')), 200);
          process.kill(app.pid, 'SIGTERM');
        },
      );
      assert.deepEqual(result.exit, { code: 0, signal: null });
      assert.ok(result.ms >= 600 && result.ms < 2500, `exited after ${Math.round(result.ms)} ms`);
      assert.ok(
        result.stderr.some((l) => l.includes('DLOTEL_EXIT_FLUSH_INCOMPLETE')),
        result.stderr.join('\n'),
      );
    } finally {
      await hole.close();
    }
  });
});
