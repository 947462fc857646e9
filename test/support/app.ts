/**
 * Spawns a fixture service as a real child process with the preload, the way an operator runs
 * it, and cleans it up by PID. Every process started here is killed when the test run ends,
 * even if a test fails half way.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parsePrometheusText, type Sample } from './prometheus-text';

export const ROOT = resolve(__dirname, '..', '..', '..');
export const FIXTURES = join(ROOT, 'test', 'fixtures');

export type Preload = 'import' | 'require' | 'node-options' | 'none';

export interface StartOptions {
  /** File name under test/fixtures, or an absolute path. */
  readonly fixture: string;
  /** Working directory (default: the package root, where the preload resolves by self-reference). */
  readonly cwd?: string;
  readonly preload?: Preload;
  readonly env?: Readonly<Record<string, string>>;
  /** Wait for the management server's /metrics (default true unless preload is 'none'). */
  readonly waitForMetrics?: boolean;
  /** The Node.js binary (default: the one running the tests). */
  readonly node?: string;
  /** Node.js flags after the preload's (`-r ts-node/register`, `--throw-deprecation`, …). */
  readonly nodeArgs?: readonly string[];
}

export interface AppProcess {
  readonly pid: number;
  readonly port: number;
  readonly metricsPort: number;
  readonly stdout: string[];
  readonly stderr: string[];
  url(path: string): string;
  scrape(): Promise<Sample[]>;
  scrapeText(): Promise<string>;
  /** Lines of stderr that are distro warnings. */
  warnings(): string[];
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when the process exits by itself (or is stopped). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<ChildProcess>();
/** Local trace files of fixtures (the embedded default) go here, not into the repository. */
export const TEST_TRACES_DIR = mkdtempSync(join(tmpdir(), 'datalab-otel-test-'));
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
  rmSync(TEST_TRACES_DIR, { recursive: true, force: true });
});

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** The environment of the test run, without any OTEL_/DATALAB_ setting leaking into fixtures. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k.startsWith('OTEL_') || k.startsWith('DATALAB_')) continue;
    if (k === 'NODE_OPTIONS') continue;
    env[k] = v;
  }
  return {
    ...env,
    PGHOST: process.env.PGHOST ?? '127.0.0.1',
    PGPORT: process.env.PGPORT ?? '5432',
    PGUSER: process.env.PGUSER ?? 'postgres',
    PGDATABASE: process.env.PGDATABASE ?? 'test',
    DATALAB_TRACES_DIR: TEST_TRACES_DIR,
  };
}

export async function startApp(options: StartOptions): Promise<AppProcess> {
  const preload = options.preload ?? 'import';
  const metricsPort = options.env?.DATALAB_METRICS_PORT
    ? Number(options.env.DATALAB_METRICS_PORT)
    : await freePort();
  const env: Record<string, string> = {
    ...baseEnv(),
    DATALAB_METRICS_HOST: '127.0.0.1',
    DATALAB_METRICS_PORT: String(metricsPort),
    OTEL_SERVICE_NAME: 'fixture-service',
    ...options.env,
  };
  const args: string[] = [];
  if (preload === 'import') args.push('--import', '@datalab/otel/register');
  if (preload === 'require') args.push('--require', '@datalab/otel/register');
  if (preload === 'node-options') {
    env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --import @datalab/otel/register`.trim();
  }
  args.push(...(options.nodeArgs ?? []), resolve(FIXTURES, options.fixture));

  // cwd is the package root so that `@datalab/otel/register` resolves by self-reference, as it
  // would from an application's node_modules.
  const child = spawn(options.node ?? process.execPath, args, {
    cwd: options.cwd ?? ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  collectLines(child.stdout, stdout);
  collectLines(child.stderr, stderr);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      done({ code, signal });
    }),
  );

  const port = await new Promise<number>((resolvePort, reject) => {
    // Polling stops once the start settles either way: a poll left running would keep the test
    // run from ever exiting after a fixture that failed to start.
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      reject(new Error(`${options.fixture} did not start:\n${stderr.join('\n')}`));
    }, 20_000);
    const check = () => {
      if (settled) return;
      for (const line of stdout) {
        if (!line.startsWith('{')) continue;
        const msg = JSON.parse(line) as { event?: string; port?: number };
        if (msg.event === 'listening' && typeof msg.port === 'number') {
          settled = true;
          clearTimeout(timer);
          resolvePort(msg.port);
          return;
        }
      }
      setTimeout(check, 20);
    };
    void exited.then(({ code, signal }) => {
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${options.fixture} exited (${code ?? signal}):\n${stderr.join('\n')}`));
    });
    check();
  });

  const app: AppProcess = {
    pid: child.pid as number,
    port,
    metricsPort,
    stdout,
    stderr,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    scrapeText: async () => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
      return res.text();
    },
    scrape: async () => parsePrometheusText(await app.scrapeText()),
    warnings: () => distroWarnings(stderr),
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        const result = await exited;
        clearTimeout(timer);
        return result;
      }
      return exited;
    },
  };

  if (options.waitForMetrics ?? preload !== 'none') {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await app.scrapeText();
        break;
      } catch (err) {
        if (Date.now() > deadline) {
          await app.stop();
          throw new Error(`/metrics never answered: ${String(err)}\n${stderr.join('\n')}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
  return app;
}

/**
 * The distro's warnings among stderr lines, as `CODE: message`: JSON records with
 * `logger: "@datalab/otel"`, or the plain `@datalab/otel warning CODE: …` line printed before
 * the configuration is known.
 */
export function distroWarnings(lines: readonly string[]): string[] {
  const out: string[] = [];
  for (const line of lines) {
    if (line.startsWith('@datalab/otel warning ')) {
      out.push(line.slice('@datalab/otel warning '.length));
    } else if (line.startsWith('{')) {
      try {
        const record = JSON.parse(line) as { logger?: string; code?: string; message?: string };
        if (record.logger === '@datalab/otel') out.push(`${record.code}: ${record.message}`);
      } catch {
        // Not JSON after all: the application's own output.
      }
    }
  }
  return out;
}

function collectLines(stream: NodeJS.ReadableStream | null, into: string[]): void {
  if (!stream) return;
  let buffer = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buffer += chunk;
    let nl = buffer.indexOf('\n');
    while (nl !== -1) {
      into.push(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
      nl = buffer.indexOf('\n');
    }
  });
  stream.on('end', () => {
    if (buffer !== '') into.push(buffer);
  });
}

/** Sends one request and returns its status (0 when the server dropped the connection). */
export async function request(url: string, init?: RequestInit): Promise<number> {
  try {
    const res = await fetch(url, init);
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` (a service the tests need). */
export function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
