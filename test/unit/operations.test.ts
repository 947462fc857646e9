/**
 * The operations bundle (collector/) checked as files: promtool on the Prometheus config and
 * rules, the rule unit tests (and that they fail when an alert is broken), the Grafana
 * dashboard and provisioning, the Collector configs, Alertmanager, docker-compose.yml against
 * all of them, and a runbook section for every alert. The live end-to-end check against a real
 * Prometheus scraping instrumented services is test/e2e/operations.test.ts.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { ROOT } from '../support/app';
import {
  alertRules,
  allPanels,
  COLLECTOR,
  type Dashboard,
  dashboardTargets,
  loadDashboard,
  loadRules,
  markdownAnchors,
  readCollectorFile,
  readYamlMap,
} from '../support/prometheus-bundle';
import { substituteGrafanaVariables } from '../support/prometheus-promql';
import { findTool, requirePrometheusTool, run } from '../support/prometheus-server';
import { isMap, parseYamlMap, type YamlMap, type YamlValue } from '../support/prometheus-yaml';

const RUNBOOK_BASE = 'https://github.com/datalab/otel/blob/main/docs/runbooks.md#';

/** The Grafana variables a dashboard query is rendered with, as Grafana would for "All". */
const DASHBOARD_VARIABLES = {
  service: '.+',
  datasource: 'prometheus',
  __rate_interval: '1m',
  __interval: '15s',
  __range: '1h',
};

function asMap(value: YamlValue | undefined, what: string): YamlMap {
  assert.ok(isMap(value), `${what} is a mapping`);
  return value;
}

function asList(value: YamlValue | undefined, what: string): YamlValue[] {
  assert.ok(Array.isArray(value), `${what} is a list`);
  return value;
}

