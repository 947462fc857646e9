/**
 * The operations bundle against the real thing: Prometheus (the Debian binary) runs the shipped
 * collector/prometheus.yml and rules, with only the scrape targets rewritten to this test's
 * ports and the intervals shortened, scraping two services under the preload:
 *
 *   api-gateway  test/fixtures/ops-app.mjs (Express + pg): 25% 5xx, 25% of requests 2.6 s,
 *                database queries, a 404 (`__unmatched__`), and a scanner of a handler outside
 *                Express past DATALAB_MAX_ENDPOINTS=5 (endpoint overflow);
 *   ai-service   test/fixtures/plain-http-app.mjs (node:http): fast, no errors, its database
 *                health check pointed at a closed port.
 *
 * The other targets of prometheus.yml point at closed local ports (they are down), and the
 * Alertmanager target at an HTTP server in this test. Then every dashboard target and every rule
 * expression is evaluated through the HTTP API, the alerts the traffic should fire fire (and
 * reach Alertmanager), the others stay silent, and the dashboard's error-rate and request-rate
 * panels equal what was sent.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type AppProcess, freePort, request, startApp } from '../support/app';
import {
  alertRules,
  dashboardTargets,
  loadDashboard,
  loadRules,
  RULES_DIR,
  readCollectorFile,
  readYamlMap,
} from '../support/prometheus-bundle';
import { substituteGrafanaVariables, withBool } from '../support/prometheus-promql';
import {
  type PrometheusServer,
  type PromSample,
  requirePrometheusTool,
  rewritePrometheusConfig,
  startPrometheus,
} from '../support/prometheus-server';
import { isMap, type YamlValue } from '../support/prometheus-yaml';

const GATEWAY = 'api-gateway';
const AI = 'ai-service';
/** Rate window substituted for Grafana's $__rate_interval: inside the steady traffic. */
const WINDOW_S = 15;
const TRAFFIC_S = 20;
const PER_SECOND = 10;
const SLOW_MS = 2600;
const MISSING_HEALTH_METRIC = "health_check_status is missing from the fixtures' /metrics";

interface Completed {
  readonly service: string;
  readonly status: number;
  readonly at: number;
}

/** Every `host:port` target in prometheus.yml (scrape jobs and Alertmanager). */
function shippedTargets(): string[] {
  const out: string[] = [];
  const walk = (value: YamlValue) => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (isMap(value)) {
      for (const [k, v] of Object.entries(value)) {
        if (k === 'targets' && Array.isArray(v)) out.push(...v.map(String));
        else walk(v);
      }
    }
  };
  walk(readYamlMap('prometheus.yml'));
  return out;
}

interface FakeAlertmanager {
  readonly port: number;
  readonly alerts: { labels: Record<string, string>; annotations: Record<string, string> }[];
  close(): Promise<void>;
}

