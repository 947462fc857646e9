/**
 * `datalab-otel doctor`'s decisions, from package sets and configurations to findings; the
 * instrumentations' module ranges are read from the installed instrumentation packages, as the
 * CLI reads them.
 */
import assert from 'node:assert/strict';
import {
  exitCode,
  type Finding,
  type InstalledPackage,
  type InstrumentationState,
  type LibraryInput,
  type LibrarySettings,
  libraryFindings,
  type ModuleSupport,
  offReason,
  renderFindings,
} from '../../src/cli/doctor';
import { dbClientSupport, moduleSupportOf } from '../../src/cli/doctor-scan';
import { satisfies } from '../../src/cli/semver';
import { DEFAULT_OFF_INSTRUMENTATIONS } from '../../src/config/types';
import { DEFERRED_MODULES, PACKAGES } from '../../src/instrumentations';

function pkg(
  name: string,
  version: string,
  options: { dependents?: string[]; declared?: boolean } = {},
): InstalledPackage {
  const dependents = options.dependents ?? [];
  return {
    name,
    version,
    dir: `/app/node_modules/${name}`,
    declared: (options.declared ?? dependents.length === 0) ? 'dependencies' : undefined,
    dependents,
  };
}

const supportCache = new Map<string, ModuleSupport[] | undefined>();
function supportOf(p: string): ModuleSupport[] | undefined {
  if (!supportCache.has(p)) supportCache.set(p, moduleSupportOf(p));
  return supportCache.get(p);
}

/** Every instrumentation of the distro's list, as the CLI reads it, plus `extra`. */
function listed(
  off: Record<string, string> = {},
  extra: InstrumentationState[] = [],
): InstrumentationState[] {
  // An extra entry stands in for the real one of the same name.
  const replaced = new Set(extra.map((e) => e.name));
  return [
    ...Object.entries(PACKAGES)
      .filter(([name]) => !replaced.has(name))
      .map(([name, p]) => ({
        name,
        package: p,
        modules: supportOf(p),
        off:
          off[name] ??
          ((DEFAULT_OFF_INSTRUMENTATIONS as readonly string[]).includes(name)
            ? 'not enabled by default'
            : undefined),
      })),
    ...extra,
  ];
}

const SETTINGS: LibrarySettings = {
  tracing: true,
  spansOff: 'OTEL_TRACES_EXPORTER=none',
  logsExporters: [],
  healthChecks: ['database', 'redis', 'disk_space', 'memory'],
  httpClientMetrics: true,
  dbClients: dbClientSupport(),
  nodeVersion: '24.21.0',
};

function run(
  packages: InstalledPackage[],
  options: {
    settings?: Partial<LibrarySettings>;
    instrumentations?: InstrumentationState[];
  } = {},
): Finding[] {
  const input: LibraryInput = {
    packages,
    instrumentations: options.instrumentations ?? listed(),
    settings: { ...SETTINGS, ...options.settings },
  };
  return libraryFindings(input);
}

/** The finding about `library`, as the report prints it. */
function line(findings: Finding[], library: string): string {
  const found = findings.filter((f) => f.library === library);
  assert.equal(found.length, 1, `${library}: ${JSON.stringify(findings, null, 1)}`);
  const f = found[0] as Finding;
  return `${f.status.padEnd(4)}  ${f.text}`;
}

