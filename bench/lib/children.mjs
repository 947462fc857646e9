// Child processes of the benchmark: spawned pinned to a core when possible, their output kept,
// and all of them killed (by PID) when the benchmark exits, however it exits.
import { spawn, spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

const live = new Set();
function killAll() {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

let tasksetAvailable;
/** taskset is usable and there are at least two cores to separate server and load. */
export function canPin() {
  if (tasksetAvailable === undefined) {
    const probe = spawnSync('taskset', ['-c', '0', 'true']);
    tasksetAvailable = probe.status === 0 && availableParallelism() >= 2;
  }
  return tasksetAvailable;
}

/** `[command, args]` run on `core` when pinning is on (taskset execs, so the PID is the command's). */
export function pinned(core, command, args, pin) {
  return pin ? ['taskset', ['-c', String(core), command, ...args]] : [command, args];
}

/** Moves this process onto `core` (it only orchestrates, but should not steal the server's core). */
export function pinSelf(core) {
  spawnSync('taskset', ['-pc', String(core), String(process.pid)], { stdio: 'ignore' });
}

/**
 * Starts a child and collects its stdout/stderr lines. `waitFor(predicate, ms)` resolves with the
 * first stdout line for which predicate returns a value.
 */
export function startChild(command, args, options) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  live.add(child);
  const stdout = [];
  const stderr = [];
  const collect = (stream, lines) => {
    let buffered = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      buffered += chunk;
      let nl = buffered.indexOf('\n');
      while (nl !== -1) {
        lines.push(buffered.slice(0, nl));
        if (lines.length > 2000) lines.splice(0, 1000);
        buffered = buffered.slice(nl + 1);
        nl = buffered.indexOf('\n');
      }
    });
    stream.on('end', () => {
      if (buffered) lines.push(buffered);
    });
  };
  collect(child.stdout, stdout);
  collect(child.stderr, stderr);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  // 'exit' can come before the last output has been read.
  const closed = new Promise((resolve) => child.once('close', resolve));
  return {
    child,
    pid: child.pid,
    stdout,
    stderr,
    exited,
    closed,
    isRunning: () => child.exitCode === null && child.signalCode === null,
    waitFor(predicate, ms, what) {
      return new Promise((resolve, reject) => {
        let done = false;
        const finish = (fn, value) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          clearInterval(poll);
          fn(value);
        };
        const tail = () => stderr.slice(-15).join('\n');
        const timer = setTimeout(
          () => finish(reject, new Error(`${what}: nothing after ${ms} ms\n${tail()}`)),
          ms,
        );
        const check = () => {
          for (const line of stdout) {
            const value = predicate(line);
            if (value !== undefined) return finish(resolve, value);
          }
        };
        const poll = setInterval(check, 10);
        void closed.then(() => {
          check();
          finish(
            reject,
            new Error(`${what}: exited (${child.exitCode ?? child.signalCode})\n${tail()}`),
          );
        });
        check();
      });
    },
  };
}

/** The port of a `{"event":"listening","port":N}` line. */
export function listeningPort(line) {
  if (!line.startsWith('{')) return undefined;
  try {
    const msg = JSON.parse(line);
    return msg.event === 'listening' && typeof msg.port === 'number' ? msg.port : undefined;
  } catch {
    return undefined;
  }
}
