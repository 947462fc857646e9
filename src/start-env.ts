/**
 * The OTEL_* variables the process's configuration was read from, fixed at start-up: the
 * exporters and the exit sender are built from them, whatever the application did to
 * process.env since (dotenv and the like). Under PM2 they come from PM2's environment, as the
 * configuration's do (config.ts): the ecosystem file's `env` reaches process.env only after the
 * preload ran.
 */
import { pm2Context } from './cluster';

export type OtelEnv = Readonly<Record<string, string>>;

let snapshot: OtelEnv | undefined;

export function otelEnvAtStart(): OtelEnv {
  if (snapshot === undefined) {
    const env = pm2Context(process.env)?.env ?? process.env;
    const out: Record<string, string> = {};
    for (const [key, value] of Object.entries(env)) {
      if (key.startsWith('OTEL_') && value !== undefined) out[key] = value;
    }
    snapshot = Object.freeze(out);
  }
  return snapshot;
}
