/**
 * The shipped Collector configs run for real, on the project's own Collector distribution
 * (datalab-otelcol, `npm run collector:build`):
 *
 *   - `validate` accepts both configs and rejects a copy with one misspelled key;
 *   - the agent path against the direct path: a fixture service pushes OTLP to the agent while its
 *     own /metrics is scraped; one real Prometheus scrapes the service, another the agent's
 *     exporter (each with the shipped prometheus.yml and rules). Every distro metric compares
 *     equal (name, type, label names, bucket bounds, values after the same traffic) but for the
 *     differences docs/metrics.md lists; the dashboard's and the rules' expressions return the
 *     same values on both; a 1-minute rate() on the Collector path has no gap or zero dip;
 *   - the gateway: demo services → agent → gateway → the trace file `datalab-otel trace` reads;
 *     the Collectors' own metrics and health_check; the gateway stopped for 20 s under traffic.
 *
 * Time is scaled: Prometheus scrapes every 1 s instead of the shipped 15 s, and every interval
 * the shipped setup derives from the scrape interval (the services' push interval, Grafana's
 * 1-minute $__rate_interval) is divided by the same factor.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AppProcess, freePort, ROOT, request, startApp } from '../support/app';
import {
  type CollectorPorts,
  type CollectorProcess,
  collectorPorts,
  OTELCOL,
  requireCollector,
  scrapeText,
  shippedConfig,
  startCollector,
} from '../support/otelcol';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';
import {
  COLLECTOR,
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
  run,
  startPrometheus,
} from '../support/prometheus-server';
import { isMap } from '../support/prometheus-yaml';
import { skipBecause } from '../support/skip';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The shipped scrape interval (prometheus.yml, global) over the test's 1 s. */
function shippedScrapeSeconds(): number {
  const m = /^\s*scrape_interval:\s*(\d+)s\s*$/m.exec(readCollectorFile('prometheus.yml'));
  assert.ok(m, 'prometheus.yml has a global scrape_interval in seconds');
  return Number(m[1]);
}

/** The push interval the agent config tells services to use (its header), in ms. */
function shippedPushIntervalMs(): number {
  const m = /OTEL_METRIC_EXPORT_INTERVAL=(\d+)/.exec(readCollectorFile('otelcol-agent.yaml'));
  assert.ok(m, 'otelcol-agent.yaml names the OTEL_METRIC_EXPORT_INTERVAL services push with');
  return Number(m[1]);
}

/** The shipped prometheus.yml without the scrape jobs named (the other path's). */
function withoutJobs(jobs: readonly string[]): string {
  const out: string[] = [];
  let dropping = false;
  for (const line of readCollectorFile('prometheus.yml').split('\n')) {
    const job = /^ {2}- job_name: (\S+)/.exec(line);
    if (job) dropping = jobs.includes(job[1] as string);
    else if (/^ {0,2}\S/.test(line)) dropping = false;
    if (!dropping) out.push(line);
  }
  return out.join('\n');
}