/** Writes PromQL expressions as recording rules so that promtool parses each one. */
async function assertPromqlParses(
  ctx: Mocha.Context,
  exprs: readonly { name: string; expr: string }[],
): Promise<void> {
  const promtool = requirePrometheusTool(ctx, 'promtool');
  const dir = mkdtempSync(join(tmpdir(), 'datalab-promql-'));
  try {
    const file = join(dir, 'parse.rules.yml');
    // JSON is YAML: no quoting questions.
    const groups = [
      { name: 'parse', rules: exprs.map((e, i) => ({ record: `parse:expr_${i}`, expr: e.expr })) },
    ];
    writeFileSync(file, JSON.stringify({ groups }));
    const result = await run(promtool, ['check', 'rules', file]);
    const names = exprs.map((e, i) => `  parse:expr_${i} = ${e.name}`).join('\n');
    assert.equal(
      result.code,
      0,
      `promtool rejected an expression:\n${result.stdout}${result.stderr}\n${names}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('operations bundle: Prometheus config and rules (promtool)', function () {
  this.timeout(60_000);

  it('promtool check config accepts prometheus.yml and the rule files it names', async function () {
    const promtool = requirePrometheusTool(this, 'promtool');
    const result = await run(promtool, ['check', 'config', 'prometheus.yml'], { cwd: COLLECTOR });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /SUCCESS: 2 rule files found/);
  });

  it('promtool check rules accepts both rule files', async function () {
    const promtool = requirePrometheusTool(this, 'promtool');
    const result = await run(
      promtool,
      ['check', 'rules', 'rules/recording_rules.yml', 'rules/alert_rules.yml'],
      { cwd: COLLECTOR },
    );
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });

  it('prometheus.yml: the seed jobs on the management port, the Collector with honor_labels, alerting', () => {
    const config = readYamlMap('prometheus.yml');
    assert.equal(config.alertmanager_config, undefined, 'the seed key alertmanager_config is gone');
    const alerting = asMap(config.alerting, 'alerting');
    const managers = asList(alerting.alertmanagers, 'alerting.alertmanagers');
    assert.deepEqual(
      asList(asMap(asList(asMap(managers[0], 'am').static_configs, 'sc')[0], 'sc0').targets, 't'),
      ['alertmanager:9093'],
    );
    assert.deepEqual(config.rule_files, ['rules/recording_rules.yml', 'rules/alert_rules.yml']);
    const jobs = new Map<string, YamlMap>();
    for (const job of asList(config.scrape_configs, 'scrape_configs')) {
      const j = asMap(job, 'job');
      jobs.set(String(j.job_name), j);
    }
    const targetsOf = (name: string) =>
      asList(asMap(asList(jobs.get(name)?.static_configs, name)[0], name).targets, name);
    for (const service of [
      'api-gateway',
      'data-service',
      'ai-service',
      'compute-service',
      'viz-service',
    ]) {
      assert.deepEqual(
        targetsOf(service),
        [`${service}:9464`],
        `${service} scraped on the management port`,
      );
      assert.equal(jobs.get(service)?.metrics_path, '/metrics');
    }
    assert.equal(jobs.get('api-gateway')?.scrape_interval, '10s');
    assert.equal(jobs.get('ai-service')?.scrape_interval, '30s');
    for (const [job, target] of [
      ['node-exporter', 'node-exporter:9100'],
      ['postgres-exporter', 'postgres-exporter:9187'],
      ['redis-exporter', 'redis-exporter:9121'],
    ]) {
      assert.deepEqual(targetsOf(job as string), [target]);
    }
    assert.equal(
      jobs.get('otel-collector')?.honor_labels,
      true,
      'keeps job/instance set by the exporter',
    );
    assert.deepEqual(targetsOf('otel-collector'), ['otel-agent:8889']);
  });
});

describe('operations bundle: alert rule unit tests (promtool test rules)', function () {
  this.timeout(60_000);
  const testFile = join(COLLECTOR, 'tests', 'alerts.test.yml');

  it('pass', async function () {
    const promtool = requirePrometheusTool(this, 'promtool');
    const result = await run(promtool, ['test', 'rules', testFile]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });

  it('cover every alert with a case that fires it and a case where it stays silent', () => {
    const doc = parseYamlMap(readFileSync(testFile, 'utf8'));
    const fires = new Set<string>();
    const silent = new Set<string>();
    for (const test of asList(doc.tests, 'tests')) {
      const t = asMap(test, 'test');
      const inputServices = new Set<string>();
      for (const s of asList(t.input_series, 'input_series')) {
        const series = String(asMap(s, 'series').series);
        const m = /\bservice="([^"]+)"/.exec(series) ?? /\bjob="([^"]+)"/.exec(series);
        if (m) inputServices.add(m[1] as string);
      }
      for (const c of (t.alert_rule_test as YamlValue[] | undefined) ?? []) {
        const tc = asMap(c, 'alert_rule_test');
        const name = String(tc.alertname);
        const expected = asList(tc.exp_alerts, `${name}.exp_alerts`);
        const alerted = new Set(
          expected.map((e) => {
            const labels = asMap(asMap(e, 'exp_alert').exp_labels, 'exp_labels');
            return String(labels.service ?? labels.job);
          }),
        );
        if (expected.length > 0) fires.add(name);
        if (expected.length === 0 || [...inputServices].some((s) => !alerted.has(s))) {
          silent.add(name);
        }
      }
    }
    for (const rule of alertRules()) {
      const name = rule.alert as string;
      assert.ok(fires.has(name), `${name}: no promtool case where it fires`);
      assert.ok(silent.has(name), `${name}: no promtool case where it stays silent`);
    }
  });

  /** The unit tests against a copy of the rules whose alert expressions are replaced. */
  async function runAgainstMutatedAlerts(ctx: Mocha.Context, expr: string): Promise<string> {
    const promtool = requirePrometheusTool(ctx, 'promtool');
    const dir = mkdtempSync(join(tmpdir(), 'datalab-rules-'));
    try {
      cpSync(join(COLLECTOR, 'tests'), join(dir, 'tests'), { recursive: true });
      cpSync(join(COLLECTOR, 'rules'), join(dir, 'rules'), { recursive: true });
      const doc = readYamlMap('rules/alert_rules.yml');
      for (const group of asList(doc.groups, 'groups')) {
        for (const rule of asList(asMap(group, 'group').rules, 'rules'))
          asMap(rule, 'rule').expr = expr;
      }
      writeFileSync(join(dir, 'rules', 'alert_rules.yml'), JSON.stringify(doc));
      const result = await run(promtool, ['test', 'rules', join(dir, 'tests', 'alerts.test.yml')]);
      assert.notEqual(result.code, 0, 'the unit tests passed against broken alerts');
      return result.stdout + result.stderr;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('fail for every alert when its expression never fires', async function () {
    const output = await runAgainstMutatedAlerts(this, 'vector(0) > 1');
    for (const rule of alertRules()) {
      assert.match(output, new RegExp(`alertname: ${rule.alert},`), `${rule.alert} not caught`);
    }
  });

  it('fail for every alert when its expression always fires', async function () {
    const output = await runAgainstMutatedAlerts(this, 'vector(1)');
    for (const rule of alertRules()) {
      assert.match(output, new RegExp(`alertname: ${rule.alert},`), `${rule.alert} not caught`);
    }
  });
});

describe('operations bundle: alerts and runbooks', () => {
  const runbooks = readFileSync(join(ROOT, 'docs', 'runbooks.md'), 'utf8');
  const anchors = markdownAnchors(runbooks);

  it('has every alert of the seed, and the distro and SLO alerts', () => {
    const names = alertRules().map((r) => r.alert);
    for (const name of [
      'ServiceDown',
      'HighErrorRate',
      'HighResponseTime',
      'HighMemoryUsage',
      'DatabaseConnectionHigh',
      'AIServiceProcessingDelay',
      'CriticalHealthCheckFailing',
      'EndpointCardinalityOverflow',
      'SLOAvailabilityBudgetBurnFast',
      'SLOAvailabilityBudgetBurnSlow',
      'SLOLatencyBudgetBurnFast',
      'SLOLatencyBudgetBurnSlow',
      'ServiceRestarting',
    ]) {
      assert.ok(names.includes(name), `alert ${name}`);
    }
    assert.equal(new Set(names).size, names.length, 'alert names are unique');
  });

  it('fixes the seed PromQL: P95 by (service, le), guarded error ratio', () => {
    const rules = loadRules();
    const byName = new Map(rules.map((r) => [r.alert ?? r.record, r]));
    const p95 = byName.get('service:http_request_duration_seconds:p95_rate5m')?.expr ?? '';
    assert.match(p95, /histogram_quantile\(0\.95, sum by \(service, le\)/);
    assert.match(byName.get('HighResponseTime')?.expr ?? '', /p95_rate5m > 2/);
    const ratio = byName.get('service:http_requests_errors:ratio_rate5m')?.expr ?? '';
    assert.match(ratio, /\bor\b/, 'a zero vector for services without 5xx');
    assert.match(ratio, /> 0\)\s*$/, 'the denominator is filtered to traffic > 0');
    assert.match(byName.get('HighErrorRate')?.expr ?? '', /ratio_rate5m > 0\.1/);
  });

  it('burn-rate alerts use the SRE workbook windows and factors', () => {
    const byName = new Map(alertRules().map((r) => [r.alert, r.expr.replace(/\s+/g, ' ')]));
    for (const [slo, budget, sli] of [
      ['Availability', '0.001', 'http_requests_errors'],
      ['Latency', '0.01', 'http_requests_slow'],
    ]) {
      const fast = byName.get(`SLO${slo}BudgetBurnFast`) ?? '';
      const slow = byName.get(`SLO${slo}BudgetBurnSlow`) ?? '';
      for (const [expr, pairs] of [
        [
          fast,
          [
            ['1h', '5m', '14.4'],
            ['6h', '30m', '6'],
          ],
        ],
        [
          slow,
          [
            ['1d', '2h', '3'],
            ['3d', '6h', '1'],
          ],
        ],
      ] as const) {
        for (const [long, short, factor] of pairs) {
          const pair = `service:${sli}:ratio_rate${long} > (${factor} * ${budget}) and service:${sli}:ratio_rate${short} > (${factor} * ${budget})`;
          assert.ok(expr.includes(pair), `${slo}: ${pair}\nin ${expr}`);
        }
      }
    }
  });

  it('every alert has a severity, a summary, a description and a runbook section', () => {
    for (const rule of alertRules()) {
      const name = rule.alert as string;
      assert.ok(['critical', 'warning'].includes(rule.labels.severity ?? ''), `${name} severity`);
      assert.ok(rule.annotations.summary, `${name} summary`);
      assert.ok(rule.annotations.description, `${name} description`);
      const url = rule.annotations.runbook_url ?? '';
      assert.ok(url.startsWith(RUNBOOK_BASE), `${name}: runbook_url ${url} under ${RUNBOOK_BASE}`);
      const anchor = url.slice(RUNBOOK_BASE.length);
      assert.equal(anchor, name.toLowerCase(), `${name}: anchor`);
      assert.ok(anchors.has(anchor), `${name}: docs/runbooks.md has no section #${anchor}`);
    }
  });

  it('every runbook section says what it means, first checks with PromQL, causes, what to do', () => {
    const sections = runbooks.split(/^## /m).slice(1);
    const byTitle = new Map(sections.map((s) => [s.split('\n')[0]?.trim() ?? '', s]));
    const traceLookup = [
      'HighErrorRate',
      'HighResponseTime',
      'AIServiceProcessingDelay',
      'SLOAvailabilityBudgetBurnFast',
      'SLOAvailabilityBudgetBurnSlow',
      'SLOLatencyBudgetBurnFast',
      'SLOLatencyBudgetBurnSlow',
      'EventLoopLagHigh',
    ];
    for (const rule of alertRules()) {
      const name = rule.alert as string;
      const section = byTitle.get(name);
      assert.ok(section, `## ${name}`);
      for (const part of ['What it means', 'First checks', 'Likely causes', 'What to do']) {
        assert.ok(section.includes(`**${part}.**`), `${name}: **${part}.**`);
      }
      assert.match(section, /```promql\n/, `${name}: a PromQL first check`);
      if (traceLookup.includes(name)) {
        assert.match(section, /datalab-otel trace /, `${name}: the trace lookup`);
      }
    }
    const alertNames = new Set(alertRules().map((r) => r.alert));
    for (const title of byTitle.keys()) {
      if (/^[A-Z][A-Za-z]+$/.test(title))
        assert.ok(alertNames.has(title), `stale runbook ${title}`);
    }
  });

  it('the PromQL in the runbooks parses', async function () {
    const exprs = [...runbooks.matchAll(/```promql\n([\s\S]*?)```/g)].flatMap((m, i) =>
      (m[1] as string)
        .split(/\n(?=\S)/)
        .map((e) => e.trim())
        .filter((e) => e !== '' && !e.startsWith('#'))
        .map((expr) => ({ name: `runbooks.md block ${i + 1}`, expr })),
    );
    assert.ok(exprs.length >= alertRules().length);
    await assertPromqlParses(this, exprs);
  });
});

describe('operations bundle: Grafana dashboard and provisioning', function () {
  this.timeout(60_000);
  const dashboard: Dashboard = loadDashboard();
  const panels = allPanels(dashboard);

  it('is a Grafana dashboard: schema version, uid, unique panel ids, layout within 24 columns', () => {
    assert.equal(typeof dashboard.schemaVersion, 'number');
    assert.ok(dashboard.schemaVersion >= 36, 'schemaVersion of Grafana 9 or later');
    assert.match(dashboard.uid, /^[a-zA-Z0-9_-]{1,40}$/);
    assert.equal(dashboard.title, 'DataLab Platform Overview');
    const ids = panels.map((p) => p.id);
    assert.ok(
      ids.every((id) => Number.isInteger(id) && id > 0),
      'integer panel ids',
    );
    assert.equal(new Set(ids).size, ids.length, 'unique panel ids');
    const known = ['row', 'timeseries', 'stat', 'state-timeline', 'text', 'table', 'gauge'];
    for (const p of panels) {
      assert.ok(known.includes(p.type), `${p.title}: panel type ${p.type}`);
      const { x, y, w, h } = p.gridPos;
      assert.ok(x >= 0 && w > 0 && x + w <= 24 && y >= 0 && h > 0, `${p.title}: gridPos`);
    }
    // No two panels overlap.
    const cells = new Set<string>();
    for (const p of panels) {
      for (let dx = 0; dx < p.gridPos.w; dx++) {
        for (let dy = 0; dy < p.gridPos.h; dy++) {
          const cell = `${p.gridPos.x + dx},${p.gridPos.y + dy}`;
          assert.ok(!cells.has(cell), `${p.title} overlaps another panel at ${cell}`);
          cells.add(cell);
        }
      }
    }
  });

  it('has the seed panels and one for each other distro metric', () => {
    const titles = panels.map((p) => p.title);
    for (const t of [
      'Request Rate',
      'Response Times (P95)',
      'Error Rates',
      'Service Health Status',
    ]) {
      assert.ok(titles.includes(t), `panel ${t}`);
    }
    const exprs = dashboardTargets(dashboard).map((t) => t.expr);
    for (const metric of [
      'http_requests_active',
      'database_connections_active',
      'db_client_operation_duration_seconds_bucket',
      'memory_usage_bytes',
      'nodejs_eventloop_delay_p99_seconds',
      'nodejs_eventloop_utilization_ratio',
      'nodejs_heap_used_bytes',
      'nodejs_gc_duration_seconds_sum',
      'health_check_status',
      '__overflow__',
      'process_cpu_seconds_total',
      'process_start_time_seconds',
    ]) {
      assert.ok(
        exprs.some((e) => e.includes(metric)),
        `a panel queries ${metric}`,
      );
    }
  });

  it('every target has a PromQL expression on the datasource variable, and every one parses', async function () {
    const targets = dashboardTargets(dashboard);
    assert.ok(targets.length >= 15);
    for (const panel of panels) {
      if (panel.type === 'row' || panel.type === 'text') continue;
      assert.ok((panel.targets ?? []).length > 0, `${panel.title}: targets`);
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana variable syntax
      assert.deepEqual(panel.datasource, { type: 'prometheus', uid: '${datasource}' });
      const refIds = (panel.targets ?? []).map((t) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `${panel.title}: unique refIds`);
      for (const t of panel.targets ?? []) {
        assert.deepEqual(t.datasource, panel.datasource, `${panel.title} ${t.refId}: datasource`);
        assert.ok((t.expr ?? '').trim() !== '', `${panel.title} ${t.refId}: expr`);
      }
    }
    await assertPromqlParses(
      this,
      targets.map((t) => ({
        name: `${t.panelTitle} ${t.refId}`,
        expr: substituteGrafanaVariables(t.expr, DASHBOARD_VARIABLES),
      })),
    );
  });

  it('has a service variable, and every variable a query or link uses is defined', () => {
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    const service = vars.get('service');
    assert.ok(service, 'service variable');
    assert.equal(service.type, 'query');
    assert.equal(service.definition, 'label_values(http_requests_total, service)');
    assert.ok(service.multi && service.includeAll, 'multi-value with All');
    assert.equal(service.allValue, '.+');
    for (const t of dashboardTargets(dashboard)) {
      if (t.panelTitle !== 'Service Health Status') {
        assert.match(
          t.expr,
          /service=~"\$service"/,
          `${t.panelTitle} ${t.refId} filters on $service`,
        );
      }
    }
    const builtins = new Set([
      '__rate_interval',
      '__interval',
      '__range',
      '__from',
      '__to',
      '__field',
      '__all',
    ]);
    const used = JSON.stringify(dashboard).matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g);
    for (const [, name] of used) {
      assert.ok(
        vars.has(name as string) || builtins.has(name as string),
        `undefined variable $${name}`,
      );
    }
  });

  it('links from panels and the dashboard to trace search by service, correlation ID and trace ID', () => {
    const links = panels.flatMap((p) => p.fieldConfig?.defaults?.links ?? []);
    assert.ok(
      links.some(
        // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana variable syntax
        (l) => l.url.includes('${__field.labels.service}') && l.url.includes('correlation.id'),
      ),
      'a data link searching traces by correlation.id for the series service',
    );
    assert.ok(
      links.some((l) => /tags=%7B%22error%22%3A%22true%22%7D/.test(l.url)),
      'error traces',
    );
    assert.ok(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana variable syntax
      (dashboard.links ?? []).some((l) => l.url === '${tracing_url}/trace/${correlation_id}'),
      'a dashboard link to the trace by ID',
    );
  });

  it('provisioning: the Prometheus datasource the dashboard expects, and the dashboards folder', () => {
    const ds = readYamlMap('grafana/provisioning/datasources/datasources.yml');
    assert.equal(ds.apiVersion, 1);
    const list = asList(ds.datasources, 'datasources').map((d) => asMap(d, 'datasource'));
    const prom = list.find((d) => d.type === 'prometheus');
    assert.ok(prom, 'a prometheus datasource');
    assert.equal(prom.uid, 'prometheus');
    assert.equal(prom.isDefault, true);
    const variable = dashboard.templating.list.find((v) => v.name === 'datasource');
    assert.equal(variable?.type, 'datasource');
    assert.equal(variable?.query, 'prometheus');
    assert.ok(
      list.some((d) => d.type === 'jaeger'),
      'a Jaeger datasource for the trace links',
    );
    const boards = readYamlMap('grafana/provisioning/dashboards/dashboards.yml');
    const provider = asMap(asList(boards.providers, 'providers')[0], 'provider');
    assert.equal(provider.type, 'file');
    assert.equal(asMap(provider.options, 'options').path, '/var/lib/grafana/dashboards');
  });
});

/** Collector component IDs are `type[/name]`; these are the contrib types the configs may use. */
const COLLECTOR_TYPES: Record<string, string[]> = {
  receivers: ['otlp'],
  processors: ['memory_limiter', 'batch', 'tail_sampling'],
  exporters: ['prometheus', 'otlp_grpc', 'otlp_http', 'file', 'debug', 'load_balancing'],
  extensions: ['health_check'],
};

interface CollectorConfig {
  readonly file: string;
  readonly doc: YamlMap;
  readonly pipelines: Map<
    string,
    { receivers: string[]; processors: string[]; exporters: string[] }
  >;
}

function loadCollector(file: string): CollectorConfig {
  const doc = readYamlMap(file);
  const service = asMap(doc.service, `${file} service`);
  const pipelines = new Map<
    string,
    { receivers: string[]; processors: string[]; exporters: string[] }
  >();
  for (const [name, p] of Object.entries(asMap(service.pipelines, `${file} pipelines`))) {
    const pipe = asMap(p, name);
    pipelines.set(name, {
      receivers: asList(pipe.receivers, `${name}.receivers`).map(String),
      processors: asList(pipe.processors, `${name}.processors`).map(String),
      exporters: asList(pipe.exporters, `${name}.exporters`).map(String),
    });
  }
  return { file, doc, pipelines };
}

/** Every `host:port` endpoint a Collector config listens on, with where it is set. */
function listenPorts(config: CollectorConfig): Map<number, string> {
  const ports = new Map<number, string>();
  const add = (port: number, where: string) => {
    assert.ok(
      !ports.has(port),
      `${config.file}: port ${port} used by ${ports.get(port)} and ${where}`,
    );
    ports.set(port, where);
  };
  for (const kind of ['receivers', 'extensions', 'exporters']) {
    const section = asMap(config.doc[kind], kind);
    for (const [id, c] of Object.entries(section)) {
      const walk = (value: YamlValue, path: string) => {
        if (!isMap(value)) return;
        for (const [k, v] of Object.entries(value)) {
          if (
            k === 'endpoint' &&
            typeof v === 'string' &&
            /^(0\.0\.0\.0|127\.0\.0\.1|localhost):\d+$/.test(v)
          ) {
            add(Number(v.split(':')[1]), `${kind}.${id}${path}`);
          } else walk(v, `${path}.${k}`);
        }
      };
      if (kind !== 'exporters' || id.split('/')[0] === 'prometheus') walk(c, '');
    }
  }
  const readers = asList(
    asMap(asMap(asMap(config.doc.service, 'service').telemetry, 'telemetry').metrics, 'metrics')
      .readers,
    'readers',
  );
  for (const r of readers) {
    const prom = asMap(
      asMap(asMap(asMap(r, 'reader').pull, 'pull').exporter, 'exporter').prometheus,
      'p',
    );
    add(Number(prom.port), 'service.telemetry.metrics');
  }
  return ports;
}

describe('operations bundle: Collector configs (checked as files)', () => {
  const agent = loadCollector('otelcol-agent.yaml');
  const gateway = loadCollector('otelcol-gateway.yaml');

  for (const config of [agent, gateway]) {
    it(`${config.file}: every pipeline component is defined, every defined one used, types known`, () => {
      const used = new Set<string>();
      for (const [name, pipe] of config.pipelines) {
        assert.ok(
          ['traces', 'metrics', 'logs'].includes(name.split('/')[0] as string),
          `pipeline ${name}`,
        );
        for (const [kind, ids] of [
          ['receivers', pipe.receivers],
          ['processors', pipe.processors],
          ['exporters', pipe.exporters],
        ] as const) {
          assert.ok(ids.length > 0 || kind === 'processors', `${name}: no ${kind}`);
          for (const id of ids) {
            assert.ok(
              Object.hasOwn(asMap(config.doc[kind], kind), id),
              `${config.file}: pipeline ${name} uses ${kind} ${id}, which is not defined`,
            );
            used.add(`${kind}:${id}`);
          }
        }
      }
      const extensions = asList(
        asMap(config.doc.service, 'service').extensions,
        'service.extensions',
      );
      for (const id of extensions) {
        assert.ok(
          Object.hasOwn(asMap(config.doc.extensions, 'extensions'), String(id)),
          `extension ${id}`,
        );
        used.add(`extensions:${id}`);
      }
      for (const kind of Object.keys(COLLECTOR_TYPES)) {
        for (const id of Object.keys(asMap(config.doc[kind], kind))) {
          assert.ok(
            used.has(`${kind}:${id}`),
            `${config.file}: ${kind} ${id} is defined but unused`,
          );
          const type = id.split('/')[0] as string;
          assert.ok(
            COLLECTOR_TYPES[kind]?.includes(type),
            `${config.file}: unknown ${kind} type ${type}`,
          );
        }
      }
      for (const key of Object.keys(config.doc)) {
        assert.ok(
          ['receivers', 'processors', 'exporters', 'extensions', 'service', 'connectors'].includes(
            key,
          ),
          key,
        );
      }
    });

    it(`${config.file}: memory_limiter first and batch last in every pipeline`, () => {
      for (const [name, pipe] of config.pipelines) {
        assert.equal(pipe.processors[0], 'memory_limiter', `${name}: memory_limiter first`);
        assert.equal(pipe.processors.at(-1), 'batch', `${name}: batch last`);
      }
      const limiter = asMap(
        asMap(config.doc.processors, 'processors').memory_limiter,
        'memory_limiter',
      );
      assert.ok(limiter.check_interval, 'memory_limiter.check_interval');
      assert.ok(limiter.limit_percentage || limiter.limit_mib, 'memory_limiter limit');
    });

    it(`${config.file}: OTLP on 4317/4318, health_check on 13133, no port used twice`, () => {
      const ports = listenPorts(config);
      assert.equal(ports.get(4317), 'receivers.otlp.protocols.grpc');
      assert.equal(ports.get(4318), 'receivers.otlp.protocols.http');
      assert.equal(ports.get(13133), 'extensions.health_check');
      assert.equal(ports.get(8888), 'service.telemetry.metrics');
    });
  }

  it('agent: metrics to a Prometheus exporter that keeps the distro names; traces and logs to the gateway', () => {
    const prom = asMap(asMap(agent.doc.exporters, 'exporters').prometheus, 'prometheus');
    assert.equal(prom.endpoint, '0.0.0.0:8889');
    assert.equal(
      prom.translation_strategy,
      'UnderscoreEscapingWithoutSuffixes',
      'no _total/_seconds suffixes',
    );
    assert.equal(prom.without_scope_info, true, 'no otel_scope_* labels');
    const r2t = prom.resource_to_telemetry_conversion;
    assert.ok(
      r2t === undefined || asMap(r2t, 'r2t').enabled === false,
      'resource attributes stay on target_info',
    );
    assert.deepEqual(agent.pipelines.get('metrics')?.exporters, ['prometheus']);
    assert.deepEqual(agent.pipelines.get('traces')?.exporters, ['load_balancing/gateways']);
    assert.deepEqual(agent.pipelines.get('logs')?.exporters, ['load_balancing/gateways']);
    // Every span of a trace to one gateway: what the gateways' tail sampling needs.
    const lb = asMap(asMap(agent.doc.exporters, 'exporters')['load_balancing/gateways'], 'lb');
    assert.equal(lb.routing_key, 'traceID');
  });

  it('gateway: traces to OTLP and to an OTLP JSON file, logs to OTLP, no pull exporter', () => {
    const exporters = asMap(gateway.doc.exporters, 'exporters');
    assert.deepEqual(gateway.pipelines.get('traces')?.exporters, [
      'otlp_grpc/traces',
      'file/traces',
    ]);
    assert.deepEqual(gateway.pipelines.get('logs')?.exporters, ['otlp_http/logs']);
    assert.equal(
      gateway.pipelines.has('metrics'),
      false,
      'metrics are pulled, not sent to the gateway',
    );
    const file = asMap(exporters['file/traces'], 'file/traces');
    assert.equal(file.format, 'json');
    assert.match(
      String(file.path),
      /\.jsonl\}?$/,
      'a name `datalab-otel trace --file <dir>` picks up',
    );
    assert.ok(isMap(file.rotation), 'rotated');
    for (const id of ['otlp_grpc/traces', 'otlp_http/logs']) {
      assert.match(
        String(asMap(exporters[id], id).endpoint),
        /^\$\{env:DATALAB_[A-Z_]+:-[^}]+\}$/,
        `${id} endpoint from env`,
      );
    }
  });
});

describe('operations bundle: Alertmanager', () => {
  it('routes both severities to receivers that exist (amtool check-config when installed)', async () => {
    const am = readYamlMap('alertmanager.yml');
    const receivers = new Set(
      asList(am.receivers, 'receivers').map((r) => String(asMap(r, 'r').name)),
    );
    const route = asMap(am.route, 'route');
    assert.ok(receivers.has(String(route.receiver)), 'default receiver');
    const routed = new Map<string, string>();
    for (const r of asList(route.routes, 'routes')) {
      const sub = asMap(r, 'route');
      assert.ok(receivers.has(String(sub.receiver)), `receiver ${sub.receiver}`);
      for (const m of asList(sub.matchers, 'matchers')) {
        const match = /^severity = "(\w+)"$/.exec(String(m));
        if (match) routed.set(match[1] as string, String(sub.receiver));
      }
    }
    const severities = new Set(alertRules().map((r) => r.labels.severity as string));
    for (const s of severities) assert.ok(routed.has(s), `severity ${s} routed`);
    assert.equal(routed.get('critical'), 'page');
    const amtool = findTool('amtool');
    if (!amtool) {
      console.log('      note: amtool not on PATH; alertmanager.yml checked as a file only');
      return;
    }
    const result = await run(amtool, ['check-config', join(COLLECTOR, 'alertmanager.yml')]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });
});

describe('operations bundle: docker-compose.yml matches the files it mounts', () => {
  const compose = readYamlMap('docker-compose.yml');
  const services = asMap(compose.services, 'services');
  const svc = (name: string) => asMap(services[name], name);
  const mounts = (name: string) =>
    new Map(
      ((svc(name).volumes as YamlValue[] | undefined) ?? []).map((v) => {
        const [source, target] = String(v).split(':') as [string, string];
        return [target, source];
      }),
    );
  const command = (name: string) => asList(svc(name).command, `${name}.command`).map(String);
  const argValue = (name: string, flag: string) => {
    const arg = command(name).find((a) => a.startsWith(`${flag}=`));
    assert.ok(arg, `${name}: ${flag}`);
    return arg.slice(flag.length + 1);
  };
  /** The repository file behind a container path, through the service's bind mounts. */
  const hostPath = (name: string, containerPath: string): string | undefined => {
    for (const [target, source] of mounts(name)) {
      if (!source.startsWith('./')) continue;
      if (containerPath === target) return join(COLLECTOR, source);
      if (containerPath.startsWith(`${target}/`)) {
        return join(COLLECTOR, source, containerPath.slice(target.length + 1));
      }
    }
    return undefined;
  };

  it('starts the Collectors, Prometheus, Alertmanager and Grafana with pinned images', () => {
    for (const name of ['otel-agent', 'otel-gateway', 'prometheus', 'alertmanager', 'grafana']) {
      assert.ok(services[name], `service ${name}`);
    }
    for (const [name, s] of Object.entries(services)) {
      const image = String(asMap(s, name).image);
      assert.match(image, /:[0-9v][\w.-]*$/, `${name}: pinned image tag (${image})`);
      assert.doesNotMatch(image, /:latest$/);
    }
  });

  it('every bind mount exists in the repository (except the trace output directory)', () => {
    for (const name of Object.keys(services)) {
      for (const [target, source] of mounts(name)) {
        if (!source.startsWith('./')) continue;
        if (source === './data/traces') continue;
        assert.ok(
          existsSync(join(COLLECTOR, source)),
          `${name}: ${source} -> ${target} does not exist`,
        );
      }
    }
  });

  it('the Collectors load the shipped configs, and the agent reaches the gateway on its OTLP port', () => {
    const agentConfig = hostPath('otel-agent', argValue('otel-agent', '--config'));
    assert.equal(agentConfig, join(COLLECTOR, 'otelcol-agent.yaml'));
    const gatewayConfig = hostPath('otel-gateway', argValue('otel-gateway', '--config'));
    assert.equal(gatewayConfig, join(COLLECTOR, 'otelcol-gateway.yaml'));
    const env = asMap(svc('otel-agent').environment, 'env');
    assert.equal(env.DATALAB_GATEWAY_ENDPOINTS, '[otel-gateway:4317]');
    const gwEnv = asMap(svc('otel-gateway').environment, 'env');
    assert.equal(gwEnv.DATALAB_TRACES_ENDPOINT, 'jaeger:4317');
    assert.equal(gwEnv.DATALAB_LOGS_ENDPOINT, 'http://loki:3100/otlp');
    // The trace file lands in the mounted directory.
    const traceFile = String(gwEnv.DATALAB_TRACES_FILE);
    assert.equal(mounts('otel-gateway').get(posix.dirname(traceFile)), './data/traces');
    // Every ${env:X} without a default in the configs is set by compose.
    for (const [file, name] of [
      ['otelcol-agent.yaml', 'otel-agent'],
      ['otelcol-gateway.yaml', 'otel-gateway'],
    ] as const) {
      const given = asMap(svc(name).environment, 'env');
      for (const [, variable, fallback] of readCollectorFile(file).matchAll(
        /\$\{env:([A-Z_]+)(:-[^}]*)?\}/g,
      )) {
        assert.ok(
          fallback || given[variable as string] !== undefined,
          `${file}: ${variable} unset`,
        );
        assert.ok(given[variable as string] !== undefined, `${name} sets ${variable} explicitly`);
      }
    }
  });

  it('Prometheus loads prometheus.yml and its rule files, and scrapes compose services on their ports', () => {
    const configPath = argValue('prometheus', '--config.file');
    assert.equal(hostPath('prometheus', configPath), join(COLLECTOR, 'prometheus.yml'));
    const config = readYamlMap('prometheus.yml');
    for (const rf of asList(config.rule_files, 'rule_files')) {
      const inContainer = posix.join(posix.dirname(configPath), String(rf));
      const file = hostPath('prometheus', inContainer);
      assert.ok(file && existsSync(file), `rule file ${rf} mounted (${inContainer})`);
    }
    // Ports each compose service listens on inside the network.
    const agentPorts = [...listenPorts(loadCollector('otelcol-agent.yaml')).keys()];
    const gatewayPorts = [...listenPorts(loadCollector('otelcol-gateway.yaml')).keys()];
    const listening: Record<string, number[]> = {
      'otel-agent': agentPorts,
      'otel-gateway': gatewayPorts,
      alertmanager: [9093],
      prometheus: [9090],
      grafana: [3000],
      jaeger: [16686, 4317, 4318],
      loki: [3100],
    };
    const targets: string[] = [];
    for (const job of asList(config.scrape_configs, 'scrape_configs')) {
      for (const sc of asList(asMap(job, 'job').static_configs, 'static_configs')) {
        targets.push(...asList(asMap(sc, 'sc').targets, 'targets').map(String));
      }
    }
    const alerting = asMap(config.alerting, 'alerting');
    for (const am of asList(alerting.alertmanagers, 'alertmanagers')) {
      for (const sc of asList(asMap(am, 'am').static_configs, 'sc')) {
        targets.push(...asList(asMap(sc, 'sc').targets, 'targets').map(String));
      }
    }
    let inCompose = 0;
    for (const target of targets) {
      const [host, port] = target.split(':') as [string, string];
      if (services[host]) {
        inCompose++;
        assert.ok(
          listening[host]?.includes(Number(port)),
          `${target}: ${host} does not listen on ${port}`,
        );
      }
    }
    assert.ok(inCompose >= 4, 'agent exporter, agent and gateway telemetry, alertmanager');
  });

  it('Grafana gets the provisioning directory and the dashboards where the provider reads them', () => {
    const m = mounts('grafana');
    assert.equal(m.get('/etc/grafana/provisioning'), './grafana/provisioning');
    const provider = asMap(
      asList(readYamlMap('grafana/provisioning/dashboards/dashboards.yml').providers, 'p')[0],
      'provider',
    );
    const path = String(asMap(provider.options, 'options').path);
    assert.equal(hostPath('grafana', path), join(COLLECTOR, 'grafana', 'dashboards'));
    const ds = asList(
      readYamlMap('grafana/provisioning/datasources/datasources.yml').datasources,
      'ds',
    );
    for (const d of ds) {
      const url = new URL(String(asMap(d, 'ds').url));
      assert.ok(services[url.hostname], `datasource host ${url.hostname} is a compose service`);
    }
    const home = String(
      asMap(svc('grafana').environment, 'env').GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH,
    );
    assert.equal(
      hostPath('grafana', home),
      join(COLLECTOR, 'grafana', 'dashboards', 'datalab-overview.json'),
    );
  });

  it('no host port is published twice; Alertmanager and Prometheus are on their usual ports', () => {
    const published = new Map<string, string>();
    for (const [name, s] of Object.entries(services)) {
      for (const p of (asMap(s, name).ports as YamlValue[] | undefined) ?? []) {
        const host = String(p).split(':')[0] as string;
        assert.ok(!published.has(host), `host port ${host}: ${published.get(host)} and ${name}`);
        published.set(host, name);
      }
    }
    assert.equal(published.get('9090'), 'prometheus');
    assert.equal(published.get('9093'), 'alertmanager');
    assert.equal(published.get('4317'), 'otel-agent');
    assert.equal(published.get('4318'), 'otel-agent');
  });
});

describe('operations bundle: CI installs the Prometheus tools', () => {
  it('.ci/run installs Debian prometheus when promtool or prometheus is missing', () => {
    const script = readFileSync(join(ROOT, '.ci', 'run'), 'utf8');
    assert.match(script, /command -v promtool/);
    assert.match(script, /command -v prometheus/);
    assert.match(script, /apt-get update/);
    assert.match(script, /apt-get install -y[^\n]*\bprometheus\b/);
  });
});

describe('operations bundle: exemplars, from a latency panel to its trace', () => {
  it('the HTTP latency panel asks for exemplars on every target', () => {
    const latency = allPanels(loadDashboard()).filter((p) =>
      (p.targets ?? []).some((t) =>
        (t.expr ?? '').includes('http_request_duration_seconds_bucket'),
      ),
    );
    assert.ok(latency.length > 0, 'a panel on http_request_duration_seconds_bucket');
    for (const panel of latency) {
      for (const t of panel.targets ?? []) {
        assert.equal((t as { exemplar?: unknown }).exemplar, true, `${panel.title} ${t.refId}`);
      }
    }
  });

  it('the Prometheus datasource links trace_id to the provisioned tracing datasource', () => {
    const ds = readYamlMap('grafana/provisioning/datasources/datasources.yml');
    const list = asList(ds.datasources, 'datasources').map((d) => asMap(d, 'datasource'));
    const prom = list.find((d) => d.type === 'prometheus');
    assert.ok(prom, 'a prometheus datasource');
    const links = asList(
      asMap(prom.jsonData, 'jsonData').exemplarTraceIdDestinations,
      'exemplarTraceIdDestinations',
    ).map((d) => asMap(d, 'destination'));
    const tracing = new Set(
      list.filter((d) => d.type === 'jaeger' || d.type === 'tempo').map((d) => d.uid),
    );
    assert.ok(
      links.some((l) => l.name === 'trace_id' && tracing.has(l.datasourceUid)),
      `trace_id → one of ${[...tracing].join(', ')}: ${JSON.stringify(links)}`,
    );
  });

  it('the bundled Prometheus stores exemplars', () => {
    const services = asMap(readYamlMap('docker-compose.yml').services, 'services');
    const command = asList(asMap(services.prometheus, 'prometheus').command, 'command').map(String);
    assert.ok(command.includes('--enable-feature=exemplar-storage'), command.join(' '));
  });
});
