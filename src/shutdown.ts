/**
 * The shutdown sequence on SIGTERM/SIGINT, shared by health and telemetry:
 *
 * 1. readiness answers 503 at once (our listener is registered by the preload, before the
 *    application's, so this happens before anything else);
 * 2. after DATALAB_SHUTDOWN_DELAY_MS (default 0), time for load balancers to stop sending
 *    traffic while requests in flight complete, buffered traces, metrics and logs are exported,
 *    bounded by DATALAB_SHUTDOWN_TIMEOUT_MS;
 * 3. then the signal takes the effect it would have had without the distro.
 *
 * Listening for a signal removes Node's default action (exit), so: when the application has its
 * own listener, it decides when to exit: nothing here holds the process open, and telemetry is
 * flushed but keeps running for the application's own draining (it is stopped on beforeExit).
 * When ours is the only listener, the process was going to die of the signal: it is kept alive
 * for the delay and the bounded flush, then the signal is re-raised so that it dies of it
 * exactly as it would have (exit status 128 + signal number, 143 for SIGTERM).
 *
 * `process.exit()` (often from the application's own signal handler) and a crash (an uncaught
 * exception, an unhandled rejection) end the process with no turn of the event loop left: what
 * is still buffered is exported from the `exit` event, synchronously, within
 * DATALAB_EXIT_FLUSH_TIMEOUT_MS (exit-flush.ts). The exit code, stderr and the application's
 * own `uncaughtException` and `exit` listeners are left as they were.
 */

import { sendFinalCollection } from './cluster';
import type { Telemetry } from './sdk';
import { warn } from './warnings';

const SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

/** A timer that holds the process open only when asked to. */
function sleep(ms: number, hold: boolean): { done: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const done = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    if (!hold) timer.unref();
  });
  return { done, cancel: () => clearTimeout(timer) };
}

async function bounded(work: Promise<unknown>, timeoutMs: number, hold: boolean): Promise<void> {
  const timeout = sleep(timeoutMs, hold);
  await Promise.race([work.catch(() => {}), timeout.done]);
  timeout.cancel();
}

export interface ShutdownPlan {
  readonly appHandles: boolean;
  readonly delayMs: number;
  readonly timeoutMs: number;
}

/** Steps 2 and 3 of the sequence, after readiness has turned 503. */
export async function drainAndFlush(telemetry: Telemetry, plan: ShutdownPlan): Promise<void> {
  const hold = !plan.appHandles;
  if (plan.delayMs > 0) await sleep(plan.delayMs, hold).done;
  const work = plan.appHandles ? telemetry.flush() : telemetry.shutdown();
  await bounded(work, plan.timeoutMs, hold);
}

export function installShutdownHooks(telemetry: Telemetry): void {
  const timeoutMs = telemetry.config.shutdownTimeoutMs;
  const delayMs = telemetry.config.health.shutdownDelayMs;
  const listeners = new Map<NodeJS.Signals, () => void>();

  for (const signal of SIGNALS) {
    const onSignal = () => {
      telemetry.health.beginShutdown();
      // One sequence per process. Without our other listeners, a second signal has Node's
      // default effect (or the application's): a second Ctrl-C still ends a draining process.
      for (const [other, listener] of listeners) {
        if (other !== signal) process.removeListener(other, listener);
      }
      // `once` has already removed our listener: any listener left is the application's.
      const appHandles = process.listenerCount(signal) > 0;
      void drainAndFlush(telemetry, { appHandles, delayMs, timeoutMs }).then(() => {
        if (appHandles) return;
        // Dying of the signal emits no `exit`: a cluster worker's last series go now.
        sendFinalCollection();
        process.kill(process.pid, signal);
      });
    };
    listeners.set(signal, onSignal);
    process.once(signal, onSignal);
  }

  const exitTimeoutMs = telemetry.config.exitFlushTimeoutMs;
  // Node emits `exit` before it prints a fatal error's report: a warning written now would sit
  // above the stack trace, where the first line of a crash is looked for. On a crash the
  // warning is left out (docs/configuration.md); a monitor changes nothing in how errors are
  // handled, unlike an `uncaughtException` listener.
  let crashed = false;
  if (exitTimeoutMs > 0) {
    process.on('uncaughtExceptionMonitor', () => {
      crashed = true;
    });
  }
  process.once('exit', (code) => {
    if (exitTimeoutMs > 0) {
      let message: string | undefined;
      try {
        const failure = telemetry.flushAtExit(exitTimeoutMs);
        if (failure !== undefined) {
          message = `telemetry left at exit was not all exported: ${failure}`;
        }
      } catch (err) {
        message = `telemetry left at exit was not exported: ${err instanceof Error ? err.message : String(err)}`;
      }
      if (message !== undefined && !(crashed && code !== 0)) {
        warn('DLOTEL_EXIT_FLUSH_INCOMPLETE', message);
      }
    }
    // After the flush, which counted the requests still open: a cluster worker's last series.
    sendFinalCollection();
  });

  // The event loop ran dry: last chance to send what is buffered. beforeExit may fire again
  // after this work, so shutdown() is idempotent.
  process.once('beforeExit', () => {
    let finished = false;
    const work = telemetry.shutdown().finally(() => {
      finished = true;
    });
    void bounded(work, timeoutMs, false).then(() => {
      // The application had finished: only an export (a backend that accepts and never
      // answers) keeps the process alive now. End it as it was about to end.
      if (!finished) process.exit();
    });
  });
}
