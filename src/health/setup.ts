/**
 * Health for a running distro: the checker with the configured built-in checks, its metric and
 * its routes on the management server. The one entry point sdk.ts calls.
 */
import type { Meter } from '@opentelemetry/api';
import type { Config } from '../config';
import type { ClientRegistry } from '../db/clients';
import type { ManagementServer } from '../management-server';
import { builtinChecks } from './builtin';
import { appDirectories, appModuleLoader } from './dependencies';
import { managementRoutes } from './http';
import { createHealthMetric } from './metric';
import { HealthChecker } from './runner';

export function createHealthChecker(
  config: Pick<Config, 'serviceName' | 'health'>,
  clients: ClientRegistry,
): HealthChecker {
  const checker = new HealthChecker({
    service: config.serviceName,
    timeoutMs: config.health.timeoutMs,
    cacheMs: config.health.cacheMs,
  });
  const context = { clients, env: process.env, load: appModuleLoader(appDirectories()) };
  for (const check of builtinChecks(config.health, context)) checker.add(check);
  return checker;
}

export function startHealth(
  config: Config,
  clients: ClientRegistry,
  meter: Meter,
  management: ManagementServer,
): HealthChecker {
  const checker = createHealthChecker(config, clients);
  createHealthMetric(meter, config.serviceName, checker);
  for (const [path, handler, options] of managementRoutes(checker)) {
    management.route(path, handler, options);
  }

  return checker;
}
