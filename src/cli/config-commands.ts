/**
 * `datalab-otel config` (the effective configuration, secrets redacted) and `datalab-otel doctor`
 * (what can be checked from here, and what the preload would instrument in this application).
 */
import { createServer, Socket } from 'node:net';
import { type Config, findAppPackage, parseConfig, SETTINGS, type Setting } from '../config';
import { DEFERRED_MODULES, PACKAGES } from '../instrumentations';
import { atLeast, MIN_NODE_VERSION } from '../node-version';
import {
  DB_CLIENTS,
  DRIVERS,
  type Finding,
  type InstrumentationState,
  KOA_ROUTERS,
  LOGGERS,
  libraryFindings,
  NEST,
  ORMS,
  offReason,
  PRISMA,
  ROUTE_SOURCES,
} from './doctor';
import { dbClientSupport, moduleSupportOf, scanPackages } from './doctor-scan';

export { exitCode, type Finding, renderFindings } from './doctor';

type Env = Readonly<Record<string, string | undefined>>;

/** `https://user:pass@host/x` → `https://user:[REDACTED]@host/x`; anything unparsable is kept. */
export function redactUrl(value: string): string {
  try {
    const url = new URL(value);
    let changed = false;
    if (url.password !== '') {
      url.password = 'REDACTED';
      changed = true;
    } else if (
      url.username !== '' &&
      !/^(postgres|root|default|admin|[a-z_]{1,16})$/.test(url.username)
    ) {
      // A lone long "username" (https://TOKEN@host) is usually a credential.
      url.username = 'REDACTED';
      changed = true;
    }
    // libpq and others also take credentials as query parameters.
    for (const key of [...url.searchParams.keys()]) {
      if (/pass|secret|token|key|auth/i.test(key)) {
        url.searchParams.set(key, 'REDACTED');
        changed = true;
      }
    }
    return changed
      ? url
          .toString()
          .replace(/REDACTED/g, '[REDACTED]')
          .replace(/%5BREDACTED%5D/g, '[REDACTED]')
      : value;
  } catch {
    return value.replace(/\/\/[^@/\s]*@/, '//[REDACTED]@');
  }
}

/** `k1=v1,k2=v2` (OTEL_EXPORTER_OTLP_HEADERS) → `k1=[REDACTED],k2=[REDACTED]`. */
export function redactHeaders(value: string): string {
  return value
    .split(',')
    .map((pair) => {
      const eq = pair.indexOf('=');
      return eq === -1 ? '[REDACTED]' : `${pair.slice(0, eq).trim()}=[REDACTED]`;
    })
    .join(',');
}

function otlpEndpoint(env: Env, signal: 'traces' | 'metrics' | 'logs'): string {
  const specific = env[`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_ENDPOINT`];
  if (specific) return specific;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const protocol =
    env[`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_PROTOCOL`] ?? env.OTEL_EXPORTER_OTLP_PROTOCOL;
  if (protocol === 'grpc') return base ?? 'http://localhost:4317';
  return `${(base ?? 'http://localhost:4318').replace(/\/$/, '')}/v1/${signal}`;
}

/** A variable's value as `datalab-otel config` may print it. */
export function shownValue(setting: Setting, value: string): string {
  switch (setting.shown) {
    case 'secret':
      return '[REDACTED]';
    case 'url':
      return redactUrl(value);
    case 'headers':
      return redactHeaders(value);
    default:
      return value;
  }
}

/** JSON has no Infinity: "no limit" says what an unlimited limit means. */
function printable(value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) return 'no limit';
  if (Array.isArray(value)) return value.map(printable);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, printable(v)]));
  }
  return value;
}

