/**
 * The project's Collector distribution (datalab-otelcol, built by `npm run collector:build` into
 * .datalab/collector/) for the tests: finding it, running the shipped agent and gateway configs
 * with their listening ports moved to free local ones, and stopping them by PID.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, ROOT } from './app';
import { type ConfigProcess, startConfigProcess } from './config-process';
import { readYamlMap } from './prometheus-bundle';
import { IN_CI } from './prometheus-server';
import { isMap, type YamlMap, type YamlValue } from './prometheus-yaml';
import { skipBecause } from './skip';

export const OTELCOL = join(ROOT, '.datalab', 'collector', 'datalab-otelcol');

/**
 * The built binary, or the Collector binary DATALAB_OTELCOL names (an upstream otelcol-contrib,
 * to run the same tests on it). CI builds it before the tests (.ci/run), so there a missing
 * binary fails the test; elsewhere the test is skipped with the command that builds it.
 */
export function requireCollector(ctx: Mocha.Context): string {
  const chosen = process.env.DATALAB_OTELCOL;
  if (chosen) {
    if (!existsSync(chosen)) throw new Error(`DATALAB_OTELCOL=${chosen} does not exist`);
    return chosen;
  }
  if (existsSync(OTELCOL)) return OTELCOL;
  const reason = `${OTELCOL} is not built: run \`npm run collector:build\` (needs Go and the Go module proxy; .ci/run builds it)`;
  if (IN_CI) throw new Error(`${reason}: required in CI`);
  skipBecause(ctx, reason);
}

/** Sets a value at a path of mappings (and list indexes) in a parsed YAML document. */
export function setAt(root: YamlValue, path: readonly (string | number)[], value: YamlValue): void {
  let node: YamlValue | undefined = root;
  for (const key of path.slice(0, -1)) {
    node = Array.isArray(node)
      ? node[key as number]
      : isMap(node)
        ? node[key as string]
        : undefined;
    if (node === undefined || node === null) throw new Error(`no ${path.join('.')}`);
  }
  const last = path.at(-1) as string | number;
  if (Array.isArray(node)) node[last as number] = value;
  else if (isMap(node)) node[last as string] = value;
  else throw new Error(`no ${path.join('.')}`);
}

export interface CollectorPorts {
  readonly grpc: number;
  readonly http: number;
  readonly health: number;
  readonly telemetry: number;
  /** The agent's Prometheus exporter (0 for the gateway). */
  readonly exporter: number;
}

export async function collectorPorts(): Promise<CollectorPorts> {
  const [grpc, http, health, telemetry, exporter] = await Promise.all(
    Array.from({ length: 5 }, () => freePort()),
  );
  return {
    grpc: grpc as number,
    http: http as number,
    health: health as number,
    telemetry: telemetry as number,
    exporter: exporter as number,
  };
}

/**
 * A shipped config (`otelcol-agent.yaml` or `otelcol-gateway.yaml`) with nothing changed but its
 * listening addresses (127.0.0.1 and the given ports). `edit` may change more (the negative
 * controls do).
 */
export function shippedConfig(
  file: 'otelcol-agent.yaml' | 'otelcol-gateway.yaml',
  ports: CollectorPorts,
  edit?: (config: YamlMap) => void,
): YamlMap {
  const config = readYamlMap(file);
  setAt(config, ['receivers', 'otlp', 'protocols', 'grpc', 'endpoint'], `127.0.0.1:${ports.grpc}`);
  setAt(config, ['receivers', 'otlp', 'protocols', 'http', 'endpoint'], `127.0.0.1:${ports.http}`);
  setAt(config, ['extensions', 'health_check', 'endpoint'], `127.0.0.1:${ports.health}`);
  const reader = [
    'service',
    'telemetry',
    'metrics',
    'readers',
    0,
    'pull',
    'exporter',
    'prometheus',
  ];
  setAt(config, [...reader, 'host'], '127.0.0.1');
  setAt(config, [...reader, 'port'], ports.telemetry);
  if (file === 'otelcol-agent.yaml') {
    setAt(config, ['exporters', 'prometheus', 'endpoint'], `127.0.0.1:${ports.exporter}`);
  }
  edit?.(config);
  return config;
}

export interface CollectorProcess extends ConfigProcess {
  readonly ports: CollectorPorts;
}

/**
 * Runs the binary on `config` with `env` added to the test's environment, and waits until
 * health_check answers 200.
 */
export async function startCollector(
  binary: string,
  config: YamlMap,
  ports: CollectorPorts,
  env: Readonly<Record<string, string>> = {},
): Promise<CollectorProcess> {
  const started = await startConfigProcess({
    name: 'datalab-otelcol',
    binary,
    config,
    env: { ...process.env, ...env },
    ready: async () => (await fetch(`http://127.0.0.1:${ports.health}/`)).status === 200,
    timeoutMs: 30_000,
    pollMs: 100,
  });
  return { ...started, ports };
}

/** The Prometheus text a Collector serves on a port (its own metrics, or the exporter's). */
export async function scrapeText(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (res.status !== 200) throw new Error(`:${port}/metrics answered ${res.status}`);
  return res.text();
}
