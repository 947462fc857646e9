import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ClientRegistry,
  type MysqlPoolLike,
  type PgPoolLike,
  type RedisClientLike,
} from '../../src/db/clients';
import {
  appModuleLoader,
  databaseCheck,
  postgresConfigured,
  redisCheck,
} from '../../src/health/dependencies';
import { classifyDisk, diskSpaceCheck } from '../../src/health/disk';
import {
  classifyMemory,
  parseMountinfo,
  parseProcCgroup,
  readCgroupMemory,
  readMemory,
} from '../../src/health/memory';
import {
  aggregateStatus,
  HealthChecker,
  httpStatusFor,
  normalizeOutcome,
  redactCredentials,
} from '../../src/health/runner';
import type { HealthStatus } from '../../src/health/types';
import { ROOT } from '../support/app';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

describe('health: status aggregation', () => {
  const r = (status: HealthStatus, critical: boolean) => ({ status, critical });

  it('critical failure → unhealthy; non-critical failure → degraded; else healthy', () => {
    assert.equal(aggregateStatus([]), 'healthy');
    assert.equal(aggregateStatus([r('healthy', true), r('healthy', false)]), 'healthy');
    assert.equal(aggregateStatus([r('healthy', true), r('unhealthy', false)]), 'degraded');
    assert.equal(aggregateStatus([r('degraded', false)]), 'degraded');
    // The seed counts any status other than healthy as a failure, degraded included.
    assert.equal(aggregateStatus([r('degraded', true)]), 'unhealthy');
    assert.equal(aggregateStatus([r('unhealthy', false), r('unhealthy', true)]), 'unhealthy');
  });

  it('HTTP 200 for healthy and degraded, 503 for unhealthy', () => {
    assert.equal(httpStatusFor('healthy'), 200);
    assert.equal(httpStatusFor('degraded'), 200);
    assert.equal(httpStatusFor('unhealthy'), 503);
  });

  it('normalises what a check returns', () => {
    assert.deepEqual(normalizeOutcome(undefined), {
      status: 'healthy',
      message: 'Check passed',
      fields: {},
    });
    assert.equal(normalizeOutcome(true).status, 'healthy');
    assert.equal(normalizeOutcome(false).status, 'unhealthy');
    assert.deepEqual(normalizeOutcome({ status: 'degraded', message: 'slow', lag: 3 }), {
      status: 'degraded',
      message: 'slow',
      fields: { lag: 3 },
    });
    assert.deepEqual(normalizeOutcome({ status: 'fine' }), {
      status: 'unhealthy',
      message: 'Check returned an invalid status: fine',
      fields: {},
    });
    // The runner owns duration and critical; unserialisable fields are dropped.
    const own = normalizeOutcome({ duration: 99, critical: false, fn: () => 1, big: 1n });
    assert.deepEqual(own.fields, {});
    assert.equal(normalizeOutcome({ message: 'no status' }).status, 'healthy');
  });

  it('masks credentials in URLs', () => {
    assert.equal(
      redactCredentials('failed: postgres://app:s3cr3t@db:5432/x and redis://:pw@r:6379'),
      'failed: postgres://app:***@db:5432/x and redis://:***@r:6379',
    );
    assert.equal(
      redactCredentials('connect ECONNREFUSED 127.0.0.1:5432'),
      'connect ECONNREFUSED 127.0.0.1:5432',
    );
  });
});