export function effectiveConfig(
  env: Env,
  cwd: string,
): { config: Config; report: object; warnings: string[] } {
  const { config, warnings } = parseConfig(env, findAppPackage(undefined, cwd), cwd);
  const otlp: Record<string, string> = {};
  if (config.traces.exporters.includes('otlp'))
    otlp.traces = redactUrl(otlpEndpoint(env, 'traces'));
  if (config.metrics.exporters.includes('otlp'))
    otlp.metrics = redactUrl(otlpEndpoint(env, 'metrics'));
  if (config.logs.exporters.includes('otlp')) otlp.logs = redactUrl(otlpEndpoint(env, 'logs'));
  // Every variable of the settings table that is set, as the distro saw it (secrets redacted).
  const variables: Record<string, string> = {};
  const secretsSeen: Record<string, string> = {};
  for (const setting of SETTINGS) {
    const v = env[setting.env]?.trim();
    if (!v) continue;
    variables[setting.env] = shownValue(setting, v);
    if (setting.shown !== 'plain') secretsSeen[setting.env] = variables[setting.env] as string;
  }
  for (const name of ['DATABASE_URL', 'REDIS_URL']) {
    const v = env[name];
    if (v) secretsSeen[name] = redactUrl(v);
  }
  return {
    config,
    report: {
      ...(printable(config) as object),
      management: {
        ...config.management,
        token: config.management.token === undefined ? undefined : '[REDACTED]',
      },
      otlpEndpoints: otlp,
      variables,
      environment: secretsSeen,
    },
    warnings: warnings.map((w) => `${w.code}: ${w.message}`),
  };
}

/** `datalab-otel config --list`: every variable, its default and what it does, from the table. */
export function settingsList(): string {
  const width = Math.max(...SETTINGS.map((s) => s.env.length));
  return SETTINGS.map((s) => {
    const by = s.readBy === 'exporter' ? ' Read by the OTLP exporters.' : '';
    return `${s.env.padEnd(width)}  ${s.doc}${by} Default: ${s.defaultText}.`;
  }).join('\n');
}

function tcpReachable(url: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let host: string;
    let port: number;
    try {
      const u = new URL(url);
      host = u.hostname;
      port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
    } catch {
      resolve('not a URL');
      return;
    }
    const socket = new Socket();
    const done = (problem: string | undefined) => {
      socket.destroy();
      resolve(problem);
    };
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs} ms`));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    socket.connect(port, host, () => done(undefined));
  });
}

function portFree(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    server.listen(port, host, () => server.close(() => resolve(undefined)));
  });
}

/**
 * The service name of a distro already serving on a taken management port: doctor is often run
 * inside the container or host of the running service, whose own management server holds the
 * port. Undefined when what listens there is not the distro's liveness probe.
 */
async function runningDistro(host: string, port: number): Promise<string | undefined> {
  // A wildcard bind answers on loopback.
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const hostPart = target.includes(':') ? `[${target}]` : target;
  try {
    const res = await fetch(`http://${hostPart}:${port}/health/live`, {
      signal: AbortSignal.timeout(1500),
    });
    const body = (await res.json()) as { service?: unknown; status?: unknown };
    return typeof body.service === 'string' && typeof body.status === 'string'
      ? body.service
      : undefined;
  } catch {
    return undefined;
  }
}

/** Module names the doctor looks for even when nothing in package.json brings them. */
function knownModules(): string[] {
  return [
    ...ROUTE_SOURCES.map((r) => r.module),
    NEST.module,
    ...Object.keys(NEST.adapters),
    ...KOA_ROUTERS,
    ...DB_CLIENTS.map((c) => c.module),
    ...DRIVERS,
    ...ORMS.map((o) => o.module),
    PRISMA.module,
    ...LOGGERS.map((l) => l.module),
    ...Object.values(DEFERRED_MODULES).flat(),
  ];
}

/**
 * The instrumentations src/instrumentations.ts lists, with the modules each hooks and the
 * versions it patches. One whose modules the application does not have is not loaded here:
 * its module names are enough to say so.
 */
