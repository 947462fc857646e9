/**
 * `datalab-otel doctor`'s decisions about an application's libraries: from the packages it has,
 * the instrumentations the distro would load (with the module versions each patches) and the
 * configuration, what will be instrumented and how, and what will not and why. No I/O here:
 * doctor-scan.ts reads the machine, config-commands.ts runs the checks that need the network.
 *
 * The frameworks, database clients, ORMs and loggers the distro treats specially are described
 * by the tables below (docs/supported.md is their user-facing form); every other library is
 * matched against whatever instrumentations src/instrumentations.ts lists.
 */
import { isBuiltin } from 'node:module';
import { satisfies } from './semver';

/** `FAIL` only for what keeps the distro from working as configured; everything else exits 0. */
export type Status = 'ok' | 'warn' | 'off' | 'skip' | 'FAIL';
export type Group = 'runtime' | 'http' | 'frameworks' | 'databases' | 'logs' | 'libraries';

export const GROUP_TITLES: Readonly<Record<Group, string>> = {
  runtime: 'Runtime and exporters',
  http: 'HTTP',
  frameworks: 'Frameworks',
  databases: 'Databases',
  logs: 'Logs',
  libraries: 'Other libraries',
};

export interface Finding {
  readonly status: Status;
  readonly group: Group;
  readonly text: string;
  /** The package the line is about, and its installed version. */
  readonly library?: string;
  readonly version?: string;
}

export interface InstalledPackage {
  readonly name: string;
  readonly version: string;
  readonly dir: string;
  /** The application's package.json field that names it; undefined for a package brought by another. */
  readonly declared?: string;
  /** Installed packages that depend on this copy. */
  readonly dependents: readonly string[];
}

export interface ModuleSupport {
  readonly name: string;
  readonly supportedVersions: readonly string[];
}

export interface InstrumentationState {
  /** The short name of OTEL_NODE_ENABLED_INSTRUMENTATIONS (`pg`, `amqplib`). */
  readonly name: string;
  readonly package: string;
  /** The modules it hooks and the versions it patches; undefined when it could not be loaded. */
  readonly modules: readonly ModuleSupport[] | undefined;
  /** Why the preload would not load it (undefined: it would). */
  readonly off?: string;
}

export interface LibrarySettings {
  /** Spans leave the process (an exporter or the local trace file). */
  readonly tracing: boolean;
  /** Why spans are off, e.g. `OTEL_TRACES_EXPORTER=none`. */
  readonly spansOff: string;
  /** The logs exporters (empty: log records are not exported). */
  readonly logsExporters: readonly string[];
  readonly healthChecks: readonly string[];
  readonly httpClientMetrics: boolean;
  /** What the distro's own database client hooks (metrics, pools, health) patch. */
  readonly dbClients: readonly ModuleSupport[];
  /** The version of Node.js's built-in modules (`fs`, `net`, …). */
  readonly nodeVersion: string;
}

export interface LibraryInput {
  readonly packages: readonly InstalledPackage[];
  readonly instrumentations: readonly InstrumentationState[];
  readonly settings: LibrarySettings;
}

// ---------------------------------------------------------------------------------------------
// The tables

const NORMALISED = 'endpoint = URL path with ID-like segments as :id';

/** Where each framework's route template comes from (src/routes/, metrics/http.ts). */
export interface RouteSource {
  readonly framework: string;
  readonly module: string;
  readonly range: string;
  readonly route: string;
}

export const ROUTE_SOURCES: readonly RouteSource[] = [
  {
    framework: 'Express',
    module: 'express',
    range: '>=4 <6',
    route:
      "endpoint from Express's own request properties (req.baseUrl + req.route.path); no route = __unmatched__",
  },
  {
    framework: 'Fastify',
    module: 'fastify',
    range: '>=4.10.0 <6',
    route:
      'endpoint from an onRequest hook added through the fastify.initialization channel (the route URL with every register() prefix; not-found handler = __unmatched__)',
  },
  {
    framework: 'Fastify',
    module: 'fastify',
    range: '>=4.0.0 <4.10.0',
    route:
      'not-found handler = __unmatched__ only: route templates need Fastify 4.10 or later (other requests: normalised path)',
  },
  {
    framework: 'Koa',
    module: 'koa',
    range: '>=2 <4',
    route:
      "endpoint from @koa/router's or koa-router's matched route (ctx._matchedRoute, prefixes included); a router's no-match = __unmatched__",
  },
  {
    framework: 'hapi',
    module: '@hapi/hapi',
    range: '>=17 <22',
    route:
      "endpoint from hapi's route path (request.route.path, in hapi's {param} syntax); not-found route = __unmatched__",
  },
];