describe('health: runner', () => {
  it('runs checks concurrently, each bounded by its own timeout', async () => {
    const checker = new HealthChecker({ service: 's', timeoutMs: 1000 });
    for (const name of ['a', 'b', 'c']) {
      checker.add({ name, check: async () => void (await sleep(100)) });
    }
    checker.add({ name: 'hangs', check: () => new Promise(() => {}), timeoutMs: 150 });
    const start = performance.now();
    const report = await checker.report();
    const ms = performance.now() - start;
    assert.ok(ms >= 145 && ms < 400, `${ms} ms`);
    assert.equal(report.checks.a?.status, 'healthy');
    assert.ok((report.checks.a?.duration ?? 0) >= 0.09);
    assert.deepEqual(report.checks.hangs, {
      status: 'unhealthy',
      message: 'Check timed out after 0.15s',
      duration: 0.15,
      critical: true,
    });
    assert.equal(report.status, 'unhealthy');
    assert.equal(report.service, 's');
  });

  it('turns throws (sync or async) and rejections into unhealthy results', async () => {
    const checker = new HealthChecker({ service: 's' });
    checker.add({
      name: 'sync',
      critical: false,
      check: () => {
        throw new Error('sync boom');
      },
    });
    checker.add({ name: 'async', critical: false, check: async () => Promise.reject('str') });
    const report = await checker.report();
    assert.equal(report.checks.sync?.message, 'Check failed: sync boom');
    assert.equal(report.checks.async?.message, 'Check failed: str');
    assert.equal(report.status, 'degraded');
  });

  it('shares one run between concurrent callers and caches it for the cache period', async () => {
    let now = 0;
    let runs = 0;
    const checker = new HealthChecker({ service: 's', cacheMs: 1000, now: () => now });
    checker.add({
      name: 'counted',
      check: async () => {
        runs += 1;
        await sleep(20);
      },
    });
    const reports = await Promise.all(Array.from({ length: 100 }, () => checker.report()));
    assert.equal(runs, 1);
    assert.ok(reports.every((r) => r === reports[0]));
    now = 999;
    await checker.report();
    assert.equal(runs, 1, 'still within the cache period');
    now = 1000;
    await checker.report();
    assert.equal(runs, 2, 'a new period');
    await checker.report({ fresh: true });
    assert.equal(runs, 3, 'fresh skips the cache');
    assert.deepEqual(checker.runs(), { counted: 3 });
  });

  it('joins a hung call instead of calling the check again', async () => {
    let calls = 0;
    const checker = new HealthChecker({ service: 's', cacheMs: 0 });
    checker.add({
      name: 'hung',
      timeoutMs: 30,
      check: () => {
        calls += 1;
        return new Promise(() => {});
      },
    });
    for (let i = 0; i < 3; i++) {
      const report = await checker.report();
      assert.equal(report.checks.hung?.status, 'unhealthy');
    }
    assert.equal(calls, 1);
  });

  it('readiness: not ready when a critical check fails, or once shutting down', async () => {
    let dbUp = true;
    const checker = new HealthChecker({ service: 's', cacheMs: 0 });
    checker.add({ name: 'db', check: () => dbUp });
    checker.add({ name: 'cache', critical: false, check: () => false });
    const ready = await checker.readiness();
    assert.equal(ready.ready, true);
    assert.equal(ready.status, 'degraded');
    dbUp = false;
    const down = await checker.readiness();
    assert.equal(down.ready, false);
    assert.equal(down.reason, 'critical checks not healthy: db');
    dbUp = true;
    checker.beginShutdown();
    const stopping = await checker.readiness();
    assert.deepEqual(
      [stopping.ready, stopping.reason, stopping.checks],
      [false, 'shutting down', undefined],
    );
    assert.equal(checker.liveness().status, 'healthy', 'liveness is not readiness');
  });

  it('leaves out checks that do not apply, replaces by name, validates definitions', async () => {
    const checker = new HealthChecker({ service: 's' });
    checker.add({ name: 'database', check: () => true, applies: () => false });
    checker.add({ name: 'x', check: () => false });
    checker.add({ name: 'x', check: () => true, critical: false });
    const report = await checker.report();
    assert.deepEqual(Object.keys(report.checks), ['x']);
    assert.equal(report.checks.x?.critical, false);
    assert.throws(() => checker.add({ name: '', check: () => true }), TypeError);
    assert.throws(() => checker.add({ name: 'bad name', check: () => true }), TypeError);
    assert.throws(() => checker.add({ name: 'y', check: 'no' as never }), TypeError);
    assert.throws(() => checker.add({ name: 'y', check: () => true, timeoutMs: -1 }), TypeError);
    assert.equal(checker.remove('x'), true);
    assert.equal(checker.remove('x'), false);
  });
});

describe('health: disk thresholds', () => {
  const at = (freePercent: number) =>
    classifyDisk({ totalBytes: 10_000, freeBytes: freePercent * 100 }, '/data');

  it('free < 5% unhealthy, < 15% degraded, else healthy, at each boundary', () => {
    assert.equal(at(0).status, 'unhealthy');
    assert.equal(at(4.99).status, 'unhealthy');
    assert.equal(at(5).status, 'degraded');
    assert.equal(at(14.99).status, 'degraded');
    assert.equal(at(15).status, 'healthy');
    assert.equal(at(100).status, 'healthy');
  });

  it('keeps the seed messages and reports the reading', () => {
    assert.equal(at(4).message, 'Critical: Only 4.0% disk space remaining');
    assert.equal(at(10).message, 'Warning: Only 10.0% disk space remaining');
    assert.deepEqual(at(42), {
      status: 'healthy',
      message: 'Disk space OK: 42.0% free',
      free_percent: 42,
      free_bytes: 4200,
      total_bytes: 10_000,
      path: '/data',
    });
    assert.equal(classifyDisk({ totalBytes: 0, freeBytes: 0 }, '/x').status, 'unhealthy');
  });

  it('a path that does not exist is unhealthy with the reason', async () => {
    const outcome = await diskSpaceCheck('/no/such/path/here')();
    assert.equal(outcome.status, 'unhealthy');
    assert.match(String(outcome.message), /ENOENT/);
  });
});

