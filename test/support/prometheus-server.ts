/**
 * The real Prometheus tools for the operations tests: finding promtool/prometheus (and the
 * optional amtool/otelcol), running a Prometheus server on a test copy of collector/prometheus.yml
 * and querying its HTTP API. Every process started here is killed by PID.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from './app';
import { skipBecause } from './skip';

export const IN_CI = process.env.CI === 'true';

/** The absolute path of an executable on PATH, or undefined. */
export function findTool(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/**
 * promtool / prometheus: CI installs them (.ci/run), so there a missing binary fails the test;
 * elsewhere the test is skipped with the reason.
 */
export function requirePrometheusTool(ctx: Mocha.Context, name: 'promtool' | 'prometheus'): string {
  const path = findTool(name);
  if (path) return path;
  const reason = `${name} is not on PATH (Debian: apt-get install prometheus; .ci/run installs it)`;
  if (IN_CI) throw new Error(`${reason}: required in CI`);
  skipBecause(ctx, reason);
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function run(
  file: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolveRun) => {
    execFile(
      file,
      args,
      { cwd: options.cwd, env: options.env, timeout: options.timeoutMs ?? 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolveRun({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

export interface PrometheusTargetRewrite {
  /** `host:port` of a shipped target → `127.0.0.1:port` to scrape instead. */
  readonly [target: string]: string;
}

/**
 * The test copy of collector/prometheus.yml: the text as shipped, with every scrape target and
 * the Alertmanager target replaced from `targets` (each must occur in the file), and every
 * scrape/evaluation interval set to `interval` (the global scrape timeout follows it).
 */
export function rewritePrometheusConfig(
  shipped: string,
  targets: PrometheusTargetRewrite,
  interval: string,
): string {
  const seen = new Set<string>();
  let text = shipped.replace(
    /^(\s*-?\s*targets:\s*)\[([^\]]*)\]/gm,
    (_m, head: string, list: string) => {
      const items = list.split(',').map((raw) => {
        const item = raw.trim().replace(/^['"]|['"]$/g, '');
        const replacement = targets[item];
        if (replacement === undefined) throw new Error(`no test address for target ${item}`);
        seen.add(item);
        return `'${replacement}'`;
      });
      return `${head}[${items.join(', ')}]`;
    },
  );
  for (const target of Object.keys(targets)) {
    if (!seen.has(target)) throw new Error(`target ${target} is not in prometheus.yml`);
  }
  text = text.replace(/^(\s*(?:scrape|evaluation)_interval:\s*)\S+/gm, `$1${interval}`);
  return text;
}

export interface PromSample {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

export interface RuleState {
  readonly name: string;
  readonly query: string;
  readonly type: 'alerting' | 'recording';
  readonly health: string;
  readonly lastError?: string;
  readonly annotations?: Record<string, string>;
  readonly labels?: Record<string, string>;
  readonly state?: string;
}

export interface PrometheusServer {
  readonly pid: number;
  readonly url: string;
  readonly dir: string;
  readonly output: string[];
  /** Instant query; throws with Prometheus's error message when the query fails. */
  query(expr: string, time?: number): Promise<PromSample[]>;
  rules(): Promise<{ name: string; rules: RuleState[] }[]>;
  api<T>(path: string): Promise<T>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/**
 * Starts `prometheus` on a free 127.0.0.1 port with `configText` as prometheus.yml in a temp
 * directory. `links` are symlinks created next to it (the shipped rules directory, so that the
 * config's relative rule_files resolve to the shipped files); `flags` are added to the command
 * line (`--enable-feature=exemplar-storage`).
 */
export async function startPrometheus(
  binary: string,
  configText: string,
  links: Readonly<Record<string, string>> = {},
  flags: readonly string[] = [],
): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'datalab-prometheus-'));
  writeFileSync(join(dir, 'prometheus.yml'), configText);
  for (const [name, target] of Object.entries(links)) symlinkSync(target, join(dir, name));
  const port = await freePort();
  const child = spawn(
    binary,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
      ...flags,
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  live.add(child);
  const output: string[] = [];
  child.stdout?.setEncoding('utf8').on('data', (d: string) => output.push(d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => output.push(d));
  const exited = new Promise<void>((done) =>
    child.once('exit', () => {
      live.delete(child);
      done();
    }),
  );
  const url = `http://127.0.0.1:${port}`;

  const server: PrometheusServer = {
    pid: child.pid as number,
    url,
    dir,
    output,
    async api<T>(path: string): Promise<T> {
      const res = await fetch(`${url}${path}`);
      const body = (await res.json()) as { status: string; data: T; error?: string };
      if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? res.status}`);
      return body.data;
    },
    async query(expr, time) {
      const params = new URLSearchParams({ query: expr });
      if (time !== undefined) params.set('time', String(time));
      const res = await fetch(`${url}/api/v1/query`, { method: 'POST', body: params });
      const body = (await res.json()) as {
        status: string;
        error?: string;
        data?: { resultType: string; result: unknown };
      };
      if (body.status !== 'success' || !body.data) {
        throw new Error(`query failed: ${body.error ?? res.status}\n  ${expr}`);
      }
      if (body.data.resultType === 'scalar') {
        return [{ metric: {}, value: body.data.result as [number, string] }];
      }
      if (body.data.resultType !== 'vector') {
        throw new Error(`unexpected ${body.data.resultType} result for ${expr}`);
      }
      return body.data.result as PromSample[];
    },
    async rules() {
      const data = await server.api<{ groups: { name: string; rules: RuleState[] }[] }>(
        '/api/v1/rules',
      );
      return data.groups;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };

  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`prometheus exited (${child.exitCode}):\n${output.join('')}`);
    }
    try {
      const res = await fetch(`${url}/-/ready`);
      if (res.status === 200) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`prometheus never became ready:\n${output.join('')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return server;
}