/** NestJS routes through its HTTP adapter: the adapter's framework gives the template. */
export const NEST = {
  module: '@nestjs/core',
  range: '>=10 <12',
  adapters: { '@nestjs/platform-express': 'Express', '@nestjs/platform-fastify': 'Fastify' },
} as const;

/** The routers whose matched route the Koa source reads (src/routes/koa.ts). */
export const KOA_ROUTERS: readonly string[] = ['@koa/router', 'koa-router'];

/** What the distro's own hooks (src/db/clients.ts, src/health/) make of each client. */
interface DbClient {
  readonly module: string;
  /** What comes from the distro's own hooks when they patch the module. */
  readonly products: readonly { readonly what: string; readonly check?: string }[];
  /** Said when the distro has nothing of its own for this client. */
  readonly without?: string;
  /** Modules of the same client that its instrumentation hooks instead (node-redis 4+). */
  readonly through?: readonly string[];
  /** Lines for this module are folded into the parent's when the parent brought it. */
  readonly partOf?: string;
}

export const DB_CLIENTS: readonly DbClient[] = [
  { module: 'pg', products: [{ what: 'db_client_operation_duration_seconds' }] },
  {
    module: 'pg-pool',
    products: [
      { what: 'database_connections_active' },
      { what: 'database health check (SELECT 1 on its pools)', check: 'database' },
    ],
  },
  {
    module: 'mysql2',
    products: [
      { what: 'db_client_operation_duration_seconds' },
      { what: 'database_connections_active (pools)' },
      { what: 'database health check (SELECT 1 on its pools)', check: 'database' },
    ],
  },
  {
    module: 'ioredis',
    products: [
      { what: 'db_client_operation_duration_seconds' },
      { what: 'redis health check (PING on its clients)', check: 'redis' },
    ],
  },
  {
    module: 'redis',
    products: [
      { what: 'db_client_operation_duration_seconds' },
      { what: 'redis health check (PING on its clients)', check: 'redis' },
    ],
    through: ['@redis/client', '@node-redis/client'],
  },
  { module: '@redis/client', products: [], partOf: 'redis' },
  { module: '@node-redis/client', products: [], partOf: 'redis' },
];

/** Database drivers an ORM or a Prisma adapter may go through. */
export const DRIVERS: readonly string[] = [
  'pg',
  'mysql2',
  'mysql',
  'mariadb',
  'tedious',
  'oracledb',
  'sqlite3',
  'better-sqlite3',
  'mongodb',
];

export interface Orm {
  readonly name: string;
  readonly module: string;
  /** The drivers it can run on (of DRIVERS). */
  readonly drivers: readonly string[];
  /** Packages of the same ORM that bring its driver (MikroORM's per-database packages). */
  readonly family?: string;
}

const SQL = [
  'pg',
  'mysql2',
  'mysql',
  'mariadb',
  'tedious',
  'oracledb',
  'sqlite3',
  'better-sqlite3',
];

export const ORMS: readonly Orm[] = [
  { name: 'Sequelize', module: 'sequelize', drivers: SQL },
  { name: 'Knex', module: 'knex', drivers: SQL },
  { name: 'TypeORM', module: 'typeorm', drivers: [...SQL, 'mongodb'] },
  { name: 'Kysely', module: 'kysely', drivers: SQL },
  {
    name: 'MikroORM',
    module: '@mikro-orm/core',
    drivers: [...SQL, 'mongodb'],
    family: '@mikro-orm/',
  },
];

export const PRISMA = { module: '@prisma/client', adapters: '@prisma/adapter-' } as const;

interface Logger {
  readonly module: string;
  readonly fields: string;
}

export const LOGGERS: readonly Logger[] = [
  { module: 'winston', fields: 'trace_id, span_id, trace_flags, correlation_id on each record' },
  {
    module: 'pino',
    fields:
      'service, trace_id, span_id, trace_flags, correlation_id on each record, transports included',
  },
  {
    module: 'bunyan',
    fields: 'trace_id, span_id, trace_flags on records made in a span (no correlation_id)',
  },
];

// ---------------------------------------------------------------------------------------------
// Decisions