describe('health: memory thresholds', () => {
  const at = (usedPercent: number) =>
    classifyMemory({ usedBytes: usedPercent * 100, limitBytes: 10_000, source: 'cgroup' });

  it('used > 90% unhealthy, > 80% degraded, else healthy, at each boundary', () => {
    assert.equal(at(100).status, 'unhealthy');
    assert.equal(at(90.01).status, 'unhealthy');
    assert.equal(at(90).status, 'degraded');
    assert.equal(at(80.01).status, 'degraded');
    assert.equal(at(80).status, 'healthy');
    assert.equal(at(0).status, 'healthy');
  });

  it('keeps the seed messages and reports the reading', () => {
    assert.equal(at(95).message, 'Critical: 95.0% memory usage');
    assert.equal(at(85).message, 'Warning: 85.0% memory usage');
    assert.deepEqual(at(42), {
      status: 'healthy',
      message: 'Memory usage OK: 42.0%',
      used_percent: 42,
      used_bytes: 4200,
      limit_bytes: 10_000,
      source: 'cgroup',
    });
  });
});

describe('health: container-aware memory reading', () => {
  const meminfo = (totalGiB: number, availableGiB: number) =>
    `MemTotal:       ${totalGiB * 1024 * 1024} kB\nMemFree:        1 kB\nMemAvailable:   ${availableGiB * 1024 * 1024} kB\n`;
  const fs = (files: Record<string, string>) => (path: string) => files[path];

  const V2_MOUNT = '30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n';
  const V1_MOUNTS =
    '35 31 0:32 /kubepods/pod1/ctr /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n' +
    '41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n';

  it('parses /proc/self/cgroup and mountinfo', () => {
    assert.deepEqual(parseProcCgroup('12:cpu,cpuacct:/a\n4:memory:/x/y\n0::/z\n'), {
      v1: '/x/y',
      v2: '/z',
    });
    assert.deepEqual(parseMountinfo(V1_MOUNTS), {
      v1: { root: '/kubepods/pod1/ctr', mountPoint: '/sys/fs/cgroup/memory' },
      v2: { root: '/', mountPoint: '/sys/fs/cgroup/unified' },
    });
  });

  it('cgroup v2 in a container: working set against the limit, not the host', () => {
    const read = fs({
      '/proc/meminfo': meminfo(64, 60),
      '/proc/self/cgroup': '0::/\n',
      '/proc/self/mountinfo': V2_MOUNT,
      '/sys/fs/cgroup/memory.max': `${1024 * MiB}\n`,
      '/sys/fs/cgroup/memory.current': `${900 * MiB}\n`,
      '/sys/fs/cgroup/memory.stat': `anon 1\ninactive_file ${183 * MiB}\nactive_file 5\n`,
    });
    assert.deepEqual(readMemory({ read }), {
      usedBytes: 717 * MiB,
      limitBytes: GiB,
      source: 'cgroup',
    });
    // The host has 94% free: the seed's host reading would call this healthy at 6%.
    assert.equal(classifyMemory(readMemory({ read })).message, 'Memory usage OK: 70.0%');
  });

  it('cgroup v2 nested: the tightest limit on the way up applies', () => {
    const read = fs({
      '/proc/meminfo': meminfo(64, 60),
      '/proc/self/cgroup': '0::/system.slice/app.service\n',
      '/proc/self/mountinfo': V2_MOUNT,
      '/sys/fs/cgroup/system.slice/app.service/memory.max': 'max\n',
      '/sys/fs/cgroup/system.slice/app.service/memory.current': `${GiB}\n`,
      '/sys/fs/cgroup/system.slice/memory.max': `${2 * GiB}\n`,
      '/sys/fs/cgroup/system.slice/memory.current': `${1900 * MiB}\n`,
      '/sys/fs/cgroup/system.slice/memory.stat': 'inactive_file 0\n',
    });
    const cgroup = readCgroupMemory(read);
    assert.equal(cgroup?.dir, '/sys/fs/cgroup/system.slice');
    assert.equal(classifyMemory(readMemory({ read })).status, 'unhealthy');
  });

  it('cgroup v1 (mount rooted at the container cgroup), total_inactive_file subtracted', () => {
    const read = fs({
      '/proc/meminfo': meminfo(64, 60),
      '/proc/self/cgroup': '9:memory:/kubepods/pod1/ctr\n0::/\n',
      '/proc/self/mountinfo': V1_MOUNTS,
      '/sys/fs/cgroup/memory/memory.limit_in_bytes': `${512 * 1024 * 1024}\n`,
      '/sys/fs/cgroup/memory/memory.usage_in_bytes': `${440 * 1024 * 1024}\n`,
      '/sys/fs/cgroup/memory/memory.stat': `inactive_file 1\ntotal_inactive_file ${16 * 1024 * 1024}\n`,
    });
    const reading = readMemory({ read });
    assert.deepEqual(reading, {
      usedBytes: 424 * 1024 * 1024,
      limitBytes: 512 * 1024 * 1024,
      source: 'cgroup',
    });
    assert.equal(classifyMemory(reading).status, 'degraded');
  });

  it('no limit (v1 "unlimited", v2 "max", or above the host): the host is measured', () => {
    const host = { '/proc/meminfo': meminfo(16, 4) };
    const v1Unlimited = fs({
      ...host,
      '/proc/self/cgroup': '4:memory:/user.slice\n',
      '/proc/self/mountinfo': '35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n',
      '/sys/fs/cgroup/memory/user.slice/memory.limit_in_bytes': '9223372036854771712\n',
      '/sys/fs/cgroup/memory/user.slice/memory.usage_in_bytes': '1000\n',
      '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n',
      '/sys/fs/cgroup/memory/memory.usage_in_bytes': '1000\n',
    });
    assert.equal(readCgroupMemory(v1Unlimited), undefined);
    assert.deepEqual(readMemory({ read: v1Unlimited }), {
      usedBytes: 12 * GiB,
      limitBytes: 16 * GiB,
      source: 'host',
    });
    const aboveHost = fs({
      ...host,
      '/proc/self/cgroup': '0::/\n',
      '/proc/self/mountinfo': V2_MOUNT,
      '/sys/fs/cgroup/memory.max': `${32 * GiB}\n`,
      '/sys/fs/cgroup/memory.current': `${GiB}\n`,
    });
    assert.equal(readMemory({ read: aboveHost }).source, 'host');
    assert.equal(classifyMemory(readMemory({ read: aboveHost })).message, 'Memory usage OK: 75.0%');
  });

  it('cgroup files hidden but libuv knows a limit: RSS against it', () => {
    const read = fs({ '/proc/meminfo': meminfo(16, 8) });
    assert.deepEqual(readMemory({ read, constrained: GiB, rss: 973 * MiB }), {
      usedBytes: 973 * MiB,
      limitBytes: GiB,
      source: 'cgroup',
    });
  });
});

