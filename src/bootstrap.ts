/**
 * What the preload does, for both entry points (register.mjs for --import, register.js for
 * --require). Whatever goes wrong here, the application starts: one warning, no telemetry.
 */
import { basename } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import type { Telemetry } from './sdk';
import { warn } from './warnings';

const kState = Symbol.for('@datalab/otel.bootstrap');

interface BootstrapState {
  readonly ready: Promise<void>;
  telemetry?: Telemetry;
}

type GlobalWithState = typeof globalThis & { [kState]?: BootstrapState };

/**
 * `NODE_OPTIONS=--import … npm start` loads the preload into npm itself too. Instrumenting the
 * package manager would bind the metrics port before the real service starts, so skip it.
 */
export function isPackageManagerCli(mainScript: string | undefined): boolean {
  if (!mainScript) return false;
  const name = basename(mainScript);
  // Yarn Berry ships as .yarn/releases/yarn-4.5.0.cjs.
  return /^(npm-cli|npx-cli|npm|npx|yarn(-[\d.]+)?|pnpm|pnpx|corepack)(\.[cm]?js)?$/.test(name);
}

/** The running telemetry, when the preload started it (the public API reads this). */
export function currentTelemetry(): Telemetry | undefined {
  return (globalThis as GlobalWithState)[kState]?.telemetry;
}

export function bootstrap(): Promise<void> {
  const g = globalThis as GlobalWithState;
  // Both --import and --require (or NODE_OPTIONS plus a flag) may load us: start once.
  const existing = g[kState];
  if (existing) return existing.ready;
  const state: { ready: Promise<void>; telemetry?: Telemetry } = { ready: Promise.resolve() };
  g[kState] = state;

  // Worker threads inherit the preload; one SDK and one management port per process.
  if (!isMainThread || isPackageManagerCli(process.argv[1])) return state.ready;

  try {
    // Required here, not imported: worker threads, package managers, OTEL_SDK_DISABLED and
    // applications that only use the public API never pay for loading the SDK.
    const { loadConfig } = require('./config') as typeof import('./config');
    const config = loadConfig();
    if (config.sdkDisabled) return state.ready;
    const finishEsmHooks = config.esmHooks
      ? (require('./esm-hooks') as typeof import('./esm-hooks')).prepareEsmHooks()
      : undefined;
    const { withDistroApi } = require('./api-copy') as typeof import('./api-copy');
    const { startTelemetry } = withDistroApi(() => require('./sdk') as typeof import('./sdk'));
    const { installShutdownHooks } = require('./shutdown') as typeof import('./shutdown');
    state.telemetry = withDistroApi(() => startTelemetry(config));
    installShutdownHooks(state.telemetry);
    let waitForEsmHooks: (() => Promise<void>) | undefined;
    try {
      waitForEsmHooks = finishEsmHooks?.();
    } catch (err) {
      // Telemetry is running by now: only ESM-imported libraries go unpatched.
      warn(
        'DLOTEL_START_FAILED',
        `ESM hooks were not installed (${describe(err)}); libraries imported as ESM are not instrumented`,
      );
    }
    // On the loader thread (older Node.js): the instrumentations just sent it the modules they
    // hook; ESM modules imported before it acknowledged that list would go unpatched.
    if (waitForEsmHooks !== undefined) {
      state.ready = waitForEsmHooks().catch((err: unknown) => {
        warn('DLOTEL_START_FAILED', `ESM hooks were not acknowledged: ${describe(err)}`);
      });
    }
  } catch (err) {
    warn(
      'DLOTEL_START_FAILED',
      `telemetry did not start (${describe(err)}); the application runs without it`,
    );
  }
  return state.ready;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