type Spans =
  | { readonly kind: 'on'; readonly names: readonly string[] }
  | { readonly kind: 'off'; readonly reason: string }
  | {
      readonly kind: 'outside';
      readonly ranges: readonly string[];
      readonly names: readonly string[];
    }
  | { readonly kind: 'none' };

function rangesFor(i: InstrumentationState, module: string): readonly string[] {
  return (i.modules ?? []).filter((m) => m.name === module).flatMap((m) => m.supportedVersions);
}

function supports(ranges: readonly string[], version: string): boolean {
  return ranges.some((r) => satisfies(version, r));
}

/** What the instrumentations listed make of `module` at `version`. */
function instrumentationsOf(input: LibraryInput, module: string, version: string): Spans {
  const hooking = input.instrumentations.filter((i) => i.modules?.some((m) => m.name === module));
  if (hooking.length === 0) return { kind: 'none' };
  const patching = hooking.filter((i) => supports(rangesFor(i, module), version));
  if (patching.length === 0) {
    return {
      kind: 'outside',
      ranges: hooking.flatMap((i) => rangesFor(i, module)),
      names: hooking.map((i) => i.name),
    };
  }
  const loaded = patching.filter((i) => i.off === undefined);
  if (loaded.length === 0) return { kind: 'off', reason: patching[0]?.off as string };
  return { kind: 'on', names: loaded.map((i) => i.name) };
}

function spansOf(input: LibraryInput, module: string, version: string): Spans {
  const s = instrumentationsOf(input, module, version);
  if (s.kind === 'on' && !input.settings.tracing) {
    return { kind: 'off', reason: input.settings.spansOff };
  }
  return s;
}

function spansText(s: Spans, version: string, label = 'spans'): string {
  switch (s.kind) {
    case 'on':
      return `${label} (${s.names.join(', ')})`;
    case 'off':
      return `${label} off: ${s.reason}`;
    case 'outside':
      return `no ${label}: version ${version} outside ${s.ranges.join(' || ')} (${s.names.join(', ')})`;
    default:
      return `no ${label} (no instrumentation)`;
  }
}

function copiesOf(input: LibraryInput, module: string): InstalledPackage[] {
  return input.packages
    .filter((p) => p.name === module)
    .sort((a, b) => a.version.localeCompare(b.version, 'en', { numeric: true }));
}

/** `pg 8.23.1`, with the package that brought it when the application does not declare it. */
function label(p: InstalledPackage): string {
  if (p.declared !== undefined) return `${p.name} ${p.version}`;
  if (p.dependents.length === 0) return `${p.name} ${p.version} (not in package.json)`;
  return `${p.name} ${p.version} (through ${p.dependents.join(', ')})`;
}

function finding(status: Status, group: Group, p: InstalledPackage, text: string): Finding {
  return { status, group, library: p.name, version: p.version, text: `${label(p)}: ${text}` };
}

function frameworkFindings(input: LibraryInput, handled: Set<string>): Finding[] {
  const out: Finding[] = [];
  const modules = [...new Set(ROUTE_SOURCES.map((r) => r.module))];
  for (const module of modules) {
    handled.add(module);
    const sources = ROUTE_SOURCES.filter((r) => r.module === module);
    for (const p of copiesOf(input, module)) {
      const source = sources.find((r) => satisfies(p.version, r.range));
      const spans = spansText(spansOf(input, module, p.version), p.version, 'handler spans');
      if (source === undefined) {
        out.push(
          finding(
            'warn',
            'frameworks',
            p,
            `no route template: version ${p.version} outside ${sources.map((r) => r.range).join(' || ')}; ${NORMALISED}; ${spans}`,
          ),
        );
        continue;
      }
      let route = source.route;
      if (module === 'koa') {
        const routers = KOA_ROUTERS.flatMap((name) =>
          copiesOf(input, name).map((r) => `${name} ${r.version}`),
        );
        for (const name of KOA_ROUTERS) handled.add(name);
        route =
          routers.length > 0
            ? `${route} with ${routers.join(', ')}`
            : `no @koa/router or koa-router: ${NORMALISED}`;
      }
      out.push(finding('ok', 'frameworks', p, `${route}; ${spans}`));
    }
  }
  handled.add(NEST.module);
  for (const p of copiesOf(input, NEST.module)) {
    const spans = spansText(spansOf(input, NEST.module, p.version), p.version, 'handler spans');
    const adapters = Object.entries(NEST.adapters).flatMap(([adapter, framework]) =>
      copiesOf(input, adapter).map((a) => ({ a, framework })),
    );
    for (const adapter of Object.keys(NEST.adapters)) handled.add(adapter);
    if (!satisfies(p.version, NEST.range)) {
      out.push(
        finding(
          'warn',
          'frameworks',
          p,
          `version ${p.version} outside ${NEST.range}: not known to work; the route template comes from its adapter's framework (see its line); ${spans}`,
        ),
      );
    } else if (adapters.length === 0) {
      out.push(
        finding(
          'warn',
          'frameworks',
          p,
          `no HTTP adapter found (${Object.keys(NEST.adapters).join(', ')}): ${NORMALISED}; ${spans}`,
        ),
      );
    } else {
      const through = adapters
        .map(
          ({ a, framework }) =>
            `${a.name} ${a.version} (${framework}'s route template, global prefix and versioning included)`,
        )
        .join(', ');
      out.push(finding('ok', 'frameworks', p, `through ${through}; ${spans}`));
    }
  }
  if (out.length === 0) {
    out.push({
      status: 'ok',
      group: 'frameworks',
      text: `no framework found (node:http): ${NORMALISED}`,
    });
  }
  return out;
}