describe('health: database and Redis checks', () => {
  const pool = (fail?: string): PgPoolLike => ({
    totalCount: 1,
    idleCount: 1,
    query: async () => {
      if (fail) throw new Error(fail);
      return { rows: [] };
    },
  });
  const noModules = () => undefined;

  it('are absent with neither application clients nor environment settings', () => {
    const clients = new ClientRegistry();
    const options = { clients, env: {}, load: noModules, timeoutMs: 1000 };
    assert.equal(databaseCheck(options).applies(), false);
    assert.equal(redisCheck(options).applies(), false);
    // Settings but no driver installed: still absent, not failing.
    const env = { DATABASE_URL: 'postgres://x', REDIS_URL: 'redis://x' };
    assert.equal(databaseCheck({ ...options, env }).applies(), false);
    assert.equal(redisCheck({ ...options, env }).applies(), false);
  });

  it("use the application's pools, and report the failure with the credentials masked", async () => {
    const clients = new ClientRegistry();
    const a = pool();
    const b = pool('password authentication failed for postgres://app:pw@db/x');
    clients.addPool(a);
    const check = databaseCheck({ clients, env: {}, load: noModules, timeoutMs: 1000 });
    assert.equal(check.applies(), true);
    assert.deepEqual(await check.check(), {
      status: 'healthy',
      message: 'Database connection successful',
      source: 'application',
    });
    clients.addPool(b);
    assert.deepEqual(await check.check(), {
      status: 'unhealthy',
      message:
        'Database connection failed: password authentication failed for postgres://app:***@db/x',
      source: 'application',
    });
    // A pool the application ended is no longer its database.
    (b as PgPoolLike & { ending: boolean }).ending = true;
    assert.equal((await check.check()).status, 'healthy');
  });

  it('pings mysql2 pools (SELECT 1) with the pg ones, and says which systems it checked', async () => {
    const clients = new ClientRegistry();
    const sent: string[] = [];
    let failure: Error | null = null;
    const mysqlPool: MysqlPoolLike & { _closed: boolean } = {
      _closed: false,
      query: (sql, callback) => {
        sent.push(sql);
        setImmediate(() => callback(failure));
      },
    };
    clients.addMysqlPool(mysqlPool);
    const check = databaseCheck({ clients, env: {}, load: noModules, timeoutMs: 1000 });
    assert.equal(check.applies(), true);
    assert.deepEqual(await check.check(), {
      status: 'healthy',
      message: 'Database connection successful',
      source: 'application',
      systems: ['mysql'],
    });
    assert.deepEqual(sent, ['SELECT 1']);
    clients.addPool(pool());
    failure = new Error('connect ECONNREFUSED 127.0.0.1:3307');
    assert.deepEqual(await check.check(), {
      status: 'unhealthy',
      message: 'Database connection failed: connect ECONNREFUSED 127.0.0.1:3307',
      source: 'application',
      systems: ['postgresql', 'mysql'],
    });
    // A pool the application ended is no longer its database.
    mysqlPool._closed = true;
    assert.deepEqual(await check.check(), {
      status: 'healthy',
      message: 'Database connection successful',
      source: 'application',
    });
  });

  it('Redis: a client that is not connected fails at once, a ready one is pinged', async () => {
    const clients = new ClientRegistry();
    let pings = 0;
    const ready: RedisClientLike = {
      status: 'ready',
      ping: async () => {
        pings += 1;
        return 'PONG';
      },
    };
    const reconnecting: RedisClientLike = { status: 'reconnecting', ping: () => sleep(10_000) };
    clients.addRedis(ready);
    const check = redisCheck({ clients, env: {}, load: noModules, timeoutMs: 1000 });
    assert.equal((await check.check()).status, 'healthy');
    assert.equal(pings, 1);
    clients.addRedis(reconnecting);
    const start = performance.now();
    assert.deepEqual(await check.check(), {
      status: 'unhealthy',
      message: 'Redis connection failed: connection is reconnecting',
      source: 'application',
    });
    assert.ok(performance.now() - start < 100);
  });

  it('Redis: a connection waiting in a blocking command is not pinged', async () => {
    const clients = new ClientRegistry();
    let pings = 0;
    const queue = (names: string[]) => ({
      toArray: () => names.map((name) => ({ command: { name } })),
    });
    const worker = {
      status: 'ready',
      commandQueue: queue(['brpoplpush']),
      ping: () => sleep(10_000),
    } as RedisClientLike;
    clients.addRedis(worker);
    const check = redisCheck({ clients, env: {}, load: noModules, timeoutMs: 1000 });
    const onlyBlocked = await check.check();
    assert.equal(onlyBlocked.status, 'healthy');
    assert.match(String(onlyBlocked.message), /blocking commands; not pinged/);
    const app = {
      status: 'ready',
      commandQueue: queue(['get']),
      ping: async () => {
        pings += 1;
        return 'PONG';
      },
    } as RedisClientLike;
    clients.addRedis(app);
    assert.equal((await check.check()).status, 'healthy');
    assert.equal(pings, 1, 'the other client is pinged');
  });

  it("load the application's own driver, and nothing when it has none", () => {
    const empty = mkdtempSync(join(tmpdir(), 'datalab-health-'));
    try {
      assert.equal(appModuleLoader([empty])('pg'), undefined);
      const pg = appModuleLoader([empty, ROOT])('pg') as { Client?: unknown };
      assert.equal(typeof pg?.Client, 'function');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('DATABASE_URL or PG* variables configure the fallback; blank ones do not', () => {
    assert.equal(postgresConfigured({ DATABASE_URL: 'postgres://h/db' }), true);
    assert.equal(postgresConfigured({ PGHOST: 'db' }), true);
    assert.equal(postgresConfigured({ PGHOST: '', DATABASE_URL: ' ' }), false);
    assert.equal(postgresConfigured({ PGPASSWORD: 'x' }), false);
  });
});