function instrumentationStates(
  env: Env,
  loaded: readonly string[],
  installed: ReadonlySet<string>,
): InstrumentationState[] {
  return Object.entries(PACKAGES).map(([name, pkg]) => {
    const deferred = (DEFERRED_MODULES as Record<string, readonly string[] | undefined>)[name];
    const modules =
      deferred !== undefined && !deferred.some((m) => installed.has(m))
        ? [...new Set(deferred)].map((m) => ({ name: m, supportedVersions: [] }))
        : moduleSupportOf(pkg);
    return { name, package: pkg, modules, off: offReason(name, loaded, env) };
  });
}

/** `datalab-otel doctor`: the checks that need the machine, then the application's libraries. */
export async function doctor(env: Env, cwd: string): Promise<Finding[]> {
  const findings: Finding[] = [];
  const runtime = (status: Finding['status'], text: string) =>
    findings.push({ status, group: 'runtime', text });
  const { config, warnings } = effectiveConfig(env, cwd);
  runtime(
    atLeast(process.versions.node, MIN_NODE_VERSION) ? 'ok' : 'FAIL',
    `Node.js ${process.versions.node} (needs >= ${MIN_NODE_VERSION})`,
  );
  for (const w of warnings) runtime('FAIL', `configuration: ${w}`);
  if (config.sdkDisabled) {
    runtime('skip', 'OTEL_SDK_DISABLED=true: the distro is off; nothing is instrumented');
    return findings;
  }

  for (const signal of ['traces', 'metrics', 'logs'] as const) {
    if (!config[signal].exporters.includes('otlp')) continue;
    const endpoint = otlpEndpoint(env, signal);
    const problem = await tcpReachable(endpoint, 2000);
    runtime(
      problem === undefined ? 'ok' : 'FAIL',
      `${signal} exporter endpoint ${redactUrl(endpoint)}${problem ? `: unreachable (${problem})` : ' reachable'}`,
    );
  }
  if (config.traceFile.enabled) {
    runtime('skip', `traces go to local files in ${config.traceFile.dir} (no OTLP endpoint)`);
  }
  const tracing = config.traces.exporters.length > 0 || config.traceFile.enabled;
  const spansOff = env.OTEL_TRACES_EXPORTER?.trim()
    ? `OTEL_TRACES_EXPORTER=${env.OTEL_TRACES_EXPORTER.trim()}`
    : 'no traces exporter';
  if (!tracing) runtime('off', `spans: ${spansOff} (metrics-only mode)`);

  const { host, port } = config.management;
  const busy = await portFree(host, port);
  const running = busy === 'EADDRINUSE' ? await runningDistro(host, port) : undefined;
  if (busy === undefined) {
    runtime('ok', `management port ${host}:${port} is free`);
  } else if (running !== undefined && running === config.serviceName) {
    runtime(
      'ok',
      `management port ${host}:${port} is in use by ${running} itself, running with the distro`,
    );
  } else {
    const holder = running === undefined ? '' : ` by another service with the distro (${running})`;
    runtime(
      'FAIL',
      `management port ${host}:${port}: not available (${busy})${holder}; the service would serve /metrics only once it frees`,
    );
  }
  const runtimeMetrics = config.instrumentations.includes('runtime-node');
  runtime(
    runtimeMetrics ? 'ok' : 'off',
    `runtime metrics (event-loop delay, heap, GC)${runtimeMetrics ? '' : `: ${offReason('runtime-node', config.instrumentations, env)}`}`,
  );

  const { packages } = scanPackages(cwd, knownModules());
  const installed = new Set(packages.map((p) => p.name));
  findings.push(
    ...libraryFindings({
      packages,
      instrumentations: instrumentationStates(env, config.instrumentations, installed),
      settings: {
        tracing,
        spansOff,
        logsExporters: config.logs.exporters,
        healthChecks: config.health.checks,
        httpClientMetrics: config.metrics.httpClient,
        dbClients: dbClientSupport(),
        nodeVersion: process.versions.node,
      },
    }),
  );
  return findings;
}