function httpFindings(input: LibraryInput): Finding[] {
  const { settings } = input;
  const state = (name: string): string | undefined => {
    const i = input.instrumentations.find((x) => x.name === name);
    if (i === undefined) return `no ${name} instrumentation`;
    if (i.off !== undefined) return i.off;
    return settings.tracing ? undefined : settings.spansOff;
  };
  const server = state('http');
  const client = ['http', 'undici'].filter((n) => state(n) === undefined);
  const clientOff = state('http') ?? state('undici');
  return [
    {
      status: 'ok',
      group: 'http',
      text: `inbound (node:http, node:https, node:http2): http_requests_total, http_request_duration_seconds, http_requests_active; ${
        server === undefined ? 'server spans' : `server spans off: ${server}`
      }`,
    },
    {
      status: 'ok',
      group: 'http',
      text: `outbound (node:http, node:https, fetch): ${
        settings.httpClientMetrics
          ? 'http_client_requests_total, http_client_request_duration_seconds'
          : 'outbound metrics off: DATALAB_HTTP_CLIENT_METRICS=false'
      }; ${client.length > 0 ? `client spans (${client.join(', ')})` : `client spans off: ${clientOff}`}`,
    },
  ];
}

interface DbLine {
  readonly status: Status;
  readonly text: string;
  /** Something of it is recorded (spans when traced, metrics, health). */
  readonly instrumented: boolean;
}

function dbLine(input: LibraryInput, client: DbClient, p: InstalledPackage): DbLine {
  let spans = spansOf(input, client.module, p.version);
  let via = '';
  let viaVersion: string | undefined;
  let viaModule: string | undefined;
  if (spans.kind !== 'on' && spans.kind !== 'off' && client.through !== undefined) {
    // node-redis 4+: the instrumentation hooks the client package `redis` re-exports.
    for (const inner of client.through) {
      for (const c of copiesOf(input, inner).filter((x) => x.dependents.includes(client.module))) {
        const s = spansOf(input, inner, c.version);
        if (s.kind === 'on' || s.kind === 'off' || spans.kind === 'none') {
          spans = s;
          via = ` through ${c.name} ${c.version}`;
          viaVersion = c.version;
          viaModule = inner;
        }
      }
    }
  }
  // node-redis 4: the distro's own hooks, like the instrumentation, patch the inner client.
  const hooked = viaModule ?? client.module;
  const ours = input.settings.dbClients.filter((m) => m.name === hooked);
  const patched =
    ours.length > 0 &&
    supports(
      ours.flatMap((m) => m.supportedVersions),
      viaVersion ?? p.version,
    );
  const parts: string[] = [];
  const missing: string[] = [];
  const spanText = `${spansText(spans, viaVersion ?? p.version)}${via}`;
  // Spans recorded lead the list; spans not recorded are said after what is.
  if (spans.kind === 'on') parts.push(spanText);
  else missing.push(spanText);
  let products = 0;
  for (const product of client.products) {
    if (!patched) continue;
    if (product.check !== undefined && !input.settings.healthChecks.includes(product.check)) {
      missing.push(`${product.check} health check off: DATALAB_HEALTH_CHECKS`);
      continue;
    }
    parts.push(product.what);
    products++;
  }
  if (client.products.length > 0 && !patched) {
    const ranges = ours.flatMap((m) => m.supportedVersions).join(' || ') || 'none';
    missing.push(
      `no metrics or health check: version ${viaVersion ?? p.version} of ${hooked} outside ${ranges}`,
    );
  }
  if (client.without !== undefined) missing.push(client.without);
  const instrumented = spans.kind === 'on' || spans.kind === 'off' || products > 0;
  const status: Status =
    spans.kind === 'on' || products > 0 ? 'ok' : spans.kind === 'off' ? 'off' : 'warn';
  return {
    status,
    instrumented,
    text: [...(parts.length > 0 ? [parts.join(', ')] : []), ...missing].join('; '),
  };
}

