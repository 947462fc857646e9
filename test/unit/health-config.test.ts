import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseConfig } from '../../src/config';
import { createHealthHandler } from '../../src/health/http';
import { HealthChecker } from '../../src/health/runner';

describe('health: configuration', () => {
  it('has documented defaults', () => {
    const { config, warnings } = parseConfig({});
    assert.deepEqual(warnings, []);
    assert.deepEqual(config.health, {
      checks: ['database', 'redis', 'disk_space', 'memory'],
      timeoutMs: 5000,
      cacheMs: 1000,
      diskPath: '/',
      shutdownDelayMs: 0,
    });
    assert.ok(Object.isFrozen(config.health) && Object.isFrozen(config.health.checks));
  });

  it('reads the DATALAB_HEALTH_* variables and DATALAB_SHUTDOWN_DELAY_MS', () => {
    const { config, warnings } = parseConfig({
      DATALAB_HEALTH_CHECKS: 'memory, database',
      DATALAB_HEALTH_TIMEOUT_MS: '1000',
      DATALAB_HEALTH_CACHE_MS: '0',
      DATALAB_HEALTH_DISK_PATH: '/var/lib/data',
      DATALAB_SHUTDOWN_DELAY_MS: '5000',
    });
    assert.deepEqual(warnings, []);
    assert.deepEqual(config.health, {
      checks: ['memory', 'database'],
      timeoutMs: 1000,
      cacheMs: 0,
      diskPath: '/var/lib/data',
      shutdownDelayMs: 5000,
    });
    assert.deepEqual(parseConfig({ DATALAB_HEALTH_CHECKS: 'none' }).config.health.checks, []);
  });

  it('warns once per bad value and keeps the default', () => {
    const { config, warnings } = parseConfig({
      DATALAB_HEALTH_CHECKS: 'databse',
      DATALAB_HEALTH_TIMEOUT_MS: '0',
      DATALAB_HEALTH_CACHE_MS: 'soon',
      DATALAB_HEALTH_DISK_PATH: 'data',
      DATALAB_SHUTDOWN_DELAY_MS: '-1',
    });
    assert.equal(config.health.checks.length, 4);
    assert.equal(config.health.timeoutMs, 5000);
    assert.equal(config.health.cacheMs, 1000);
    assert.equal(config.health.diskPath, '/');
    assert.equal(config.health.shutdownDelayMs, 0);
    const named = warnings.map((w) => w.message.split('=')[0]).sort();
    assert.deepEqual(named, [
      'DATALAB_HEALTH_CACHE_MS',
      'DATALAB_HEALTH_CHECKS',
      'DATALAB_HEALTH_DISK_PATH',
      'DATALAB_HEALTH_TIMEOUT_MS',
      'DATALAB_SHUTDOWN_DELAY_MS',
    ]);
    assert.ok(warnings.every((w) => w.code === 'DLOTEL_CONFIG_INVALID'));
  });
});

describe('health: request handler paths', () => {
  const checker = new HealthChecker({ service: 's' });
  const handler = (path?: string) => createHealthHandler(() => checker, { path });

  function call(
    h: ReturnType<typeof handler>,
    url: string,
    baseUrl?: string,
  ): { handled: boolean; nextCalled: boolean } {
    let nextCalled = false;
    const req = { url, baseUrl, method: 'GET' } as unknown as IncomingMessage;
    const res = {
      writableEnded: false,
      destroyed: false,
      headersSent: false,
      writeHead() {
        return this;
      },
      end() {
        return this;
      },
    } as unknown as ServerResponse;
    const handled = h(req, res, () => {
      nextCalled = true;
    });
    return { handled, nextCalled };
  }

  it('matches the probes under the base path, however Express mounted it', () => {
    const h = handler();
    for (const [url, baseUrl] of [
      ['/health', undefined],
      ['/health/', undefined],
      ['/health/live?x=1', undefined],
      ['/health/ready', undefined],
      ['/', '/health'], // app.use('/health', h)
      ['/ready', '/health'],
      ['/health', '/api'], // a router mounted at /api
    ] as const) {
      assert.deepEqual(call(h, url, baseUrl), { handled: true, nextCalled: false }, url);
    }
    for (const url of ['/', '/healthz', '/health/other', '/users']) {
      assert.deepEqual(call(h, url), { handled: false, nextCalled: true }, url);
    }
    const custom = handler('/ops/health/');
    assert.equal(call(custom, '/ops/health/ready').handled, true);
    assert.equal(call(custom, '/health').handled, false);
  });
});
