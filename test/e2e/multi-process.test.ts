/**
 * Services made of several processes, and the management port in the deployments people run:
 * Node `cluster` (the primary serves its workers' totals), PM2 cluster mode (every instance
 * honours the ecosystem file's settings, on its own port), a launcher that spawns the real
 * application (only the application answers), an application that listens on the distro's port
 * itself (it gets it), and a port taken at start-up (retried until it frees).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request as httpRequest, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AppProcess, FIXTURES, freePort, ROOT, request, startApp } from '../support/app';
import { startOtlpReceiver } from '../support/otlp-receiver';
import { parsePrometheusText, type Sample, samplesNamed, sumOf } from '../support/prometheus-text';
import { skipBecause } from '../support/skip';

const noKeepAlive = new Agent({ keepAlive: false });

/** One GET on a fresh connection (cluster balances connections, not requests). */
function get(port: number, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, agent: noKeepAlive, headers: { connection: 'close' } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function scrape(port: number, token?: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  return { status: res.status, text: await res.text() };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} did not happen in ${ms} ms (${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function killPid(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function jsonLine<T>(lines: readonly string[], event: string): T | undefined {
  for (const line of lines) {
    if (!line.startsWith('{')) continue;
    try {
      const msg = JSON.parse(line) as { event?: string };
      if (msg.event === event) return msg as T;
    } catch {
      // Not JSON after all.
    }
  }
  return undefined;
}

/** A port p such that p and p + 1 are both free (PM2 instances 0 and 1). */
async function consecutiveFreePorts(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port >= 65_535) continue;
    const probe = createServer();
    const free = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(port + 1, '127.0.0.1', () => resolve(true));
    });
    if (free) {
      await new Promise((r) => probe.close(r));
      return port;
    }
  }
}

const pidOf = (samples: readonly Sample[]) =>
  Number(samplesNamed(samples, 'target_info')[0]?.labels.process_pid);