function databaseFindings(input: LibraryInput, handled: Set<string>): Finding[] {
  const out: Finding[] = [];
  const lines = new Map<InstalledPackage, DbLine>();
  for (const client of DB_CLIENTS) {
    handled.add(client.module);
    for (const p of copiesOf(input, client.module)) {
      if (client.partOf !== undefined && p.dependents.includes(client.partOf)) continue;
      const line = dbLine(input, client, p);
      lines.set(p, line);
      out.push(finding(line.status, 'databases', p, line.text));
    }
  }
  /** `pg 8.23.1`, or `sqlite3 5.1.7 (not instrumented)`. */
  const through = (drivers: readonly InstalledPackage[]): { text: string; ok: boolean } => {
    const described = drivers.map((d) => {
      const known = lines.get(d);
      const s = spansOf(input, d.name, d.version);
      const ok = known !== undefined ? known.instrumented : s.kind === 'on' || s.kind === 'off';
      return {
        ok,
        text: ok ? `${d.name} ${d.version}` : `${d.name} ${d.version} (not instrumented)`,
      };
    });
    return { ok: described.some((x) => x.ok), text: described.map((x) => x.text).join(', ') };
  };
  const allDrivers = DRIVERS.flatMap((d) => copiesOf(input, d));
  for (const orm of ORMS) {
    handled.add(orm.module);
    const usable = allDrivers.filter((d) => orm.drivers.includes(d.name));
    for (const p of copiesOf(input, orm.module)) {
      const own = spansOf(input, orm.module, p.version);
      const ownText = own.kind === 'none' ? '' : `${spansText(own, p.version)}; `;
      const brought = usable.filter((d) =>
        d.dependents.some(
          (x) => x === orm.module || (orm.family !== undefined && x.startsWith(orm.family)),
        ),
      );
      const drivers = brought.length > 0 ? brought : usable;
      if (drivers.length === 0) {
        out.push(
          finding(
            'warn',
            'databases',
            p,
            `${ownText}no database driver found (${orm.drivers.join(', ')}): its queries are not instrumented`,
          ),
        );
        continue;
      }
      const t = through(drivers);
      out.push(
        finding(
          t.ok || own.kind === 'on' ? 'ok' : 'warn',
          'databases',
          p,
          `${ownText}through ${t.text}`,
        ),
      );
    }
  }
  handled.add(PRISMA.module);
  for (const p of copiesOf(input, PRISMA.module)) {
    const adapters = input.packages.filter((a) => a.name.startsWith(PRISMA.adapters));
    const viaAdapters = adapters.map((a) => ({
      a,
      drivers: allDrivers.filter((d) => d.dependents.includes(a.name)),
    }));
    const usable = viaAdapters.filter((x) => x.drivers.length > 0 && through(x.drivers).ok);
    if (usable.length > 0) {
      const text = usable
        .map((x) => `${x.a.name} ${x.a.version} through ${through(x.drivers).text}`)
        .join(', ');
      out.push(finding('ok', 'databases', p, `Prisma with driver adapter ${text}`));
      continue;
    }
    const adapterNote =
      adapters.length > 0
        ? ` (${adapters.map((a) => `${a.name} ${a.version}`).join(', ')}: no instrumented driver behind it)`
        : '';
    out.push(
      finding(
        'warn',
        'databases',
        p,
        `Prisma's query engine talks to the database itself${adapterNote}: no database spans, no db_client_operation_duration_seconds, no database_connections_active, no health check on its connections; a driver adapter such as @prisma/adapter-pg goes through pg and gets them`,
      ),
    );
  }
  return out;
}

