/**
 * Flush telemetry when the process is asked to stop, without changing how it stops.
 *
 * Listening for SIGTERM removes Node's default action (exit), so: when the application has its
 * own listener, it decides when to exit and we only flush; when ours is the only one, we flush
 * (bounded by DATALAB_SHUTDOWN_TIMEOUT_MS) and then re-raise the signal so that the process
 * dies of it exactly as it would have without the distro.
 */
import type { Telemetry } from './sdk';

const SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

export function installShutdownHooks(telemetry: Telemetry): void {
  const timeoutMs = telemetry.config.shutdownTimeoutMs;
  const flush = () => {
    const timer = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
    return Promise.race([telemetry.shutdown().catch(() => {}), timer]);
  };

  for (const signal of SIGNALS) {
    const onSignal = () => {
      // `once` has already removed our listener: any listener left is the application's.
      const appHandles = process.listenerCount(signal) > 0;
      void flush().then(() => {
        if (appHandles) return;
        process.kill(process.pid, signal);
      });
    };
    process.once(signal, onSignal);
  }

  // The event loop ran dry: last chance to send what is buffered. beforeExit may fire again
  // after this work, so shutdown() is idempotent.
  process.once('beforeExit', () => {
    void flush();
  });
}