describe('doctor: semver ranges as instrumentations write them', () => {
  const cases: [string, string, boolean][] = [
    ['3.1.2', '>=2.6.0 <4', true],
    ['4.7.0', '>=2.6.0 <4', false],
    ['1.6.0', '^1.0.0', true],
    ['5.0.0', '^1.0.0', false],
    ['0.2.5', '^0.2.3', true],
    ['0.3.0', '^0.2.3', false],
    ['6.7.0', '>= 6.7 < 8', true],
    ['8.0.0', '>= 6.7 < 8', false],
    ['1.3.0', '>=1.3 <4', true],
    ['2.9.1', '2', true],
    ['3.0.0', '2', false],
    ['3.9.9', '<4', true],
    ['10.1.0', '*', true],
    ['1.2.9', '~1.2.3', true],
    ['1.3.0', '~1.2.3', false],
    ['1.5.0', '1.2.3 - 1.5', true],
    ['1.6.0', '1.2.3 - 1.5', false],
    ['4.0.0', '>=2 <4 || >=4.0.0 <5', true],
    ['6.0.0-beta.1', '>=5 <7', false],
    ['6.0.0-beta.2', '>=6.0.0-beta.1 <7', true],
    ['6.4.0', '>=6.4.0 <8', true],
    ['6.3.9', '>=6.4.0 <8', false],
    ['2.0.0', '>1', true],
    ['1.9.0', '>1', false],
    ['1.2.3', 'not a range', false],
  ];
  for (const [version, range, expected] of cases) {
    it(`${version} ${expected ? 'satisfies' : 'does not satisfy'} ${range}`, () => {
      assert.equal(satisfies(version, range), expected);
    });
  }
  it('includePrerelease admits prereleases inside the bounds', () => {
    assert.equal(satisfies('6.0.0-beta.1', '>=5 <7', true), true);
  });
});

describe('doctor: every instrumentation of the list can be read', () => {
  it('each package of src/instrumentations.ts gives its module definitions', () => {
    for (const [name, p] of Object.entries(PACKAGES)) {
      const modules = moduleSupportOf(p);
      assert.ok(modules !== undefined, `${name}: ${p} could not be read`);
      const deferred = (DEFERRED_MODULES as Record<string, readonly string[] | undefined>)[name];
      for (const m of deferred ?? []) {
        assert.ok(
          modules.some((x) => x.name === m && x.supportedVersions.length > 0),
          `${name}: ${m} has no supported versions in ${JSON.stringify(modules)}`,
        );
      }
    }
  });
  it('the distro’s own database hooks give their ranges', () => {
    const names = dbClientSupport().map((m) => m.name);
    assert.deepEqual(names.sort(), [
      '@node-redis/client',
      '@redis/client',
      'ioredis',
      'mysql2',
      'pg',
      'pg-pool',
      'redis',
    ]);
  });
  it('a package that is not there reads as unknown, not as a crash', () => {
    assert.equal(moduleSupportOf('@opentelemetry/instrumentation-does-not-exist'), undefined);
  });
});