function logFindings(input: LibraryInput, handled: Set<string>): Finding[] {
  const out: Finding[] = [];
  const exporters = input.settings.logsExporters;
  const otlp =
    exporters.length > 0
      ? `records exported (OTEL_LOGS_EXPORTER=${exporters.join(',')})`
      : 'records not exported (no OTEL_LOGS_EXPORTER)';
  for (const logger of LOGGERS) {
    handled.add(logger.module);
    for (const p of copiesOf(input, logger.module)) {
      const s = instrumentationsOf(input, logger.module, p.version);
      switch (s.kind) {
        case 'on':
          out.push(finding('ok', 'logs', p, `${logger.fields} (${s.names.join(', ')}); ${otlp}`));
          break;
        case 'off':
          out.push(finding('off', 'logs', p, `not instrumented: ${s.reason}`));
          break;
        case 'outside':
          out.push(
            finding(
              'warn',
              'logs',
              p,
              `not instrumented: version ${p.version} outside ${s.ranges.join(' || ')} (${s.names.join(', ')})`,
            ),
          );
          break;
        default:
          out.push(finding('warn', 'logs', p, 'not instrumented: no instrumentation for it'));
      }
    }
  }
  return out;
}

function otherFindings(input: LibraryInput, handled: ReadonlySet<string>): Finding[] {
  const out: Finding[] = [];
  const seen = new Set<string>(handled);
  for (const name of ['http', 'https']) seen.add(name);
  for (const i of input.instrumentations) {
    if (i.modules === undefined) {
      out.push({
        status: 'warn',
        group: 'libraries',
        text: `${i.name}: ${i.package} could not be loaded; what it instruments is not`,
      });
      continue;
    }
    for (const m of i.modules) {
      if (seen.has(m.name)) continue;
      seen.add(m.name);
      if (isBuiltin(m.name)) {
        // node:fs & co.: listed when loaded, since every application has them.
        const s = spansOf(input, m.name, input.settings.nodeVersion);
        if (s.kind === 'on') {
          out.push({
            status: 'ok',
            group: 'libraries',
            text: `node:${m.name}: ${spansText(s, '')}`,
          });
        }
        continue;
      }
      for (const p of copiesOf(input, m.name)) {
        const s = spansOf(input, m.name, p.version);
        const status: Status = s.kind === 'on' ? 'ok' : s.kind === 'off' ? 'off' : 'warn';
        const text =
          s.kind === 'outside'
            ? `not instrumented: version ${p.version} outside ${s.ranges.join(' || ')} (${s.names.join(', ')})`
            : spansText(s, p.version);
        out.push(finding(status, 'libraries', p, text));
      }
    }
  }
  return out;
}

/** One finding per library the application has that the distro treats or instruments. */
export function libraryFindings(input: LibraryInput): Finding[] {
  const handled = new Set<string>();
  return [
    ...httpFindings(input),
    ...frameworkFindings(input, handled),
    ...databaseFindings(input, handled),
    ...logFindings(input, handled),
    ...otherFindings(input, handled),
  ];
}

/** Why the preload would not load an instrumentation, from the two OpenTelemetry lists. */
export function offReason(
  name: string,
  loaded: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  if (loaded.includes(name)) return undefined;
  const list = (v: string | undefined) =>
    (v ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  if (list(env.OTEL_NODE_DISABLED_INSTRUMENTATIONS).includes(name)) {
    return 'OTEL_NODE_DISABLED_INSTRUMENTATIONS';
  }
  if (env.OTEL_NODE_ENABLED_INSTRUMENTATIONS?.trim()) {
    return 'not in OTEL_NODE_ENABLED_INSTRUMENTATIONS';
  }
  return 'not enabled by default (OTEL_NODE_ENABLED_INSTRUMENTATIONS)';
}

/** Exit code: 1 when any check failed; warnings, lines off and skips do not fail. */
export function exitCode(findings: readonly Finding[]): number {
  return findings.some((f) => f.status === 'FAIL') ? 1 : 0;
}

/** The text report: findings grouped, one line each, `<status padded to 4>  <text>`. */
export function renderFindings(findings: readonly Finding[]): string {
  const lines: string[] = [];
  for (const group of Object.keys(GROUP_TITLES) as Group[]) {
    const inGroup = findings.filter((f) => f.group === group);
    if (inGroup.length === 0) continue;
    if (lines.length > 0) lines.push('');
    lines.push(GROUP_TITLES[group]);
    for (const f of inGroup) lines.push(`${f.status.padEnd(4)}  ${f.text}`);
  }
  const count = (s: Status) => findings.filter((f) => f.status === s).length;
  lines.push(
    '',
    `${count('ok')} ok, ${count('warn')} warnings, ${count('off')} off, ${count('FAIL')} failed`,
  );
  return lines.join('\n');
}