async function startFakeAlertmanager(): Promise<FakeAlertmanager> {
  const alerts: FakeAlertmanager['alerts'] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      if (req.method === 'POST' && req.url?.endsWith('/alerts')) {
        alerts.push(...(JSON.parse(body) as FakeAlertmanager['alerts']));
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return {
    port: (server.address() as AddressInfo).port,
    alerts,
    close: () =>
      new Promise((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** The scrape job of a shipped target. */
function jobOf(target: string): string {
  for (const job of (readYamlMap('prometheus.yml').scrape_configs as YamlValue[]) ?? []) {
    if (!isMap(job)) continue;
    for (const sc of (job.static_configs as YamlValue[]) ?? []) {
      if (isMap(sc) && Array.isArray(sc.targets) && sc.targets.includes(target)) {
        return String(job.job_name);
      }
    }
  }
  throw new Error(`${target} is in no scrape job`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function byService(samples: readonly PromSample[]): Map<string, number> {
  return new Map(samples.map((s) => [s.metric.service as string, Number(s.value[1])]));
}

describe('operations bundle end to end: Prometheus, rules and dashboard on instrumented services', function () {
  this.timeout(120_000);

  let gateway: AppProcess | undefined;
  let ai: AppProcess | undefined;
  let prometheus: PrometheusServer | undefined;
  let alertmanager: FakeAlertmanager | undefined;
  /** Two services the fixtures call (outbound metrics); the gateway's peer cap is 1. */
  const dependencies: Server[] = [];
  const dependencyPeers: string[] = [];
  const downTargets: string[] = [];
  /** End of the steady traffic, in seconds since the epoch: every query is evaluated there. */
  let evalAt = 0;
  const completed: Completed[] = [];
  let healthMetricServed = false;
  let startedAt = 0;

  const query = (expr: string) => (prometheus as PrometheusServer).query(expr, evalAt);

  before(async function () {
    startedAt = Date.now();
    const binary = requirePrometheusTool(this, 'prometheus');
    const closedPg = await freePort();
    alertmanager = await startFakeAlertmanager();
    const dependencyUrls: string[] = [];
    for (let i = 0; i < 2; i++) {
      const server = createServer((_req, res) => res.writeHead(200).end('ok'));
      await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
      dependencies.push(server);
      const peer = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      dependencyPeers.push(peer);
      dependencyUrls.push(`http://${peer}/status`);
    }
    [gateway, ai] = await Promise.all([
      startApp({
        fixture: 'ops-app.mjs',
        env: {
          OTEL_SERVICE_NAME: GATEWAY,
          DATALAB_MAX_ENDPOINTS: '5',
          OTEL_TRACES_EXPORTER: 'none',
          // The second dependency is past the cap: peer="__overflow__".
          DATALAB_MAX_PEERS: '1',
          DEPENDENCY_URLS: dependencyUrls.join(','),
        },
      }),
      startApp({
        fixture: 'plain-http-app.mjs',
        env: {
          OTEL_SERVICE_NAME: AI,
          PGPORT: String(closedPg),
          OTEL_TRACES_EXPORTER: 'none',
          DEPENDENCY_URLS: dependencyUrls[0] as string,
        },
      }),
    ]);

    const targets: Record<string, string> = {};
    for (const target of shippedTargets()) {
      if (target === 'api-gateway:9464') targets[target] = `127.0.0.1:${gateway.metricsPort}`;
      else if (target === 'ai-service:9464') targets[target] = `127.0.0.1:${ai.metricsPort}`;
      else if (target === 'alertmanager:9093') targets[target] = `127.0.0.1:${alertmanager.port}`;
      else {
        targets[target] = `127.0.0.1:${await freePort()}`;
        downTargets.push(target);
      }
    }
    const config = rewritePrometheusConfig(readCollectorFile('prometheus.yml'), targets, '1s');
    prometheus = await startPrometheus(binary, config, { rules: RULES_DIR });

    // Warm-up: every series the traffic will move exists before the measured window (a counter's
    // first sample carries no increase), a request Express routes nowhere (`__unmatched__`), and
    // a scanner of the handler outside Express overflows the endpoint cap.
    const routes = ['/users/1', '/error', '/slow/10', '/db', '/no-such-route'];
    const scanner = [
      '/.env',
      '/wp-login.php',
      '/admin/config.bak',
      '/phpinfo.php',
      '/.git/HEAD',
    ].map((path) => `/legacy${path}`);
    const pastTheCap = ['/server-status', '/cgi-bin/test.cgi', '/actuator/env'].map(
      (path) => `/legacy${path}`,
    );
    await Promise.all([
      ...routes.map((path) => request(gateway?.url(path) ?? '')),
      ...scanner.map((path) => request(gateway?.url(path) ?? '')),
      request(ai.url('/users/1')),
    ]);
    for (const path of pastTheCap) await request(gateway.url(path));
    // Route templates, __unmatched__ (the cap of 5 leaves it out: it is no path), the 5 scanner
    // paths the cap admits, and __overflow__.
    const gatewaySeries = routes.length + scanner.length + 1;
    const deadline = Date.now() + 20_000;
    for (;;) {
      const seen = byService(
        await prometheus.query(
          `count by (service) (http_requests_total{service=~"${GATEWAY}|${AI}"})`,
        ),
      );
      if (seen.get(GATEWAY) === gatewaySeries && seen.has(AI)) break;
      if (Date.now() > deadline) {
        throw new Error(`Prometheus never saw the fixtures' series: ${JSON.stringify([...seen])}`);
      }
      await sleep(250);
    }
    await sleep(2_500);

    // Steady traffic: PER_SECOND requests per second to each service for TRAFFIC_S seconds.
    const t0 = Date.now();
    const inFlight: Promise<void>[] = [];
    const send = (service: string, url: string) =>
      inFlight.push(
        request(url).then((status) => {
          completed.push({ service, status, at: Date.now() });
        }),
      );
    const total = TRAFFIC_S * PER_SECOND;
    for (let i = 0; i < total; i++) {
      const due = t0 + (i * 1000) / PER_SECOND;
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      const kind = i % 4;
      const path =
        kind === 0
          ? '/error'
          : kind === 1
            ? `/slow/${SLOW_MS}`
            : kind === 2
              ? `/users/${i}`
              : '/db';
      send(GATEWAY, gateway.url(path));
      send(AI, ai.url(`/users/${i}`));
    }
    evalAt = Date.now() / 1000;
    await Promise.all(inFlight);
    // Let Prometheus scrape past evalAt and evaluate the rules there.
    await sleep(Math.max(0, evalAt * 1000 + 2_000 - Date.now()));
    healthMetricServed = (await ai.scrapeText()).includes('health_check_status{');
    assert.ok(healthMetricServed, MISSING_HEALTH_METRIC);
  });

  after(async () => {
    await prometheus?.stop();
    await Promise.all([gateway?.stop(), ai?.stop(), alertmanager?.close()]);
    for (const server of dependencies) {
      server.closeAllConnections();
      server.close();
    }
    if (startedAt > 0) {
      console.log(`      operations e2e took ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
    }
  });

  /** What was sent, as the client saw it, over the rate window ending at evalAt. */
  function sentInWindow(service: string): { total: number; errors: number } {
    const from = (evalAt - WINDOW_S) * 1000;
    const inWindow = completed.filter(
      (c) => c.service === service && c.at > from && c.at <= evalAt * 1000,
    );
    return { total: inWindow.length, errors: inWindow.filter((c) => c.status >= 500).length };
  }

  const grafanaVars = {
    service: '.+',
    datasource: 'prometheus',
    __rate_interval: `${WINDOW_S}s`,
  };

  it('evaluates every recording and alerting rule without error (rule health in Prometheus)', async () => {
    const groups = await (prometheus as PrometheusServer).rules();
    const loaded = groups.flatMap((g) => g.rules);
    const shipped = loadRules();
    assert.deepEqual(
      loaded.map((r) => r.name).sort(),
      shipped.map((r) => r.alert ?? r.record).sort(),
      'Prometheus loaded exactly the rules the YAML reader sees',
    );
    for (const rule of loaded) {
      assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError ?? rule.health}`);
      assert.ok(!rule.lastError, `${rule.name}: ${rule.lastError}`);
    }
  });

  it('every recording rule returns a series for both services', async () => {
    for (const rule of loadRules().filter((r) => r.record)) {
      const services = byService(await query(rule.expr));
      for (const s of [GATEWAY, AI]) {
        assert.ok(services.has(s), `${rule.record} has no series for ${s}`);
        assert.ok(
          Number.isFinite(services.get(s)),
          `${rule.record}{service="${s}"} = ${services.get(s)}`,
        );
      }
    }
  });

  it('every alert expression matches the real series (returns series with its comparisons as bool)', async () => {
    for (const rule of alertRules()) {
      const result = await query(withBool(rule.expr));
      assert.ok(result.length > 0, `${rule.alert}: ${withBool(rule.expr)} returned nothing`);
      const services = new Set(result.map((s) => s.metric.service).filter(Boolean));
      const jobs = new Set(result.map((s) => s.metric.job).filter(Boolean));
      assert.ok(
        services.has(GATEWAY) || services.has(AI) || jobs.has(GATEWAY) || jobs.has(AI),
        `${rule.alert}: no series of the fixture services in ${JSON.stringify(result)}`,
      );
    }
  });

  it('alerts fire where the traffic should fire them, and stay silent elsewhere', async () => {
    const fired = async (alert: string) => {
      const rule = alertRules().find((r) => r.alert === alert);
      assert.ok(rule, alert);
      return query(rule.expr);
    };
    for (const alert of [
      'HighErrorRate',
      'HighResponseTime',
      'EndpointCardinalityOverflow',
      'SLOAvailabilityBudgetBurnFast',
      'SLOAvailabilityBudgetBurnSlow',
      'SLOLatencyBudgetBurnFast',
      'SLOLatencyBudgetBurnSlow',
    ]) {
      const services = [...byService(await fired(alert)).keys()];
      assert.deepEqual(services, [GATEWAY], `${alert} fires for ${GATEWAY} only`);
    }
    for (const alert of [
      'HighMemoryUsage',
      'DatabaseConnectionHigh',
      'AIServiceProcessingDelay',
      'EventLoopLagHigh',
      'ServiceRestarting',
    ]) {
      assert.deepEqual(await fired(alert), [], `${alert} stays silent`);
    }
    const down = (await fired('ServiceDown')).map((s) => s.metric.job).sort();
    const expectedDown = downTargets.map(jobOf).sort();
    assert.ok(expectedDown.length >= 8, expectedDown.join(', '));
    assert.deepEqual(down, expectedDown, 'ServiceDown: exactly the targets that are not running');
  });

  it('fires CriticalHealthCheckFailing for the service whose database is unreachable', async () => {
    const rule = alertRules().find((r) => r.alert === 'CriticalHealthCheckFailing');
    const result = await query(rule?.expr ?? '');
    assert.deepEqual(
      result.map((s) => `${s.metric.service} ${s.metric.check}`),
      [`${AI} database`],
    );
    const status = await query(`health_check_status{service="${GATEWAY}", check="database"}`);
    assert.equal(status[0]?.value[1], '1', `${GATEWAY} database check healthy`);
  });

  it('sends the firing alerts to Alertmanager with severity and runbook link', async () => {
    const received = (alertmanager as FakeAlertmanager).alerts;
    for (const name of [
      'SLOAvailabilityBudgetBurnFast',
      'SLOLatencyBudgetBurnFast',
      'EndpointCardinalityOverflow',
    ]) {
      const alert = received.find(
        (a) => a.labels.alertname === name && a.labels.service === GATEWAY,
      );
      assert.ok(
        alert,
        `${name} reached Alertmanager (got ${[...new Set(received.map((a) => a.labels.alertname))]})`,
      );
      assert.ok(alert.labels.severity, `${name} severity`);
      assert.match(alert.annotations.runbook_url ?? '', new RegExp(`#${name.toLowerCase()}$`));
    }
  });

  it('the Dependencies row: every service calls by peer, the gateway second peer past its cap', async () => {
    const target = dashboardTargets(loadDashboard()).find(
      (t) => t.panelTitle === 'Outbound call rate by peer and status',
    );
    assert.ok(target, 'the outbound call rate panel');
    const result = await query(substituteGrafanaVariables(target.expr, grafanaVars));
    const seen = result
      .filter((s) => Number(s.value[1]) > 0)
      .map((s) => `${s.metric.service} ${s.metric.peer} ${s.metric.status}`)
      .sort();
    assert.deepEqual(seen, [
      `${AI} ${dependencyPeers[0]} 200`,
      `${GATEWAY} ${dependencyPeers[0]} 200`,
      `${GATEWAY} __overflow__ 200`,
    ]);
  });

  it('every dashboard target returns data; error-rate and request-rate panels equal what was sent', async () => {
    const dashboard = loadDashboard();
    let evaluated = 0;
    for (const target of dashboardTargets(dashboard)) {
      const expr = substituteGrafanaVariables(target.expr, grafanaVars);
      const result = await query(expr);
      assert.ok(
        result.length > 0,
        `${target.panelTitle} ${target.refId} returned nothing: ${expr}`,
      );
      for (const s of result) {
        assert.ok(
          Number.isFinite(Number(s.value[1])),
          `${target.panelTitle}: ${JSON.stringify(s)}`,
        );
      }
      evaluated++;
    }
    assert.ok(evaluated >= 15, `${evaluated} targets evaluated`);

    const target = (title: string) => {
      const t = dashboardTargets(dashboard).find((x) => x.panelTitle === title);
      assert.ok(t, title);
      return substituteGrafanaVariables(t.expr, grafanaVars);
    };
    const errorRates = byService(await query(target('Error Rates')));
    const requestRates = byService(await query(target('Request Rate')));
    const measurements: string[] = [];
    for (const service of [GATEWAY, AI]) {
      const sent = sentInWindow(service);
      const sentRatio = sent.errors / sent.total;
      const panel = errorRates.get(service);
      assert.ok(panel !== undefined, `Error Rates has a point for ${service}`);
      measurements.push(
        `${service}: error-rate panel ${panel.toFixed(4)} vs sent ${sentRatio.toFixed(4)} ` +
          `(${sent.errors}/${sent.total}); request-rate panel ` +
          `${requestRates.get(service)?.toFixed(2)}/s vs sent ${(sent.total / WINDOW_S).toFixed(2)}/s`,
      );
      if (sentRatio === 0) assert.equal(panel, 0, `${service}: 0, not absent, without 5xx`);
      else {
        assert.ok(
          Math.abs(panel - sentRatio) <= 0.1 * sentRatio,
          `${service}: ${measurements.at(-1)}`,
        );
      }
      const rate = requestRates.get(service) as number;
      const sentRate = sent.total / WINDOW_S;
      assert.ok(Math.abs(rate - sentRate) <= 0.1 * sentRate, `${service}: ${measurements.at(-1)}`);
    }
    console.log(`      ${measurements.join('\n      ')}`);
    assert.ok(
      Math.abs((errorRates.get(GATEWAY) as number) - 0.25) <= 0.025,
      'a quarter of the traffic failed',
    );

    const p95 = byService(
      (await query(target('Response Times (P95)'))).filter((s) => s.metric.service),
    );
    const gatewayP95 = p95.get(GATEWAY) as number;
    assert.ok(
      gatewayP95 > 2.5 && gatewayP95 <= 5,
      `P95 of ${GATEWAY} in the 2.5-5 s bucket: ${gatewayP95}`,
    );
    assert.ok((p95.get(AI) as number) < 0.1, `P95 of ${AI}: ${p95.get(AI)}`);
  });

  it("the dashboard's service variable lists both services", async () => {
    const values = await (prometheus as PrometheusServer).api<string[]>(
      `/api/v1/label/service/values?match[]=${encodeURIComponent('http_requests_total')}`,
    );
    assert.ok(values.includes(GATEWAY) && values.includes(AI), JSON.stringify(values));
  });
});