describe('doctor: frameworks and their route source', () => {
  it('Express 4 and 5: the request properties; Express 3: no template, a warning', () => {
    const f = run([pkg('express', '4.22.3')]);
    assert.equal(
      line(f, 'express'),
      "ok    express 4.22.3: endpoint from Express's own request properties (req.baseUrl + req.route.path); no route = __unmatched__; handler spans (express)",
    );
    const old = run([pkg('express', '3.21.2')]);
    assert.match(
      line(old, 'express'),
      /^warn {2}express 3\.21\.2: no route template: version 3\.21\.2 outside >=4 <6; endpoint = URL path with ID-like segments as :id; no handler spans: version 3\.21\.2 outside >=4\.0\.0 <6 \(express\)$/,
    );
  });

  it('Koa with and without @koa/router', () => {
    const plain = run([pkg('koa', '2.16.4')]);
    assert.match(
      line(plain, 'koa'),
      /^ok {4}koa 2\.16\.4: no @koa\/router or koa-router: endpoint = URL path with ID-like segments as :id; /,
    );
    const routed = run([pkg('koa', '3.3.0'), pkg('@koa/router', '15.7.0')]);
    assert.match(
      line(routed, 'koa'),
      /^ok {4}koa 3\.3\.0: endpoint from @koa\/router's or koa-router's matched route \(ctx\._matchedRoute, prefixes included\); a router's no-match = __unmatched__ with @koa\/router 15\.7\.0; /,
    );
    // The router has no line of its own.
    assert.ok(!routed.some((x) => x.library === '@koa/router'));
  });

  it('Fastify 5, Fastify 4.10+, and an older Fastify 4 with __unmatched__ only', () => {
    assert.match(
      line(run([pkg('fastify', '5.12.8')]), 'fastify'),
      /^ok {4}fastify 5\.12\.8: endpoint from an onRequest hook added through the fastify\.initialization channel/,
    );
    assert.match(
      line(run([pkg('fastify', '4.29.1')]), 'fastify'),
      /^ok {4}fastify 4\.29\.1: endpoint from an onRequest hook added through the fastify\.initialization channel/,
    );
    assert.match(
      line(run([pkg('fastify', '4.5.0')]), 'fastify'),
      /^ok {4}fastify 4\.5\.0: not-found handler = __unmatched__ only: route templates need Fastify 4\.10 or later/,
    );
  });

  it('NestJS goes through its adapter; without one it says so', () => {
    const f = run([
      pkg('@nestjs/core', '11.1.0'),
      pkg('@nestjs/platform-fastify', '11.1.0'),
      pkg('fastify', '5.12.8', { dependents: ['@nestjs/platform-fastify'] }),
    ]);
    assert.match(
      line(f, '@nestjs/core'),
      /^ok {4}@nestjs\/core 11\.1\.0: through @nestjs\/platform-fastify 11\.1\.0 \(Fastify's route template, global prefix and versioning included\); /,
    );
    assert.match(
      line(f, 'fastify'),
      /^ok {4}fastify 5\.12\.8 \(through @nestjs\/platform-fastify\): /,
    );
    assert.match(
      line(run([pkg('@nestjs/core', '10.4.0')]), '@nestjs/core'),
      /^warn {2}@nestjs\/core 10\.4\.0: no HTTP adapter found/,
    );
  });

  it('hapi 21; no framework at all: the normalised path', () => {
    assert.match(
      line(run([pkg('@hapi/hapi', '21.4.13')]), '@hapi/hapi'),
      /^ok {4}@hapi\/hapi 21\.4\.13: endpoint from hapi's route path \(request\.route\.path, in hapi's \{param\} syntax\); not-found route = __unmatched__; /,
    );
    const none = run([]).filter((f) => f.group === 'frameworks');
    assert.deepEqual(
      none.map((f) => f.text),
      ['no framework found (node:http): endpoint = URL path with ID-like segments as :id'],
    );
  });
});

