/**
 * A Go service the tests run on a config file (the Collector, Jaeger): written as JSON (which
 * YAML reads) into a temporary directory, output kept, killed by PID when it is stopped or when
 * the test run exits, and waited for until `ready` says it serves.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ConfigProcess {
  readonly pid: number;
  readonly output: string[];
  /** The config file it runs on: rewrite it and send SIGHUP to reload. */
  readonly configFile: string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export async function startConfigProcess(options: {
  /** Names the process in errors and its temporary directory. */
  name: string;
  binary: string;
  config: unknown;
  env: NodeJS.ProcessEnv;
  /** True once the process serves (polled every `pollMs` until `timeoutMs`). */
  ready: () => Promise<boolean>;
  timeoutMs: number;
  pollMs: number;
}): Promise<ConfigProcess> {
  const { name } = options;
  const dir = mkdtempSync(join(tmpdir(), `datalab-${name}-`));
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, JSON.stringify(options.config, null, 1));
  const child = spawn(options.binary, [`--config=${configFile}`], {
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`${name} exited (${child.exitCode}):\n${output.join('')}`);
    }
    if (await options.ready().catch(() => false)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${name} never became ready:\n${output.join('')}`);
    }
    await new Promise((r) => setTimeout(r, options.pollMs));
  }
  return { pid: child.pid as number, output, configFile, exited, stop };
}
