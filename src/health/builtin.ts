/**
 * The four built-in checks of the seed, with its criticality: `database` critical, `redis` not,
 * `disk_space` critical, `memory` not. DATALAB_HEALTH_CHECKS picks which of them may run.
 */
import type { ClientRegistry } from '../db/clients';
import { databaseCheck, type ModuleLoader, redisCheck } from './dependencies';
import { diskSpaceCheck } from './disk';
import { memoryCheck } from './memory';
import type { InternalCheckDefinition } from './runner';
import type { BuiltinHealthCheck } from './types';

export interface BuiltinSettings {
  readonly checks: readonly BuiltinHealthCheck[];
  readonly timeoutMs: number;
  readonly diskPath: string;
}

export interface BuiltinContext {
  readonly clients: ClientRegistry;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly load: ModuleLoader;
}

export function builtinChecks(
  settings: BuiltinSettings,
  context: BuiltinContext,
): InternalCheckDefinition[] {
  const { timeoutMs } = settings;
  const dependency = { ...context, timeoutMs };
  const all: Record<BuiltinHealthCheck, () => InternalCheckDefinition> = {
    database: () => ({ name: 'database', critical: true, timeoutMs, ...databaseCheck(dependency) }),
    redis: () => ({ name: 'redis', critical: false, timeoutMs, ...redisCheck(dependency) }),
    disk_space: () => ({
      name: 'disk_space',
      critical: true,
      timeoutMs,
      check: diskSpaceCheck(settings.diskPath),
    }),
    memory: () => ({ name: 'memory', critical: false, timeoutMs, check: memoryCheck() }),
  };
  return settings.checks.map((name) => all[name]());
}