describe('doctor: database clients', () => {
  it('the redis 3 client gets spans, durations and the health check: no false failure', () => {
    const f = run([pkg('redis', '3.1.2')]);
    assert.equal(
      line(f, 'redis'),
      'ok    redis 3.1.2: spans (redis), db_client_operation_duration_seconds, redis health check (PING on its clients)',
    );
    assert.equal(exitCode(f), 0);
  });

  it('redis 4 is instrumented through @redis/client, which has no line of its own', () => {
    const f = run([
      pkg('redis', '4.7.1'),
      pkg('@redis/client', '1.6.1', { dependents: ['redis'] }),
    ]);
    assert.match(
      line(f, 'redis'),
      /^ok {4}redis 4\.7\.1: spans \(redis\) through @redis\/client 1\.6\.1, db_client_operation_duration_seconds, redis health check \(PING on its clients\)$/,
    );
    assert.ok(!f.some((x) => x.library === '@redis/client'));
  });

  it('pg, pg-pool, mysql2 and ioredis: spans, metrics, pools and health checks', () => {
    const f = run([
      pkg('pg', '8.23.1'),
      pkg('pg-pool', '3.14.0', { dependents: ['pg'] }),
      pkg('mysql2', '3.26.1'),
      pkg('ioredis', '5.11.1'),
    ]);
    assert.equal(
      line(f, 'pg'),
      'ok    pg 8.23.1: spans (pg), db_client_operation_duration_seconds',
    );
    assert.equal(
      line(f, 'pg-pool'),
      'ok    pg-pool 3.14.0 (through pg): spans (pg), database_connections_active, database health check (SELECT 1 on its pools)',
    );
    assert.equal(
      line(f, 'mysql2'),
      'ok    mysql2 3.26.1: spans (mysql2), db_client_operation_duration_seconds, database_connections_active (pools), database health check (SELECT 1 on its pools)',
    );
    assert.equal(
      line(f, 'ioredis'),
      'ok    ioredis 5.11.1: spans (ioredis), db_client_operation_duration_seconds, redis health check (PING on its clients)',
    );
  });

  it('metrics-only mode, a disabled instrumentation and a health check turned off', () => {
    const metricsOnly = run([pkg('pg', '8.23.1')], { settings: { tracing: false } });
    assert.equal(
      line(metricsOnly, 'pg'),
      'ok    pg 8.23.1: db_client_operation_duration_seconds; spans off: OTEL_TRACES_EXPORTER=none',
    );
    const disabled = run([pkg('ioredis', '5.11.1')], {
      instrumentations: listed({ ioredis: 'OTEL_NODE_DISABLED_INSTRUMENTATIONS' }),
      settings: { healthChecks: ['database'] },
    });
    assert.equal(
      line(disabled, 'ioredis'),
      'ok    ioredis 5.11.1: db_client_operation_duration_seconds; spans off: OTEL_NODE_DISABLED_INSTRUMENTATIONS; redis health check off: DATALAB_HEALTH_CHECKS',
    );
    const redisOff = run([pkg('redis', '3.1.2')], { settings: { tracing: false } });
    assert.match(
      line(redisOff, 'redis'),
      /^ok {4}redis 3\.1\.2: db_client_operation_duration_seconds, redis health check \(PING on its clients\); spans off: OTEL_TRACES_EXPORTER=none$/,
    );
  });

  it('a version outside every range: a warning, never a failure', () => {
    const f = run([pkg('mysql2', '1.2.0')]);
    assert.equal(
      line(f, 'mysql2'),
      'warn  mysql2 1.2.0: no spans: version 1.2.0 outside >=1.4.2 <4 (mysql2); no metrics or health check: version 1.2.0 of mysql2 outside >=3 <4',
    );
    assert.equal(exitCode(f), 0);
  });

  it('ORMs: their driver decides', () => {
    const sequelize = run([
      pkg('sequelize', '6.37.8'),
      pkg('pg', '8.23.1', { dependents: ['sequelize'], declared: true }),
    ]);
    assert.equal(line(sequelize, 'sequelize'), 'ok    sequelize 6.37.8: through pg 8.23.1');
    // Kysely declares no driver: the application's own decides.
    const kysely = run([pkg('kysely', '0.28.2'), pkg('mysql2', '3.26.1')]);
    assert.equal(line(kysely, 'kysely'), 'ok    kysely 0.28.2: through mysql2 3.26.1');
    // A driver the ORM cannot run on is not named.
    const knex = run([pkg('knex', '3.3.0'), pkg('pg', '8.23.1'), pkg('mongodb', '6.22.0')]);
    assert.match(
      line(knex, 'knex'),
      /^ok {4}knex 3\.3\.0: (spans \(knex\); )?through pg 8\.23\.1$/,
    );
    const mikro = run([
      pkg('@mikro-orm/core', '6.4.0'),
      pkg('@mikro-orm/postgresql', '6.4.0'),
      pkg('pg', '8.20.0', { dependents: ['@mikro-orm/postgresql'] }),
      pkg('mysql2', '3.26.1'),
    ]);
    assert.equal(line(mikro, '@mikro-orm/core'), 'ok    @mikro-orm/core 6.4.0: through pg 8.20.0');
    const sqlite = run([
      pkg('typeorm', '0.3.20'),
      pkg('sqlite3', '5.1.7', { dependents: ['typeorm'], declared: true }),
    ]);
    assert.equal(
      line(sqlite, 'typeorm'),
      'warn  typeorm 0.3.20: through sqlite3 5.1.7 (not instrumented)',
    );
    const none = run([pkg('typeorm', '0.3.20')]);
    assert.match(line(none, 'typeorm'), /^warn {2}typeorm 0\.3\.20: no database driver found/);
  });

  it('Prisma: nothing from its engine; through pg with @prisma/adapter-pg', () => {
    const engine = run([pkg('@prisma/client', '6.19.0')]);
    assert.equal(
      line(engine, '@prisma/client'),
      "warn  @prisma/client 6.19.0: Prisma's query engine talks to the database itself: no database spans, no db_client_operation_duration_seconds, no database_connections_active, no health check on its connections; a driver adapter such as @prisma/adapter-pg goes through pg and gets them",
    );
    assert.equal(exitCode(engine), 0);
    const adapter = run([
      pkg('@prisma/client', '7.10.1'),
      pkg('@prisma/adapter-pg', '7.10.1'),
      pkg('pg', '8.23.1', { dependents: ['@prisma/adapter-pg'] }),
    ]);
    assert.equal(
      line(adapter, '@prisma/client'),
      'ok    @prisma/client 7.10.1: Prisma with driver adapter @prisma/adapter-pg 7.10.1 through pg 8.23.1',
    );
  });
});