/** Every `host:port` target of a prometheus.yml text (scrape jobs and Alertmanager). */
function targetsOf(text: string): string[] {
  return [...text.matchAll(/^\s*-?\s*targets:\s*\[([^\]]*)\]/gm)].flatMap((m) =>
    (m[1] as string).split(',').map((t) => t.trim().replace(/^['"]|['"]$/g, '')),
  );
}

/**
 * The shipped prometheus.yml for one path: the other path's jobs left out (a service is scraped
 * one way, docs/operations.md), `live` targets rewritten and every other one closed.
 */
async function prometheusConfig(
  live: Readonly<Record<string, number>>,
  drop: readonly string[],
): Promise<string> {
  const text = withoutJobs(drop);
  const closed = await freePort();
  const targets: Record<string, string> = {};
  for (const target of targetsOf(text)) targets[target] = `127.0.0.1:${live[target] ?? closed}`;
  return rewritePrometheusConfig(text, targets, '1s');
}

/** Labels as a stable key, without the ones named. */
function labelKey(metric: Record<string, string>, without: readonly string[]): string {
  return JSON.stringify(
    Object.entries(metric)
      .filter(([k]) => !without.includes(k))
      // Prometheus 2 keeps a bucket bound as the exposition spells it: `1.0` from the distro's
      // OpenMetrics form (docs/metrics.md), `1` from the Collector's text form. Same bucket.
      .map(([k, v]) => [k, k === 'le' ? String(Number(v)) : v])
      .sort(([a], [b]) =>
        (a as string) < (b as string) ? -1 : (a as string) > (b as string) ? 1 : 0,
      ),
  );
}

describe('datalab-otelcol: validate', function () {
  this.timeout(60_000);

  it('accepts both shipped configs, and rejects a copy with one misspelled key', async function () {
    const binary = requireCollector(this);
    for (const file of ['otelcol-agent.yaml', 'otelcol-gateway.yaml']) {
      const result = await run(binary, ['validate', `--config=${join(COLLECTOR, file)}`]);
      assert.equal(result.code, 0, `${file}: ${result.stdout}${result.stderr}`);
    }
    const dir = mkdtempSync(join(tmpdir(), 'datalab-otelcol-validate-'));
    try {
      const text = readCollectorFile('otelcol-agent.yaml');
      assert.ok(text.includes('    check_interval: 1s\n'));
      const broken = join(dir, 'agent.yaml');
      writeFileSync(broken, text.replace('    check_interval: 1s\n', '    check_intervall: 1s\n'));
      const result = await run(binary, ['validate', `--config=${broken}`]);
      assert.notEqual(result.code, 0, 'a misspelled key is rejected');
      assert.match(`${result.stdout}${result.stderr}`, /check_intervall/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('holds exactly the components the shipped configs use, and states its version', async function () {
    const binary = requireCollector(this);
    if (binary !== OTELCOL) {
      skipBecause(
        this,
        `DATALAB_OTELCOL names another Collector build (${binary}): not datalab-otelcol`,
      );
    }
    const used = new Map<string, Set<string>>();
    for (const file of ['otelcol-agent.yaml', 'otelcol-gateway.yaml']) {
      const config = readYamlMap(file);
      for (const kind of ['receivers', 'processors', 'exporters', 'extensions', 'connectors']) {
        const section = config[kind];
        if (!isMap(section)) continue;
        const set = used.get(kind) ?? new Set<string>();
        for (const id of Object.keys(section)) set.add(id.split('/')[0] as string);
        used.set(kind, set);
      }
    }
    const result = await run(binary, ['components']);
    assert.equal(result.code, 0, result.stderr);
    // `components` prints YAML: a section per kind, then `- name: <type>` per component.
    const built = new Map<string, Set<string>>();
    let kind = '';
    for (const line of result.stdout.split('\n')) {
      const section = /^([a-z]+):\s*$/.exec(line);
      if (section) kind = section[1] as string;
      const name = /^\s*- name: (\S+)\s*$/.exec(line);
      if (
        name &&
        ['receivers', 'processors', 'exporters', 'extensions', 'connectors'].includes(kind)
      ) {
        const set = built.get(kind) ?? new Set<string>();
        set.add(name[1] as string);
        built.set(kind, set);
      }
    }
    for (const k of ['receivers', 'processors', 'exporters', 'extensions', 'connectors']) {
      assert.deepEqual(
        [...(built.get(k) ?? [])].sort(),
        [...(used.get(k) ?? [])].sort(),
        `${k} of datalab-otelcol = ${k} of the shipped configs`,
      );
    }
    const version = await run(binary, ['--version']);
    assert.equal(version.code, 0, version.stderr);
    const manifest = readCollectorFile('distribution/builder-config.yaml');
    const stated = /^\s*version: (\S+)$/m.exec(manifest)?.[1];
    assert.ok(stated, 'the manifest sets dist.version');
    assert.match(
      version.stdout,
      new RegExp(`datalab-otelcol version ${stated.replace(/\./g, '\\.')}`),
    );
    const operations = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');
    assert.ok(operations.includes(stated), `docs/operations.md states the release ${stated}`);
    console.log(`      ${version.stdout.trim()}`);
  });
});

const SERVICE = 'api-gateway';
/** A second service pushing at the SDK's default interval: the problem the shipped one fixes. */
const DEFAULT_INTERVAL_SERVICE = 'data-service';
const SDK_DEFAULT_PUSH_MS = 60_000;
/** That service's service.namespace: through the agent, its job is `<namespace>/<name>`. */
const NAMESPACE = 'shop';
const TRAFFIC_S = 20;
/**
 * $__rate_interval for comparing values: 4 scaled seconds hold about 8 requests per endpoint, so
 * one request more or less in a window (the two paths sample at different moments) would move a
 * rate by 13%; 15 s hold about 40.
 */
const COMPARE_WINDOW_S = 15;
const PER_SECOND = 10;
/**
 * Values read at collection (resident memory, event loop, heap, GC, the process_* series): each
 * path collects at its own moment (a scrape of /metrics, a push), so these are compared as
 * series, not as values.
 */
const SAMPLED = /^(memory_usage_bytes|nodejs_.+|process_.+)$/;
/**
 * Series Prometheus itself adds to every target or writes from the rules, and the resource
 * series: compared apart.
 */
const NOT_DISTRO = /^(up|scrape_.+|target_info|ALERTS|ALERTS_FOR_STATE)$/;

/** Histogram series names to their family (the name the metadata API uses). */
function family(name: string): string {
  return name.replace(/_(bucket|sum|count)$/, '');
}

describe('datalab-otelcol agent: the same metrics on the Collector path as on /metrics', function () {
  this.timeout(240_000);

  let agent: CollectorProcess | undefined;
  let app: AppProcess | undefined;
  let slowPush: AppProcess | undefined;
  let direct: PrometheusServer | undefined;
  let viaAgent: PrometheusServer | undefined;
  let scale = 15;
  let windowS = 4;
  let pushMs = 1000;
  let steadyFrom = 0;
  let steadyTo = 0;
  const statuses: number[] = [];

  const grafanaVars = (rateWindowS: number) => ({
    service: '.+',
    datasource: 'prometheus',
    __rate_interval: `${rateWindowS}s`,
  });

  before(async function () {
    const binary = requireCollector(this);
    const promBinary = requirePrometheusTool(this, 'prometheus');
    scale = shippedScrapeSeconds();
    pushMs = shippedPushIntervalMs() / scale;
    // Grafana's $__rate_interval is 4 scrape intervals: 1m at the shipped 15 s.
    windowS = 60 / scale;
    const ports = await collectorPorts();
    agent = await startCollector(binary, shippedConfig('otelcol-agent.yaml', ports), ports, {
      DATALAB_GATEWAY_ENDPOINTS: `[127.0.0.1:${await freePort()}]`,
    });
    const otlp = {
      OTEL_METRICS_EXPORTER: 'prometheus,otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${ports.http}`,
      OTEL_TRACES_EXPORTER: 'none',
    };
    [app, slowPush] = await Promise.all([
      startApp({
        fixture: 'ops-app.mjs',
        env: {
          ...otlp,
          OTEL_SERVICE_NAME: SERVICE,
          OTEL_METRIC_EXPORT_INTERVAL: String(pushMs),
          // A collection older than the cached health report starts a health run, whose database
          // check is a PostgreSQL query the database metrics count: at the default (1 s) the
          // counters would keep moving between a scrape and a push after the traffic. One run,
          // at the first collection, for the whole test.
          DATALAB_HEALTH_CACHE_MS: '3600000',
        },
      }),
      startApp({
        fixture: 'ops-app.mjs',
        env: {
          ...otlp,
          OTEL_SERVICE_NAME: DEFAULT_INTERVAL_SERVICE,
          OTEL_RESOURCE_ATTRIBUTES: `service.namespace=${NAMESPACE}`,
          OTEL_METRIC_EXPORT_INTERVAL: String(SDK_DEFAULT_PUSH_MS / scale),
        },
      }),
    ]);
    [direct, viaAgent] = await Promise.all([
      prometheusConfig({ 'api-gateway:9464': app.metricsPort }, [
        'otel-collector',
        'otel-collector-internal',
      ]).then((config) => startPrometheus(promBinary, config, { rules: RULES_DIR })),
      prometheusConfig({ 'otel-agent:8889': ports.exporter, 'otel-agent:8888': ports.telemetry }, [
        SERVICE,
      ]).then((config) => startPrometheus(promBinary, config, { rules: RULES_DIR })),
    ]);

    // Warm-up: every series the traffic moves exists on both paths before the steady traffic.
    const routes = ['/users/1', '/error', '/slow/10', '/db'];
    await Promise.all(
      routes.flatMap((path) => [request(app?.url(path) ?? ''), request(slowPush?.url(path) ?? '')]),
    );
    const deadline = Date.now() + 30_000;
    for (;;) {
      const onDirect = await direct.query(`http_requests_total{service="${SERVICE}"}`);
      const onAgent = await viaAgent.query(
        `http_requests_total{service=~"${SERVICE}|${DEFAULT_INTERVAL_SERVICE}"}`,
      );
      if (onDirect.length === routes.length && onAgent.length === 2 * routes.length) break;
      if (Date.now() > deadline) {
        throw new Error(
          `the series never arrived: direct ${onDirect.length}, agent ${onAgent.length}\n${agent.output.join('')}`,
        );
      }
      await sleep(250);
    }
    await sleep(2_000);

    // Steady traffic to both services.
    const t0 = Date.now();
    const inFlight: Promise<void>[] = [];
    const total = TRAFFIC_S * PER_SECOND;
    for (let i = 0; i < total; i++) {
      const wait = t0 + (i * 1000) / PER_SECOND - Date.now();
      if (wait > 0) await sleep(wait);
      const path = ['/error', '/slow/300', `/users/${i}`, '/db'][i % 4] as string;
      for (const target of [app, slowPush]) {
        inFlight.push(request(target.url(path)).then((s) => void statuses.push(s)));
      }
    }
    const t1 = Date.now();
    await Promise.all(inFlight);
    // The Collector path lags by a push interval, the agent's batch timeout and a scrape; from
    // one rate window (plus that lag) after the start, every window lies inside the traffic.
    steadyFrom = t0 / 1000 + windowS + pushMs / 1000 + 2;
    steadyTo = t1 / 1000;
  });

  after(async () => {
    await Promise.all([direct?.stop(), viaAgent?.stop()]);
    await Promise.all([app?.stop(), slowPush?.stop()]);
    await agent?.stop();
  });

  it('every distro metric compares equal: name, type, label names, bucket bounds, values', async () => {
    const d = direct as PrometheusServer;
    const a = viaAgent as PrometheusServer;
    const selector = `{job="${SERVICE}"}`;
    let diffs: string[] = [];
    let compared = 0;
    const deadline = Date.now() + 20_000;
    // The paths read the same counters at different moments (a scrape, a push): after the
    // traffic, poll until both show its end.
    for (;;) {
      const at = Date.now() / 1000;
      const [onDirect, onAgent] = await Promise.all([d.query(selector, at), a.query(selector, at)]);
      const index = (samples: readonly PromSample[]) =>
        new Map(
          samples
            .filter((s) => !NOT_DISTRO.test(s.metric.__name__ as string))
            .map((s) => [labelKey(s.metric, ['job', 'instance']), s]),
        );
      const left = index(onDirect);
      const right = index(onAgent);
      diffs = [];
      for (const [key, s] of left) {
        const other = right.get(key);
        if (!other) diffs.push(`only on /metrics: ${key}`);
        else if (SAMPLED.test(s.metric.__name__ as string)) {
          if (!Number.isFinite(Number(other.value[1]))) diffs.push(`not a number: ${key}`);
        } else if (Number(s.value[1]) !== Number(other.value[1])) {
          diffs.push(`${key}: ${s.value[1]} on /metrics, ${other.value[1]} through the agent`);
        }
      }
      for (const key of right.keys())
        if (!left.has(key)) diffs.push(`only through the agent: ${key}`);
      compared = left.size;
      if (diffs.length === 0 || Date.now() > deadline) break;
      await sleep(500);
    }
    assert.deepEqual(diffs, [], `${diffs.length} differences`);

    // Types and help texts, by family, as Prometheus recorded them from each scrape.
    type Meta = Record<string, { type: string; help: string; unit: string }[]>;
    const [metaDirect, metaAgent] = await Promise.all([
      d.api<Meta>('/api/v1/metadata'),
      a.api<Meta>('/api/v1/metadata'),
    ]);
    const families = new Set(
      (await d.query(selector))
        .map((s) => s.metric.__name__ as string)
        .filter((n) => !NOT_DISTRO.test(n))
        .map(family),
    );
    // Scraped as OpenMetrics, a counter's family is named without its `_total` (the samples keep
    // it); the Collector's text form names it with.
    const metaOf = (meta: Meta, name: string) => meta[name] ?? meta[name.replace(/_total$/, '')];
    for (const name of families) {
      assert.ok(metaOf(metaDirect, name), `metadata of ${name} on /metrics`);
      assert.deepEqual(
        metaOf(metaAgent, name)?.map((m) => m.type),
        metaOf(metaDirect, name)?.map((m) => m.type),
        `type of ${name}`,
      );
    }
    for (const name of [
      'http_requests_total',
      'http_request_duration_seconds',
      'memory_usage_bytes',
    ]) {
      assert.ok(families.has(name), `${name} was compared`);
    }
    const buckets = (await a.query(`http_request_duration_seconds_bucket{job="${SERVICE}"}`)).map(
      (s) => s.metric.le,
    );
    assert.ok(buckets.includes('0.005') && buckets.includes('+Inf'), buckets.join(' '));
    console.log(`      ${compared} series in ${families.size} families compared`);
  });

  it('job, instance and target_info differ exactly as docs/metrics.md lists', async () => {
    const d = direct as PrometheusServer;
    const a = viaAgent as PrometheusServer;
    const [directInfo] = await d.query(`target_info{job="${SERVICE}"}`);
    const agentInfo = await a.query(`target_info{job="${SERVICE}"}`);
    assert.ok(directInfo, 'target_info on /metrics');
    assert.equal(agentInfo.length, 1, 'one target_info through the agent');
    const viaInfo = agentInfo[0] as PromSample;
    const instanceId = directInfo.metric.service_instance_id as string;
    assert.ok(instanceId, 'the resource has a service.instance.id');
    // instance: the scraped address directly, service.instance.id through the agent.
    assert.equal(directInfo.metric.instance, `127.0.0.1:${app?.metricsPort}`);
    assert.equal(viaInfo.metric.instance, instanceId);
    for (const s of await a.query(`http_requests_total{job="${SERVICE}"}`)) {
      assert.equal(s.metric.instance, instanceId, 'every series: instance = service.instance.id');
      assert.equal(s.metric.job, SERVICE, 'job = service.name (no service.namespace set)');
    }
    const namespaced = await a.query(`http_requests_total{service="${DEFAULT_INTERVAL_SERVICE}"}`);
    assert.ok(namespaced.length > 0);
    for (const s of namespaced) {
      assert.equal(
        s.metric.job,
        `${NAMESPACE}/${DEFAULT_INTERVAL_SERVICE}`,
        'job with a namespace',
      );
    }
    // target_info through the agent: the resource attributes but service.name and
    // service.instance.id, which became job and instance.
    const expected = Object.fromEntries(
      Object.entries(directInfo.metric).filter(
        ([k]) => !['service_name', 'service_instance_id', 'instance'].includes(k),
      ),
    );
    expected.instance = instanceId;
    assert.deepEqual(viaInfo.metric, expected);
    // `up` is the agent's, not the service's: the service's own has no counterpart.
    assert.equal((await a.query(`up{job="${SERVICE}"}`)).length, 0);
    assert.equal((await d.query(`up{job="${SERVICE}"}`)).length, 1);
    const doc = readFileSync(join(ROOT, 'docs', 'metrics.md'), 'utf8');
    for (const phrase of ['`job`', '`instance`', '`target_info`', '`up`', 'service.instance.id']) {
      assert.ok(
        doc.split('## Through the Collector')[1]?.includes(phrase),
        `docs/metrics.md lists ${phrase} under "Through the Collector"`,
      );
    }
  });

  it("the dashboard's and the rules' expressions return the same values on both paths", async () => {
    const d = direct as PrometheusServer;
    const a = viaAgent as PrometheusServer;
    // Inside the steady traffic, once the Collector path has caught up with it.
    const at = steadyTo - 1;
    const exprs: { what: string; expr: string }[] = [];
    for (const t of dashboardTargets(loadDashboard())) {
      exprs.push({
        what: `panel "${t.panelTitle}" ${t.refId}`,
        expr: substituteGrafanaVariables(t.expr, grafanaVars(COMPARE_WINDOW_S)),
      });
    }
    for (const rule of loadRules()) {
      exprs.push({
        what: rule.alert ? `alert ${rule.alert}` : `record ${rule.record}`,
        expr: rule.alert ? withBool(rule.expr) : rule.expr,
      });
    }
    // The Collector path shows the same traffic up to a push, a batch timeout and a scrape
    // later: each value on /metrics is compared with the agent path at every moment of that lag
    // (every 0.25 s), and the closest one counts.
    const lagS = pushMs / 1000 + 2;
    const shifts = Array.from({ length: Math.round(lagS / 0.25) + 1 }, (_, i) => i * 0.25);
    let withData = 0;
    let maxDeviation = 0;
    let largest = '';
    const index = (samples: readonly PromSample[]) =>
      new Map(
        samples
          // Only this service's series: the agent also serves the default-interval service's.
          .filter(
            (s) =>
              s.metric.service === SERVICE ||
              (s.metric.service === undefined && s.metric.job === SERVICE),
          )
          .map((s) => [labelKey(s.metric, ['instance', 'job']), Number(s.value[1])]),
      );
    for (const { what, expr } of exprs) {
      const l = index(await d.query(expr, at));
      const shifted = await Promise.all(
        shifts.map(async (dt) => index(await a.query(expr, at + dt))),
      );
      const r = shifted[0] as Map<string, number>;
      // `up`: the service's own target on /metrics, the agent's through it (docs/metrics.md).
      if (/\bup\b/.test(expr)) {
        assert.equal(r.size, 0, `${what}: no ${SERVICE} up through the agent`);
        continue;
      }
      assert.deepEqual(
        [...r.keys()].sort(),
        [...l.keys()].sort(),
        `${what}: same series\n  ${expr}`,
      );
      // Values read at collection (memory, CPU, event loop, heap, GC) are compared as series: each
      // path reads them at its own moment, and the event-loop delays over the interval since
      // that reader's previous collection. Requests and connections in flight, read during the
      // traffic, agree within a few (after the traffic they compare exactly, above).
      const sampled = /memory_usage_bytes|nodejs_|process_/.test(expr);
      const inFlight = /http_requests_active|database_connections_active/.test(expr);
      // A quantile interpolates inside one bucket: one observation more or less in the window
      // (the paths' windows never line up exactly) moves it by several percent where a rate moves
      // by one. The final counts compare exactly (the test above).
      const tolerance = /histogram_quantile/.test(expr) ? 0.1 : 0.05;
      for (const [key, x] of l) {
        let best = Number.POSITIVE_INFINITY;
        let closest = Number.NaN;
        for (const values of shifted) {
          const y = values.get(key);
          if (y === undefined) continue;
          const deviation = x === y ? 0 : Math.abs(x - y) / Math.max(Math.abs(x), Math.abs(y));
          if (deviation < best) {
            best = deviation;
            closest = y;
          }
        }
        const ok =
          best <= tolerance ||
          (sampled && Number.isFinite(closest)) ||
          (inFlight && Math.abs(x - closest) <= 3);
        assert.ok(ok, `${what} ${key}: ${x} on /metrics, ${closest} through the agent\n  ${expr}`);
        if (!sampled && !inFlight && best > maxDeviation) {
          maxDeviation = best;
          largest = `${what} ${key}: ${x} / ${closest}`;
        }
      }
      if (l.size > 0) withData++;
    }
    // Every panel but the overflow one (no endpoint overflowed here) and every recording rule.
    assert.ok(withData >= 30, `${withData} of ${exprs.length} expressions returned series`);
    console.log(
      `      ${exprs.length} expressions compared, ${withData} with series; largest ` +
        `difference of a rate-based value ${(100 * maxDeviation).toFixed(1)}% (${largest})`,
    );
  });

  it('a 1-minute rate() through the agent has no gap or zero dip (and has them at the SDK default interval)', async () => {
    const a = viaAgent as PrometheusServer;
    const panel = dashboardTargets(loadDashboard()).find((t) => t.panelTitle === 'Request Rate');
    assert.ok(panel, 'the Request Rate panel');
    const expr = substituteGrafanaVariables(panel.expr, grafanaVars(windowS));
    assert.ok(
      steadyTo - steadyFrom >= 8,
      `a steady stretch to look at: ${steadyTo - steadyFrom} s`,
    );
    const step = 0.25;
    const params = new URLSearchParams({
      query: expr,
      start: String(steadyFrom),
      end: String(steadyTo),
      step: String(step),
    });
    const data = await a.api<{
      result: { metric: Record<string, string>; values: [number, string][] }[];
    }>(`/api/v1/query_range?${params}`);
    const points = Math.floor((steadyTo - steadyFrom) / step) + 1;
    const series = (service: string) =>
      data.result.find((r) => r.metric.service === service)?.values ?? [];
    const shipped = series(SERVICE);
    const sentRate = PER_SECOND;
    const low = shipped.filter(([, v]) => Number(v) < 0.5 * sentRate);
    assert.equal(shipped.length, points, `no gaps: ${shipped.length} of ${points} points`);
    assert.deepEqual(low, [], `no dips below half the sent ${sentRate}/s`);
    // The same panel for the service pushing at the SDK's default (60 s, scaled): what the
    // shipped interval is for. If this ever stops dipping, the scaling above no longer models it.
    const atDefault = series(DEFAULT_INTERVAL_SERVICE);
    const zeros = points - atDefault.filter(([, v]) => Number(v) > 0).length;
    assert.ok(
      zeros > 0,
      `the default interval shows zero or missing points: ${zeros} of ${points}`,
    );
    const min = Math.min(...shipped.map(([, v]) => Number(v)));
    console.log(
      `      ${expr}: min ${min.toFixed(2)}/s over ${points} points at ${pushMs} ms pushes; ` +
        `${zeros} of ${points} zero or missing at ${SDK_DEFAULT_PUSH_MS / scale} ms`,
    );
    assert.ok(
      statuses.every((s) => s === 200 || s === 500),
      'the traffic was served',
    );
  });
});

/** Every line of the gateway's trace files (the current one and rotated backups) as text. */
function traceFileText(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

/**
 * The samples of one otelcol_* metric of a Collector's own /metrics, summed (with or without the
 * `_total` suffix, which the Collector's telemetry has dropped and older releases add).
 */
async function ownMetric(port: number, name: string): Promise<number | undefined> {
  const text = await scrapeText(port).catch(() => '');
  const pattern = new RegExp(`^${name}(_total)?[{ ]`);
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (pattern.test(line)) {
      sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

describe('datalab-otelcol gateway: demo services → agent → gateway → the trace file', function () {
  this.timeout(240_000);
  const OUTAGE_MS = 20_000;

  let binary = '';
  let dir = '';
  let traceFile = '';
  let logs: OtlpReceiver | undefined;
  let agent: CollectorProcess | undefined;
  let gateway: CollectorProcess | undefined;
  let gatewayPorts: CollectorPorts | undefined;
  let gatewayEnv: Record<string, string> = {};
  let data: AppProcess | undefined;
  let api: AppProcess | undefined;

  before(async function () {
    binary = requireCollector(this);
    dir = mkdtempSync(join(tmpdir(), 'datalab-otelcol-gateway-'));
    mkdirSync(join(dir, 'traces'));
    traceFile = join(dir, 'traces', 'traces.jsonl');
    logs = await startOtlpReceiver();
    gatewayPorts = await collectorPorts();
    gatewayEnv = {
      // No tracing backend here: the gateway's OTLP exporter retries into its queue while the
      // file exporter beside it writes every batch.
      DATALAB_TRACES_ENDPOINT: `127.0.0.1:${await freePort()}`,
      DATALAB_LOGS_ENDPOINT: logs.url,
      DATALAB_TRACES_FILE: traceFile,
      // Every trace kept and decided quickly: this suite counts traces, not sampling
      // (gateway-tier.test.ts tests the shipped policy).
      DATALAB_SAMPLING_PERCENT: '100',
      DATALAB_SAMPLING_WAIT: '1s',
    };
    gateway = await startCollector(
      binary,
      shippedConfig('otelcol-gateway.yaml', gatewayPorts),
      gatewayPorts,
      gatewayEnv,
    );
    const agentPorts = await collectorPorts();
    agent = await startCollector(
      binary,
      shippedConfig('otelcol-agent.yaml', agentPorts),
      agentPorts,
      {
        DATALAB_GATEWAY_ENDPOINTS: `[127.0.0.1:${gatewayPorts.grpc}]`,
      },
    );
    const otlp = {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${agentPorts.http}`,
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_LOGS_EXPORTER: 'otlp',
      OTEL_BSP_SCHEDULE_DELAY: '200',
    };
    data = await startApp({
      fixture: join('..', '..', 'examples', 'data-service.mjs'),
      env: { ...otlp, OTEL_SERVICE_NAME: 'data-service', PORT: '0' },
    });
    api = await startApp({
      fixture: join('..', '..', 'examples', 'api-gateway.mjs'),
      env: {
        ...otlp,
        OTEL_SERVICE_NAME: 'api-gateway',
        PORT: '0',
        DATA_SERVICE_URL: `http://127.0.0.1:${data.port}`,
      },
    });
  });

  after(async () => {
    await Promise.all([api?.stop(), data?.stop()]);
    await agent?.stop();
    await gateway?.stop();
    await logs?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** One order lookup through both services; its status and correlation ID. */
  async function order(id: number): Promise<{ status: number; correlationId: string }> {
    const res = await fetch((api as AppProcess).url(`/api/orders/${id}`));
    await res.arrayBuffer();
    return { status: res.status, correlationId: res.headers.get('x-correlation-id') ?? '' };
  }

  async function waitForTraces(ids: readonly string[], timeoutMs: number): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = traceFileText(traceFile);
      const missing = ids.filter((id) => !text.includes(id));
      if (missing.length === 0 || Date.now() > deadline) return missing;
      await sleep(250);
    }
  }

  it('`datalab-otel trace <id> --file <gateway output>` prints the two-service tree', async () => {
    const { status, correlationId } = await order(1000 + (Date.now() % 9000));
    assert.equal(status, 200);
    assert.match(correlationId, /^[0-9a-f]{32}$/);
    const missing = await waitForTraces([correlationId], 20_000);
    assert.deepEqual(
      missing,
      [],
      `the request's spans reached ${traceFile}:\n${gateway?.output.join('')}`,
    );
    // Both services' spans are in the file once the agent forwarded both batches.
    const deadline = Date.now() + 10_000;
    let out = '';
    for (;;) {
      const cli = spawnSync(
        process.execPath,
        [join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'trace', correlationId, '--file', traceFile],
        { encoding: 'utf8' },
      );
      out = `${cli.stdout}${cli.stderr}`;
      if ((cli.status === 0 && /2 services/.test(out)) || Date.now() > deadline) break;
      await sleep(250);
    }
    console.log(out.replace(/^/gm, '      '));
    assert.match(out, /^trace [0-9a-f]{32} .*2 services/m);
    assert.match(out, /api-gateway/);
    assert.match(out, /data-service/);
    // The services' logs went the same way, to the log backend.
    await (logs as OtlpReceiver).waitFor(
      () => (logs as OtlpReceiver).logs.length > 0,
      20_000,
      'logs through agent and gateway',
    );
  });

  it("the Collectors' own metrics (:8888) and health_check answer", async () => {
    for (const [role, c] of [
      ['agent', agent],
      ['gateway', gateway],
    ] as const) {
      const ports = (c as CollectorProcess).ports;
      assert.equal(await request(`http://127.0.0.1:${ports.health}/`), 200, `${role} health_check`);
      const accepted = await ownMetric(ports.telemetry, 'otelcol_receiver_accepted_spans');
      assert.ok(
        accepted !== undefined && accepted > 0,
        `${role}: otelcol_receiver_accepted_spans ${accepted}`,
      );
    }
  });

  it('backpressure: the gateway stopped for 20 s under traffic; the agent holds, nothing is lost', async () => {
    const g = gateway as CollectorProcess;
    await g.stop();
    const during: { status: number; correlationId: string }[] = [];
    const stopAt = Date.now() + OUTAGE_MS;
    let n = 0;
    while (Date.now() < stopAt) {
      during.push(await order(20_000 + n++));
      await sleep(200);
    }
    gateway = await startCollector(
      binary,
      shippedConfig('otelcol-gateway.yaml', gatewayPorts as CollectorPorts),
      gatewayPorts as CollectorPorts,
      gatewayEnv,
    );
    const after = await order(30_000);
    assert.deepEqual(
      during.filter((r) => r.status !== 200).map((r) => r.status),
      [],
      'the service answered every request while the gateway was away',
    );
    // The agent holds them in the load_balancing exporter's per-gateway queue, which reports no
    // otelcol_exporter_queue_size (its sub-exporters get a no-op meter): what shows it held them
    // is that every trace arrives after the gateway came back.
    for (const svc of [api, data]) {
      assert.deepEqual(svc?.warnings(), [], 'the services saw no export errors');
    }
    const ids = [...during.map((r) => r.correlationId), after.correlationId];
    const missing = await waitForTraces(ids, 90_000);
    // Failed sends are retried from the queue; this counts only the spans given up on.
    const failed = await ownMetric(
      (agent as CollectorProcess).ports.telemetry,
      'otelcol_exporter_send_failed_spans',
    );
    console.log(
      `      ${during.length} requests during the outage, ${missing.length} traces missing ` +
        `afterwards, ${failed ?? 0} spans given up`,
    );
    assert.equal(failed ?? 0, 0, 'the agent gave up on no span');
    assert.deepEqual(missing, [], 'every trace sent during and after the outage arrived');
  });
});
