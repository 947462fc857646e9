import assert from 'node:assert/strict';
import type { InstrumentationBase } from '@opentelemetry/instrumentation';
import { DEFERRED_MODULES } from '../../src/instrumentations';

const CLASSES: Record<string, [string, string]> = {
  express: ['@opentelemetry/instrumentation-express', 'ExpressInstrumentation'],
  pg: ['@opentelemetry/instrumentation-pg', 'PgInstrumentation'],
  mysql2: ['@opentelemetry/instrumentation-mysql2', 'MySQL2Instrumentation'],
  ioredis: ['@opentelemetry/instrumentation-ioredis', 'IORedisInstrumentation'],
  redis: ['@opentelemetry/instrumentation-redis', 'RedisInstrumentation'],
  winston: ['@opentelemetry/instrumentation-winston', 'WinstonInstrumentation'],
  pino: ['../../src/logging/pino', 'PinoInstrumentation'],
};

describe('deferred instrumentations', () => {
  for (const [name, moduleNames] of Object.entries(DEFERRED_MODULES)) {
    it(`${name}: the stand-in hooks exactly the modules the instrumentation defines`, () => {
      const [pkg, cls] = CLASSES[name] as [string, string];
      const Ctor = (require(pkg) as Record<string, new (c: object) => InstrumentationBase>)[cls];
      const real = new (Ctor as new (c: object) => InstrumentationBase)({
        enabled: false,
        // What the distro's own (pino) needs; the others ignore it.
        service: 'test',
        redactKeys: [],
        sendLogs: false,
      });
      assert.deepEqual(
        real.getModuleDefinitions().map((d) => d.name),
        moduleNames,
      );
    });
  }
});