describe('doctor: loggers', () => {
  it('winston and pino: fields, and export only with a logs exporter', () => {
    const f = run([pkg('winston', '3.19.0'), pkg('pino', '10.4.0')], {
      settings: { logsExporters: ['otlp'] },
    });
    assert.equal(
      line(f, 'winston'),
      'ok    winston 3.19.0: trace_id, span_id, trace_flags, correlation_id on each record (winston); records exported (OTEL_LOGS_EXPORTER=otlp)',
    );
    assert.match(
      line(f, 'pino'),
      /^ok {4}pino 10\.4\.0: service, trace_id, .*\(pino\); records exported/,
    );
    const old = run([pkg('pino', '7.11.0')]);
    assert.equal(
      line(old, 'pino'),
      'warn  pino 7.11.0: not instrumented: version 7.11.0 outside >=8 <11 (pino)',
    );
  });

  it('bunyan: what the upstream instrumentation gets, when the list has it', () => {
    const bunyan: InstrumentationState = {
      name: 'bunyan',
      package: '@opentelemetry/instrumentation-bunyan',
      modules: moduleSupportOf('@opentelemetry/instrumentation-bunyan'),
    };
    const instrumentations = listed().some((i) => i.name === 'bunyan')
      ? listed()
      : listed({}, [bunyan]);
    assert.equal(
      line(run([pkg('bunyan', '1.8.15')], { instrumentations }), 'bunyan'),
      'ok    bunyan 1.8.15: trace_id, span_id, trace_flags on records made in a span (no correlation_id) (bunyan); records not exported (no OTEL_LOGS_EXPORTER)',
    );
    assert.match(
      line(run([pkg('bunyan', '2.0.5')], { instrumentations }), 'bunyan'),
      /^warn {2}bunyan 2\.0\.5: not instrumented: version 2\.0\.5 outside /,
    );
    const without = listed().filter((i) => i.name !== 'bunyan');
    assert.equal(
      line(run([pkg('bunyan', '1.8.15')], { instrumentations: without }), 'bunyan'),
      'warn  bunyan 1.8.15: not instrumented: no instrumentation for it',
    );
  });
});

