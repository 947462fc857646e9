import assert from 'node:assert/strict';
import {
  DEFAULT_HTTP_BUCKETS,
  INSTRUMENTATION_NAMES,
  parseBuckets,
  parseConfig,
  parseResourceAttributes,
} from '../../src/config';

describe('config', () => {
  it('has documented defaults and is frozen', () => {
    const { config, warnings } = parseConfig({});
    assert.deepEqual(warnings, []);
    assert.equal(config.serviceName, 'unknown_service:node');
    assert.equal(config.management.host, '0.0.0.0');
    assert.equal(config.management.port, 9464);
    assert.equal(config.metrics.maxEndpoints, 200);
    assert.deepEqual(config.metrics.exporters, ['prometheus']);
    assert.deepEqual(config.traces.exporters, [], 'no endpoint, no OTLP export');
    assert.equal(config.traces.protocol, 'http/protobuf');
    assert.deepEqual(
      config.instrumentations,
      INSTRUMENTATION_NAMES.filter((name) => !['fs', 'host-metrics', 'dns', 'net'].includes(name)),
    );
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.metrics));
    assert.throws(() => {
      (config as { serviceName: string }).serviceName = 'x';
    });
  });

  it('resolves the service name in SPEC order', () => {
    const pkg = { name: 'from-package', version: '1.2.3' };
    const attrs = 'service.name=from-attrs,deployment.environment.name=prod';
    assert.equal(parseConfig({}, pkg).config.serviceName, 'from-package');
    assert.equal(
      parseConfig({ OTEL_RESOURCE_ATTRIBUTES: attrs }, pkg).config.serviceName,
      'from-attrs',
    );
    const both = parseConfig({ OTEL_RESOURCE_ATTRIBUTES: attrs, OTEL_SERVICE_NAME: 'svc' }, pkg);
    assert.equal(both.config.serviceName, 'svc');
    assert.equal(both.config.serviceVersion, '1.2.3');
    assert.deepEqual(both.config.resourceAttributes, { 'deployment.environment.name': 'prod' });
  });

  it('an endpoint switches OTLP trace export on; OTEL_TRACES_EXPORTER=none off', () => {
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' };
    assert.deepEqual(parseConfig(env).config.traces.exporters, ['otlp']);
    const none = parseConfig({ ...env, OTEL_TRACES_EXPORTER: 'none' });
    assert.deepEqual(none.config.traces.exporters, []);
    const perSignal = parseConfig({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces',
    });
    assert.deepEqual(perSignal.config.traces.exporters, ['otlp']);
  });

  it('warns once per bad value, naming variable, value and default', () => {
    const { config, warnings } = parseConfig({
      DATALAB_METRICS_PORT: 'abc',
      DATALAB_HTTP_BUCKETS: '5,1,x',
      DATALAB_MAX_ENDPOINTS: '-3',
      OTEL_TRACES_EXPORTER: 'otlp,bogus',
      OTEL_TRACES_SAMPLER: 'sometimes',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'carrier-pigeon',
    });
    const text = warnings.map((w) => w.message);
    assert.equal(warnings.length, 6, text.join('\n'));
    assert.ok(warnings.every((w) => w.code === 'DLOTEL_CONFIG_INVALID'));
    assert.match(text[0] ?? '', /OTEL_EXPORTER_OTLP_PROTOCOL="carrier-pigeon".*http\/protobuf/);
    assert.ok(text.some((t) => /DATALAB_METRICS_PORT="abc" .*default 9464/.test(t)));
    assert.ok(text.some((t) => /DATALAB_HTTP_BUCKETS="5,1,x"/.test(t)));
    assert.ok(
      text.some((t) => /OTEL_TRACES_EXPORTER="otlp,bogus" names "bogus".*using otlp/.test(t)),
    );
    assert.equal(config.management.port, 9464);
    assert.equal(config.metrics.maxEndpoints, 200);
    assert.deepEqual(config.metrics.httpBuckets, DEFAULT_HTTP_BUCKETS);
    assert.deepEqual(config.traces.exporters, ['otlp'], 'the valid entry is kept');
    assert.equal(config.traces.sampler, 'parentbased_always_on');
  });

  it('a list with nothing known falls back to the default instead of switching a signal off', () => {
    const { config, warnings } = parseConfig({
      OTEL_METRICS_EXPORTER: 'promethus',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
      OTEL_TRACES_EXPORTER: 'bogus',
      OTEL_PROPAGATORS: 'tracecontext,none',
    });
    assert.deepEqual(config.metrics.exporters, ['prometheus']);
    assert.deepEqual(config.traces.exporters, ['otlp']);
    assert.deepEqual(config.propagators, ['tracecontext'], '"none" only counts alone');
    assert.equal(warnings.length, 3);
    const metricsWarning = warnings.find((w) => w.message.startsWith('OTEL_METRICS_EXPORTER'));
    assert.match(metricsWarning?.message ?? '', /"promethus".*default prometheus/);
    assert.deepEqual(parseConfig({ OTEL_PROPAGATORS: 'none' }).config.propagators, []);
  });

  it('discards the whole OTEL_RESOURCE_ATTRIBUTES value when part of it is malformed', () => {
    const { config, warnings } = parseConfig({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=a,k=%ZZ' });
    assert.equal(config.serviceName, 'unknown_service:node');
    assert.equal(warnings.length, 1);
  });

  it('echoes hostile values quoted and cut, so a warning stays one line', () => {
    const { warnings } = parseConfig({ DATALAB_METRICS_PORT: `1\nFAKE LINE${'x'.repeat(500)}` });
    assert.equal(warnings.length, 1);
    assert.ok(!warnings[0]?.message.includes('\n'));
    assert.ok((warnings[0]?.message.length ?? 0) < 250);
  });

  it('OTEL_NODE_ENABLED_INSTRUMENTATIONS replaces the default set, then DISABLED removes', () => {
    const { config, warnings } = parseConfig({
      OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http,express,pg,fs',
      OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'pg',
    });
    assert.deepEqual(config.instrumentations, ['http', 'express', 'fs'], 'fs is off by default');
    assert.deepEqual(warnings, []);
  });

  it('instrumentations: upstream defaults with fs and host-metrics off, and dns and net off', () => {
    const { config } = parseConfig({});
    assert.equal(config.instrumentations.length, INSTRUMENTATION_NAMES.length - 4);
    for (const name of ['fs', 'host-metrics', 'dns', 'net'] as const) {
      assert.ok(!config.instrumentations.includes(name), name);
    }
    for (const name of ['amqplib', 'koa', 'http', 'pg'] as const) {
      assert.ok(config.instrumentations.includes(name), name);
    }
    const removed = parseConfig({ OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'koa, hapi' }).config;
    assert.equal(removed.instrumentations.length, INSTRUMENTATION_NAMES.length - 6);
    const added = parseConfig({
      OTEL_NODE_ENABLED_INSTRUMENTATIONS: INSTRUMENTATION_NAMES.join(','),
    }).config;
    assert.equal(added.instrumentations.length, INSTRUMENTATION_NAMES.length);
    assert.deepEqual(parseConfig({ OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'none' }), {
      config: { ...parseConfig({}).config, instrumentations: [] },
      warnings: [],
    });
  });

  it('unknown instrumentation names: one coded warning per variable, the valid names apply', () => {
    const { config, warnings } = parseConfig({
      OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http,fastify,pg,expres,fastify',
      OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'pg,bogus',
    });
    assert.deepEqual(config.instrumentations, ['http']);
    assert.equal(warnings.length, 2, warnings.map((w) => w.message).join('\n'));
    assert.ok(warnings.every((w) => w.code === 'DLOTEL_UNKNOWN_INSTRUMENTATION'));
    const [enabled, disabled] = warnings.map((w) => w.message);
    assert.match(
      enabled ?? '',
      /^OTEL_NODE_ENABLED_INSTRUMENTATIONS names "fastify", "expres", which no instrumentation is called; http,pg still apply\. Valid names: amqplib, aws-lambda, .*, winston$/,
    );
    assert.match(
      disabled ?? '',
      /^OTEL_NODE_DISABLED_INSTRUMENTATIONS names "bogus",.* pg still apply/,
    );
    // As upstream: an enabled list naming nothing known enables nothing (and says so).
    const none = parseConfig({ OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'htttp' });
    assert.deepEqual(none.config.instrumentations, []);
    assert.match(none.warnings[0]?.message ?? '', /no name in it applies/);
  });

  it('sampler ratio is validated', () => {
    const ok = parseConfig({
      OTEL_TRACES_SAMPLER: 'traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
    });
    assert.equal(ok.config.traces.samplerArg, 0.25);
    const bad = parseConfig({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' });
    assert.equal(bad.config.traces.samplerArg, 1);
    assert.equal(bad.warnings.length, 1);
  });

  it('OTEL_SDK_DISABLED is a boolean', () => {
    assert.equal(parseConfig({ OTEL_SDK_DISABLED: 'TRUE' }).config.sdkDisabled, true);
    const junk = parseConfig({ OTEL_SDK_DISABLED: 'yes please' });
    assert.equal(junk.config.sdkDisabled, false);
    assert.equal(junk.warnings.length, 1);
  });

  it('per-signal protocol overrides the general one', () => {
    const { config } = parseConfig({
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json',
    });
    assert.equal(config.traces.protocol, 'grpc');
    assert.equal(config.metrics.protocol, 'http/json');
  });

  it('parses buckets', () => {
    assert.deepEqual(parseBuckets('0.1, 0.5,1'), [0.1, 0.5, 1]);
    for (const bad of ['5,1', '1,1', '1,,2', 'x', '-1,2', '1,Infinity', '']) {
      assert.equal(parseBuckets(bad), undefined, bad);
    }
  });

  it('parses OTEL_RESOURCE_ATTRIBUTES with percent-encoding', () => {
    assert.deepEqual(parseResourceAttributes('a=1, b = x%2Cy ,c=%E2%9C%93').attributes, {
      a: '1',
      b: 'x,y',
      c: '✓',
    });
    const bad = parseResourceAttributes('novalue,k=%ZZ,ok=1');
    assert.deepEqual(bad.attributes, { ok: '1' });
    assert.ok(bad.error);
  });
});