describe('multi-process services and the management port', function () {
  this.timeout(90_000);
  let app: AppProcess | undefined;
  const extraPids: number[] = [];

  afterEach(async () => {
    await app?.stop();
    app = undefined;
    for (const pid of extraPids.splice(0)) killPid(pid);
  });

  describe('node:cluster', () => {
    it('the primary serves the exact totals of its 4 workers; workers bind nothing', async () => {
      const appPort = await freePort();
      app = await startApp({
        fixture: 'cluster-app.cjs',
        env: { APP_PORT: String(appPort), WORKERS: '4' },
      });
      const started = jsonLine<{ primary: number; workers: number[] }>(app.stdout, 'listening');
      assert.ok(started);
      extraPids.push(...started.workers);

      const served = new Set<string>();
      const total = 1000;
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < total) {
            next++;
            const res = await get(appPort);
            assert.equal(res.status, 200);
            served.add(res.body);
          }
        }),
      );
      assert.ok(served.size >= 2, `requests reached ${[...served].join(', ')}`);

      const samples = parsePrometheusText(await app.scrapeText());
      assert.equal(pidOf(samples), started.primary, 'the primary answers');
      assert.equal(sumOf(samplesNamed(samples, 'http_requests_total')), total);
      assert.equal(sumOf(samplesNamed(samples, 'http_request_duration_seconds_count')), total);
      const inf = samplesNamed(samples, 'http_request_duration_seconds_bucket').filter(
        (s) => s.labels.le === '+Inf',
      );
      assert.equal(sumOf(inf), total, 'histogram buckets added bucket by bucket');
      // Every family once, every series once: merged, not concatenated.
      const keys = samples.map((s) => `${s.name}${JSON.stringify(s.labels)}`);
      assert.equal(new Set(keys).size, keys.length);
      const rss = sumOf(samplesNamed(samples, 'memory_usage_bytes'));
      assert.ok(rss > 5 * 30e6, `memory_usage_bytes ${rss} sums the 5 processes`);

      const health = await fetch(`http://127.0.0.1:${app.metricsPort}/health`);
      assert.equal(health.status, 200);
      const report = (await health.json()) as {
        status: string;
        checks: Record<string, { status: string; connected?: number }>;
      };
      assert.equal(report.status, 'healthy');
      assert.equal(report.checks.cluster_workers?.connected, 4);
      assert.equal((await fetch(`http://127.0.0.1:${app.metricsPort}/health/ready`)).status, 200);
      assert.deepEqual(app.warnings(), [], 'no worker warns about the port');
    });

    it('under a primary without the distro, each worker its own port, the lowest free one', async () => {
      const appPort = await freePort();
      const base = await consecutiveFreePorts();
      app = await startApp({
        fixture: 'cluster-app.cjs',
        preload: 'none',
        env: {
          APP_PORT: String(appPort),
          WORKERS: '2',
          WORKERS_PRELOAD: '1',
          DATALAB_METRICS_PORT: String(base),
        },
      });
      const started = jsonLine<{ workers: number[] }>(app.stdout, 'listening');
      assert.ok(started);
      extraPids.push(...started.workers);
      const pidOn = async (port: number) => {
        const res = await scrape(port);
        return res.status === 200 ? pidOf(parsePrometheusText(res.text)) : undefined;
      };
      const first = await until('the worker on the first port', () => pidOn(base));
      const second = await until('the worker on the next port', () => pidOn(base + 1));
      assert.deepEqual(new Set([first, second]), new Set(started.workers));
      // Bound exclusively: the primary does not round-robin scrapes between the workers.
      for (let i = 0; i < 6; i++) assert.equal(await pidOn(base), first);
      process.kill(first, 'SIGKILL');
      const respawned = await until('the replacement worker on the freed port', async () => {
        const pid = await pidOn(base).catch(() => undefined);
        if (pid) extraPids.push(pid);
        return pid && pid !== first ? pid : undefined;
      });
      assert.notEqual(respawned, second);
      assert.deepEqual(app.warnings(), []);
    });

    it('a worker that exits keeps its requests in the totals, those after the last scrape and the one it left open included', async () => {
      const appPort = await freePort();
      app = await startApp({
        fixture: 'cluster-app.cjs',
        env: { APP_PORT: String(appPort), WORKERS: '2' },
      });
      const started = jsonLine<{ workers: number[] }>(app.stdout, 'listening');
      extraPids.push(...(started?.workers ?? []));
      for (let i = 0; i < 40; i++) assert.equal((await get(appPort)).status, 200);
      const before = sumOf(samplesNamed(await app.scrape(), 'http_requests_total'));
      assert.equal(before, 40);
      // Counted by the workers after the primary's last scrape of them.
      for (let i = 0; i < 20; i++) assert.equal((await get(appPort)).status, 200);
      // One worker exits with this request unanswered: a 500 it counts in its exit event.
      await get(appPort, '/exit-open').then(
        () => assert.fail('the worker answered /exit-open'),
        () => undefined,
      );
      const current = app;
      const errors = await until("the exited worker's 500 in the totals", async () => {
        const samples = samplesNamed(await current.scrape(), 'http_requests_total');
        const e = samples.filter((s) => s.labels.status === '500');
        return e.length > 0 ? { samples, e } : undefined;
      });
      assert.equal(sumOf(errors.e), 1, JSON.stringify(errors.samples));
      assert.equal(sumOf(errors.samples), 61, 'the 40 scraped, the 20 after, the 500');
    });
    it('a worker ended by SIGTERM keeps the requests it served after the last scrape', async () => {
      const appPort = await freePort();
      app = await startApp({
        fixture: 'cluster-app.cjs',
        env: { APP_PORT: String(appPort), WORKERS: '2' },
      });
      const started = jsonLine<{ workers: number[] }>(app.stdout, 'listening');
      const workerPids = started?.workers ?? [];
      extraPids.push(...workerPids);
      assert.equal(workerPids.length, 2);
      for (let i = 0; i < 40; i++) assert.equal((await get(appPort)).status, 200);
      assert.equal(sumOf(samplesNamed(await app.scrape(), 'http_requests_total')), 40);
      for (let i = 0; i < 20; i++) assert.equal((await get(appPort)).status, 200);
      process.kill(workerPids[0] as number, 'SIGTERM');
      const current = app;
      await until('the worker to be gone', async () => {
        const report = (await (
          await fetch(`http://127.0.0.1:${current.metricsPort}/health`)
        ).json()) as {
          checks: { cluster_workers?: { connected: number } };
        };
        return report.checks.cluster_workers?.connected === 1 ? true : undefined;
      });
      await new Promise((r) => setTimeout(r, 300));
      const samples = samplesNamed(await app.scrape(), 'http_requests_total');
      assert.equal(sumOf(samples), 60, JSON.stringify(samples));
    });
  });

  describe('PM2 cluster mode', () => {
    const pm2Bin = join(ROOT, 'node_modules', 'pm2', 'bin', 'pm2');
    let home: string | undefined;

    function pm2(env: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
      return new Promise((resolve, reject) => {
        execFile(
          process.execPath,
          [pm2Bin, ...args],
          { env, cwd: home, timeout: 30_000 },
          (err, stdout, stderr) =>
            err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        );
      });
    }

    function pm2Env(): NodeJS.ProcessEnv {
      const env: NodeJS.ProcessEnv = {};
      for (const [k, v] of Object.entries(process.env)) {
        if (k.startsWith('OTEL_') || k.startsWith('DATALAB_') || k === 'NODE_OPTIONS') continue;
        if (k.startsWith('PM2_') || k.startsWith('pm_')) continue;
        env[k] = v;
      }
      return { ...env, PM2_HOME: home };
    }

    afterEach(async () => {
      if (home === undefined) return;
      const env = pm2Env();
      let pids: number[] = [];
      try {
        pids = (JSON.parse(await pm2(env, 'jlist')) as { pid?: number }[]).flatMap((p) =>
          p.pid ? [p.pid] : [],
        );
      } catch {
        // The daemon may be gone already.
      }
      const daemonFile = join(home, 'pm2.pid');
      const daemon = existsSync(daemonFile) ? Number(readFileSync(daemonFile, 'utf8')) : undefined;
      await pm2(env, 'kill').catch(() => undefined);
      for (const pid of pids) killPid(pid);
      killPid(daemon);
      rmSync(home, { recursive: true, force: true });
      home = undefined;
    });

    for (const via of ['node_args', 'NODE_OPTIONS'] as const) {
      it(`every instance honours the ecosystem file's port, host, token and service name (preload in ${via})`, async function () {
        if (!existsSync(pm2Bin)) skipBecause(this, 'pm2 is not installed (npm ci installs it)');
        home = mkdtempSync(join(tmpdir(), 'datalab-pm2-'));
        const metricsPort = await consecutiveFreePorts();
        const appPort = await freePort();
        const token = 'pm2-token-0123456789abcdef';
        const preload = `--import ${join(ROOT, 'dist', 'register.mjs')}`;
        writeFileSync(
          join(home, 'ecosystem.config.cjs'),
          `module.exports = ${JSON.stringify({
            apps: [
              {
                name: 'pm2-app',
                script: join(FIXTURES, 'pm2-app.cjs'),
                instances: 2,
                exec_mode: 'cluster',
                ...(via === 'node_args' ? { node_args: preload } : {}),
                env: {
                  APP_PORT: String(appPort),
                  DATALAB_METRICS_PORT: String(metricsPort),
                  DATALAB_METRICS_HOST: '127.0.0.1',
                  DATALAB_MANAGEMENT_TOKEN: token,
                  OTEL_SERVICE_NAME: 'orders-api',
                },
              },
            ],
          })};\n`,
        );
        // With NODE_OPTIONS, PM2's CLI and daemon load the preload too.
        const env = via === 'NODE_OPTIONS' ? { ...pm2Env(), NODE_OPTIONS: preload } : pm2Env();
        await pm2(env, 'start', join(home, 'ecosystem.config.cjs'));

        for (const port of [metricsPort, metricsPort + 1]) {
          await until(`instance on ${port}`, async () =>
            (await scrape(port, token)).status === 200 ? true : undefined,
          );
          assert.equal((await scrape(port)).status, 401, `${port} requires the token`);
        }
        const total = 200;
        for (let i = 0; i < total; i++) assert.equal((await get(appPort)).status, 200);

        let sum = 0;
        const pids = new Set<number>();
        for (const port of [metricsPort, metricsPort + 1]) {
          const samples = parsePrometheusText((await scrape(port, token)).text);
          const target = samplesNamed(samples, 'target_info')[0];
          assert.equal(target?.labels.service_name, 'orders-api');
          assert.notEqual(target?.labels.service_version, undefined);
          const requests = samplesNamed(samples, 'http_requests_total');
          for (const s of requests) assert.equal(s.labels.service, 'orders-api');
          sum += sumOf(requests);
          pids.add(pidOf(samples));
        }
        assert.equal(pids.size, 2, 'two instances, two ports');
        assert.equal(sum, total, 'the instances together counted every request');
        // The default port is not opened behind the operator's back.
        const stray = await fetch('http://127.0.0.1:9464/metrics').catch(() => undefined);
        if (stray !== undefined) {
          const body = await stray.text();
          assert.ok(!body.includes('orders-api'), 'nothing of the app on 9464');
          assert.ok(!body.includes('service="pm2"'), 'nothing of PM2 itself on 9464');
        }
      });
    }

    it("OTLP exports go where the ecosystem file's OTEL_* variables say, with its headers", async function () {
      if (!existsSync(pm2Bin)) skipBecause(this, 'pm2 is not installed (npm ci installs it)');
      home = mkdtempSync(join(tmpdir(), 'datalab-pm2-'));
      const receiver = await startOtlpReceiver();
      try {
        const metricsPort = await consecutiveFreePorts();
        const appPort = await freePort();
        writeFileSync(
          join(home, 'ecosystem.config.cjs'),
          `module.exports = ${JSON.stringify({
            apps: [
              {
                name: 'pm2-otlp',
                script: join(FIXTURES, 'pm2-app.cjs'),
                instances: 1,
                exec_mode: 'cluster',
                node_args: `--import ${join(ROOT, 'dist', 'register.mjs')}`,
                env: {
                  APP_PORT: String(appPort),
                  DATALAB_METRICS_PORT: String(metricsPort),
                  DATALAB_METRICS_HOST: '127.0.0.1',
                  OTEL_SERVICE_NAME: 'orders-api',
                  OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
                  OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
                  OTEL_EXPORTER_OTLP_HEADERS: 'x-tenant=acme',
                  OTEL_BSP_SCHEDULE_DELAY: '200',
                },
              },
            ],
          })};\n`,
        );
        await pm2(pm2Env(), 'start', join(home, 'ecosystem.config.cjs'));
        await until(`instance on ${metricsPort}`, async () =>
          (await scrape(metricsPort)).status === 200 ? true : undefined,
        );
        for (let i = 0; i < 5; i++) assert.equal((await get(appPort)).status, 200);
        await receiver.waitFor(
          () => receiver.spans.filter((s) => s.kind === 2).length >= 5,
          15_000,
          "the 5 server spans at the ecosystem file's endpoint",
        );
        const traces = receiver.requests.filter((r) => r.path === '/v1/traces');
        assert.ok(traces.length > 0);
        for (const r of traces) assert.equal(r.headers['x-tenant'], 'acme');
        for (const span of receiver.spans)
          assert.equal(span.resource['service.name'], 'orders-api');
      } finally {
        await receiver.close();
      }
    });
  });

  describe('launchers', () => {
    for (const [title, env] of [
      ['spawning at once', { LAUNCH_DELAY_MS: '0' }],
      // The launcher's own idle bind comes first: the application asks for the port.
      [
        'spawning after the launcher bound the port',
        { LAUNCH_DELAY_MS: '1500', DATALAB_MANAGEMENT_IDLE_BIND_MS: '200' },
      ],
      [
        'through a shell, after the launcher bound the port',
        { LAUNCH_DELAY_MS: '1500', DATALAB_MANAGEMENT_IDLE_BIND_MS: '200', LAUNCH_SHELL: '1' },
      ],
    ] as const) {
      it(`only the application the launcher spawns answers (${title})`, async () => {
        app = await startApp({
          fixture: 'launcher.cjs',
          preload: 'node-options',
          env: { ...env, LAUNCH_SCRIPT: join(FIXTURES, 'plain-http-app.mjs') },
        });
        const spawned = jsonLine<{ launcher: number; app: number }>(app.stdout, 'spawned');
        assert.ok(spawned);
        extraPids.push(spawned.app);
        assert.equal(await request(app.url('/users/1')), 200);
        // Through a shell, the application is the shell's child (unless the shell execs it).
        const viaShell = 'LAUNCH_SHELL' in env;
        const samples = await until('the application answering', async () => {
          const s = await app?.scrape();
          const pid = s && pidOf(s);
          if (pid) extraPids.push(pid);
          return pid && pid !== spawned.launcher && (viaShell || pid === spawned.app)
            ? s
            : undefined;
        });
        assert.equal(sumOf(samplesNamed(samples, 'http_requests_total')), 1);
        assert.deepEqual(app.warnings(), []);
      });
    }

    it('a launcher that handed the port over answers again once the application exits', async () => {
      app = await startApp({
        fixture: 'launcher.cjs',
        preload: 'node-options',
        env: {
          LAUNCH_DELAY_MS: '1500',
          DATALAB_MANAGEMENT_IDLE_BIND_MS: '200',
          LAUNCH_STAY: '1',
          LAUNCH_SCRIPT: join(FIXTURES, 'plain-http-app.mjs'),
        },
      });
      const spawned = jsonLine<{ launcher: number; app: number }>(app.stdout, 'spawned');
      assert.ok(spawned);
      extraPids.push(spawned.app);
      const pidAnswering = async () => {
        const s = await app?.scrape();
        return s && pidOf(s);
      };
      await until('the application answering', async () =>
        (await pidAnswering()) === spawned.app ? true : undefined,
      );
      process.kill(spawned.app, 'SIGKILL');
      await until('the launcher answering again', async () =>
        (await pidAnswering()) === spawned.launcher ? true : undefined,
      );
      assert.deepEqual(app.warnings(), []);
    });

    it('hands the port over to nothing but a descendant holding its secret, over loopback', async () => {
      // A worker holding the port while a child runs: a client naming that child's PID (what
      // anyone can guess) must not make it give the port up.
      app = await startApp({
        fixture: 'queue-worker.cjs',
        env: { CHILD_MS: '30000', DATALAB_MANAGEMENT_IDLE_BIND_MS: '200' },
        waitForMetrics: false,
      });
      const child = jsonLine<{ pid: number }>(app.stdout, 'child');
      assert.ok(child?.pid);
      extraPids.push(child.pid);
      await until('/metrics of the worker', async () =>
        (await scrape(app?.metricsPort ?? 0)).status === 200 ? true : undefined,
      );
      for (const header of [String(child.pid), `${child.pid} ${app.pid}:${'0'.repeat(32)}`]) {
        const res = await fetch(`http://127.0.0.1:${app.metricsPort}/-/handover`, {
          headers: { 'x-datalab-handover': header },
        });
        assert.equal(res.status, 409, header);
      }
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await scrape(app.metricsPort)).status, 200, 'the worker still answers');
    });
  });

  describe('a process that listens on nothing', () => {
    it('binds after DATALAB_MANAGEMENT_IDLE_BIND_MS while a child without Node.js runs (Chrome, ffmpeg)', async () => {
      app = await startApp({
        fixture: 'queue-worker.cjs',
        env: { CHILD_MS: '30000', DATALAB_MANAGEMENT_IDLE_BIND_MS: '200' },
        waitForMetrics: false,
      });
      const child = jsonLine<{ pid: number }>(app.stdout, 'child');
      assert.ok(child?.pid);
      extraPids.push(child.pid);
      const health = await until(
        '/health of the worker',
        async () => {
          const res = await fetch(`http://127.0.0.1:${app?.metricsPort}/health`);
          return res.status;
        },
        5_000,
      );
      assert.equal(health, 200);
      assert.equal(jsonLine(app.stdout, 'child-exited'), undefined, 'the child still runs');
      assert.deepEqual(app.warnings(), []);
    });

    it('binds after DATALAB_MANAGEMENT_IDLE_BIND_MS, once the child that loads the preload has exited', async () => {
      app = await startApp({
        fixture: 'queue-worker.cjs',
        env: { CHILD_MS: '1500', CHILD_PRELOAD: '1', DATALAB_MANAGEMENT_IDLE_BIND_MS: '400' },
        waitForMetrics: false,
      });
      const started = jsonLine<{ at: number }>(app.stdout, 'listening');
      assert.ok(started);
      await new Promise((r) => setTimeout(r, 700));
      await assert.rejects(scrape(app.metricsPort), 'no port while the child runs');
      const samples = await until('/metrics of the queue worker', async () => {
        const res = await scrape(app?.metricsPort ?? 0);
        return res.status === 200 ? parsePrometheusText(res.text) : undefined;
      });
      assert.equal(pidOf(samples), app.pid);
      await until('the child exit line', async () =>
        jsonLine(app?.stdout ?? [], 'child-exited') ? true : undefined,
      );
      assert.deepEqual(app.warnings(), []);
    });

    it('binds after a bounded wait while a child that loads the preload never exits', async () => {
      app = await startApp({
        fixture: 'queue-worker.cjs',
        env: { CHILD_MS: '30000', CHILD_PRELOAD: '1', DATALAB_MANAGEMENT_IDLE_BIND_MS: '200' },
        waitForMetrics: false,
      });
      const child = jsonLine<{ pid: number }>(app.stdout, 'child');
      assert.ok(child?.pid);
      extraPids.push(child.pid);
      await new Promise((r) => setTimeout(r, 700));
      await assert.rejects(scrape(app.metricsPort), 'no port while the child may still serve');
      const samples = await until(
        '/metrics of the worker',
        async () => {
          const res = await scrape(app?.metricsPort ?? 0);
          return res.status === 200 ? parsePrometheusText(res.text) : undefined;
        },
        5_000,
      );
      assert.equal(pidOf(samples), app.pid);
      assert.equal(jsonLine(app.stdout, 'child-exited'), undefined, 'the child still runs');
    });
  });

  describe('the application asks for the management port', () => {
    it('an application listening on the metrics port at start gets it', async () => {
      const port = await freePort();
      app = await startApp({
        fixture: 'port-clash-app.mjs',
        env: {
          DATALAB_METRICS_PORT: String(port),
          PORT: String(port),
          ADMIN_PORT: String(await freePort()),
        },
        waitForMetrics: false,
      });
      assert.equal(app.port, port);
      assert.equal((await get(port, '/metrics')).body, 'main /metrics');
      await new Promise((r) => setTimeout(r, 200));
      const warnings = app.warnings();
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0] as string, new RegExp(`^DLOTEL_PORT_YIELDED: .*port ${port}`));
    });

    it('a server the application opens on the port later gets it from the running distro', async () => {
      const port = await freePort();
      app = await startApp({
        fixture: 'port-clash-app.mjs',
        env: {
          DATALAB_METRICS_PORT: String(port),
          ADMIN_PORT: String(port),
          ADMIN_DELAY_MS: '500',
        },
        waitForMetrics: false,
      });
      assert.equal((await get(port, '/x')).body, 'admin /x');
      const warnings = app.warnings();
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0] as string, /^DLOTEL_PORT_YIELDED: /);
    });
  });

  it('a port taken at start-up is retried in the background until it frees, one warning', async () => {
    const port = await freePort();
    const job: Server = createServer((_req, res) => res.writeHead(503).end('one-off job'));
    await new Promise<void>((r) => job.listen(port, '127.0.0.1', r));
    try {
      app = await startApp({
        fixture: 'plain-http-app.mjs',
        env: { DATALAB_METRICS_PORT: String(port) },
        waitForMetrics: false,
      });
      assert.equal(await request(app.url('/users/1')), 200);
      await until('the warning', async () => (app?.warnings().length ? true : undefined));
      assert.equal((await scrape(port)).text, 'one-off job');
    } finally {
      await new Promise((r) => job.close(r));
      job.closeAllConnections();
    }
    const samples = await until('/metrics after the job', async () => {
      const res = await scrape(port);
      return res.status === 200 ? parsePrometheusText(res.text) : undefined;
    });
    assert.equal(sumOf(samplesNamed(samples, 'http_requests_total')), 1);
    const warnings = app.warnings();
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0] as string, /^DLOTEL_PORT_UNAVAILABLE: .*EADDRINUSE.*retrying/);
  });
});