describe('doctor: every other instrumentation of the list', () => {
  const fake = (name: string, modules: ModuleSupport[], off?: string): InstrumentationState => ({
    name,
    package: `@opentelemetry/instrumentation-${name}`,
    modules,
    off,
  });
  const mongodb = fake('mongodb', [
    { name: 'mongodb', supportedVersions: ['>=3.3.0 <4', '>=4.0.0 <8'] },
  ]);

  it('a library the list instruments: its line, from the instrumentation’s own ranges', () => {
    const f = run([pkg('mongodb', '6.10.0'), pkg('amqplib', '0.10.9')], {
      instrumentations: listed({}, [
        mongodb,
        fake(
          'amqplib',
          [{ name: 'amqplib', supportedVersions: ['>=0.5.5 <3'] }],
          'OTEL_NODE_DISABLED_INSTRUMENTATIONS',
        ),
      ]),
    });
    assert.equal(line(f, 'mongodb'), 'ok    mongodb 6.10.0: spans (mongodb)');
    assert.equal(
      line(f, 'amqplib'),
      'off   amqplib 0.10.9: spans off: OTEL_NODE_DISABLED_INSTRUMENTATIONS',
    );
    // Built-in modules (node:dns, node:net) are lines without a package.
    assert.ok(
      f.every(
        (x) => x.group !== 'libraries' || x.library !== undefined || x.text.startsWith('node:'),
      ),
    );
  });

  it('a built-in module: listed when its instrumentation is loaded, silent otherwise', () => {
    const fs = fake('fs', [
      { name: 'fs', supportedVersions: ['*'] },
      { name: 'fs/promises', supportedVersions: ['*'] },
    ]);
    const on = run([], { instrumentations: listed({}, [fs]) });
    assert.deepEqual(
      on
        .filter((x) => x.group === 'libraries')
        .map((x) => `${x.status} ${x.text}`)
        .sort(),
      // dns and net are off by default.
      ['ok node:fs/promises: spans (fs)', 'ok node:fs: spans (fs)'],
    );
    const off = run([], {
      instrumentations: listed({}, [{ ...fs, off: 'not enabled by default' }]),
    });
    assert.ok(!off.some((x) => x.group === 'libraries' && x.text.startsWith('node:fs')));
  });

  it('outside its ranges: "not instrumented", a warning', () => {
    const f = run([pkg('mongodb', '8.0.1')], { instrumentations: listed({}, [mongodb]) });
    assert.equal(
      line(f, 'mongodb'),
      'warn  mongodb 8.0.1: not instrumented: version 8.0.1 outside >=3.3.0 <4 || >=4.0.0 <8 (mongodb)',
    );
    assert.equal(exitCode(f), 0);
  });

  it('an instrumentation that cannot be loaded is said once', () => {
    const f = run([], { instrumentations: listed({}, [{ ...mongodb, modules: undefined }]) });
    assert.deepEqual(
      f
        .filter((x) => x.group === 'libraries' && x.text.includes('mongodb'))
        .map((x) => `${x.status} ${x.text}`),
      [
        'warn mongodb: @opentelemetry/instrumentation-mongodb could not be loaded; what it instruments is not',
      ],
    );
  });

  it('HTTP: server and client spans follow the mode and the lists', () => {
    const f = run([], {
      settings: { tracing: false, httpClientMetrics: false },
    }).filter((x) => x.group === 'http');
    assert.deepEqual(
      f.map((x) => x.text),
      [
        'inbound (node:http, node:https, node:http2): http_requests_total, http_request_duration_seconds, http_requests_active; server spans off: OTEL_TRACES_EXPORTER=none',
        'outbound (node:http, node:https, fetch): outbound metrics off: DATALAB_HTTP_CLIENT_METRICS=false; client spans off: OTEL_TRACES_EXPORTER=none',
      ],
    );
  });
});

describe('doctor: configuration, exit code and report', () => {
  it('why an instrumentation is not loaded', () => {
    assert.equal(offReason('pg', ['pg'], {}), undefined);
    assert.equal(
      offReason('pg', [], { OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'redis, pg' }),
      'OTEL_NODE_DISABLED_INSTRUMENTATIONS',
    );
    assert.equal(
      offReason('pg', [], { OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http' }),
      'not in OTEL_NODE_ENABLED_INSTRUMENTATIONS',
    );
    assert.equal(
      offReason('fs', [], {}),
      'not enabled by default (OTEL_NODE_ENABLED_INSTRUMENTATIONS)',
    );
  });

  it('exit code 1 only for a failed check', () => {
    const warn: Finding = { status: 'warn', group: 'databases', text: 'x' };
    const off: Finding = { status: 'off', group: 'databases', text: 'y' };
    const fail: Finding = { status: 'FAIL', group: 'runtime', text: 'z' };
    assert.equal(exitCode([warn, off]), 0);
    assert.equal(exitCode([warn, fail]), 1);
  });

  it('groups, one line each, and a count', () => {
    const text = renderFindings([
      { status: 'ok', group: 'runtime', text: 'Node.js' },
      { status: 'warn', group: 'databases', text: 'mysql2 1.2.0: …' },
      { status: 'FAIL', group: 'runtime', text: 'endpoint' },
    ]);
    assert.equal(
      text,
      [
        'Runtime and exporters',
        'ok    Node.js',
        'FAIL  endpoint',
        '',
        'Databases',
        'warn  mysql2 1.2.0: …',
        '',
        '1 ok, 1 warnings, 0 off, 1 failed',
      ].join('\n'),
    );
  });
});
