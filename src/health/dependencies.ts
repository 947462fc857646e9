/**
 * The `database` (PostgreSQL and MySQL `SELECT 1`) and `redis` (PING) checks.
 *
 * Zero configuration first: the application's own pg and mysql2 pools and ioredis and
 * node-redis clients, as the distro found them (ClientRegistry), so the check exercises the very
 * connections the service uses. Databases the application reaches through standalone clients
 * (Sequelize's and Knex's own pools of `pg.Client`s or mysql2 connections) get one short
 * connection of the distro's own, opened with the application's driver and the client's
 * settings: pinging one of the application's connections could land inside a transaction it
 * holds, or queue behind its statement.
 * Otherwise the connection settings in the environment (DATABASE_URL / PG*, REDIS_URL), with the
 * application's own `pg` / `ioredis` packages: the distro does not ship database drivers. With
 * neither, the check is absent from the report rather than failing.
 */
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import type {
  ClientRegistry,
  ConnectionTarget,
  MysqlPoolLike,
  NodeRedis3Like,
  NodeRedis4Like,
  PgPoolLike,
  RedisClientLike,
} from '../db/clients';
import { describeError } from './runner';
import type { CheckOutcome } from './types';

type Env = Readonly<Record<string, string | undefined>>;

/** Loads a package the way the application would, or returns undefined when it has none. */
export type ModuleLoader = (name: string) => unknown;

/** Directories the application resolves packages from: its main script's, then the cwd. */
export function appDirectories(
  mainScript: string | undefined = process.argv[1],
  cwd: string = process.cwd(),
): string[] {
  const dirs = mainScript ? [dirname(resolve(cwd, mainScript)), cwd] : [cwd];
  return [...new Set(dirs)];
}

export function appModuleLoader(dirs: readonly string[]): ModuleLoader {
  const cache = new Map<string, unknown>();
  return (name) => {
    if (cache.has(name)) return cache.get(name);
    let loaded: unknown;
    for (const dir of dirs) {
      try {
        // The path only anchors resolution; the file need not exist.
        const req = createRequire(join(dir, '__datalab_otel_health__.js'));
        loaded = req(req.resolve(name));
        break;
      } catch {
        // Not installed for this application (or not loadable): try the next directory.
      }
    }
    cache.set(name, loaded);
    return loaded;
  };
}

function nonEmpty(value: string | undefined): boolean {
  return value !== undefined && value.trim() !== '';
}

const PG_VARIABLES = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGSERVICE'];

export function postgresConfigured(env: Env): boolean {
  return nonEmpty(env.DATABASE_URL) || PG_VARIABLES.some((name) => nonEmpty(env[name]));
}

export function redisConfigured(env: Env): boolean {
  return nonEmpty(env.REDIS_URL);
}

/** pg-pool marks a pool the application has ended; it is no longer the service's database. */
function livePools(clients: ClientRegistry): PgPoolLike[] {
  return clients.pgPools().filter((pool) => {
    const state = pool as PgPoolLike & { ending?: boolean; ended?: boolean };
    return state.ending !== true && state.ended !== true;
  });
}

/** Clients the distro opened itself for the environment fallback: never the application's. */
const ownClients = new WeakSet<object>();

function appRedisClients(clients: ClientRegistry): RedisClientLike[] {
  return clients.redisClients().filter((client) => !ownClients.has(client));
}

interface PgModule {
  Client: new (
    config: Record<string, unknown>,
  ) => {
    connect(): Promise<void>;
    query(text: string): Promise<unknown>;
    end(): Promise<void>;
    on(event: 'error', listener: (err: Error) => void): void;
    connection?: { stream?: { unref?: () => void } };
  };
}

type RedisConstructor = new (
  url: string,
  options: Record<string, unknown>,
) => RedisClientLike & {
  connect(): Promise<void>;
  disconnect(): void;
  on(event: 'error', listener: (err: Error) => void): void;
};

function pgModule(load: ModuleLoader): PgModule | undefined {
  const mod = load('pg') as (PgModule & { default?: PgModule }) | undefined;
  const candidate = mod?.Client ? mod : mod?.default;
  return typeof candidate?.Client === 'function' ? candidate : undefined;
}

function redisModule(load: ModuleLoader): RedisConstructor | undefined {
  // ioredis exports the class itself, with `default` and `Redis` pointing at it too.
  const mod = load('ioredis') as { default?: unknown; Redis?: unknown } | undefined;
  const candidate = typeof mod === 'function' ? mod : (mod?.default ?? mod?.Redis);
  return typeof candidate === 'function' ? (candidate as RedisConstructor) : undefined;
}

interface OwnPgClient {
  connect(): Promise<void>;
  query(text: string): Promise<unknown>;
  end(): Promise<void>;
  on(event: 'error', listener: (err: Error) => void): void;
  connection?: { stream?: { unref?: () => void } };
}

interface OwnMysqlConnection {
  query(sql: string, callback: (err: Error | null) => void): unknown;
  destroy(): void;
  on(event: 'error', listener: (err: Error) => void): void;
  stream?: { unref?: () => void };
}

/**
 * `SELECT 1` on a connection of the distro's own to a database the application reaches through
 * standalone clients, opened with the application's driver class and the client's settings, and
 * closed at once. Rejects within `timeoutMs` whatever the driver does.
 */
async function pingTarget(
  clients: ClientRegistry,
  target: ConnectionTarget,
  timeoutMs: number,
): Promise<void> {
  let close: () => void = () => {};
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
  });
  const ping = async () => {
    if (target.system === 'postgresql') {
      const Client = target.driver as unknown as new (config: object) => OwnPgClient;
      const client = new Client({
        ...target.config,
        connectionTimeoutMillis: timeoutMs,
        query_timeout: timeoutMs,
        application_name: 'datalab-otel-health',
      });
      clients.ignore(client);
      client.on('error', () => {});
      client.connection?.stream?.unref?.();
      close = () => {
        client.end().catch(() => {});
      };
      await client.connect();
      await client.query('SELECT 1');
    } else {
      const Connection = target.driver as unknown as new (opts: object) => OwnMysqlConnection;
      // The application's ConnectionConfig, with our timeout: a copy, never the original.
      const source = target.config;
      const config = Object.assign(Object.create(Object.getPrototypeOf(source)), source, {
        connectTimeout: timeoutMs,
      });
      // Ignored by its config: the handshake, which registers connections, runs in the constructor.
      clients.ignore(config);
      const connection = new Connection({ config });
      connection.on('error', () => {});
      close = () => connection.destroy();
      await new Promise<void>((resolve, reject) => {
        connection.query('SELECT 1', (err) => (err ? reject(err) : resolve()));
      });
    }
  };
  const pinging = ping();
  // Past the deadline nobody waits for it: its late failure must not be an unhandled rejection.
  pinging.catch(() => {});
  try {
    await Promise.race([pinging, deadline]);
  } finally {
    clearTimeout(timer);
    try {
      close();
    } catch {
      // Already closed.
    }
  }
}

/** mysql2's core pools answer with a callback; `SELECT 1` like pg's, on a pooled connection. */
function pingMysqlPool(pool: MysqlPoolLike): Promise<void> {
  return new Promise((resolve, reject) => {
    pool.query('SELECT 1', (err) => (err ? reject(err) : resolve()));
  });
}

export interface DependencyCheckOptions {
  readonly clients: ClientRegistry;
  readonly env: Env;
  readonly load: ModuleLoader;
  /** Connection timeouts of the fallback clients: the check's own timeout. */
  readonly timeoutMs: number;
}

/** One short-lived connection from the environment's settings; nothing is left open. */
async function pingPostgresFromEnv(
  pg: PgModule,
  env: Env,
  timeoutMs: number,
  clients: ClientRegistry,
): Promise<void> {
  const config: Record<string, unknown> = {
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    application_name: 'datalab-otel-health',
  };
  // Without DATABASE_URL, pg reads PGHOST, PGUSER… itself.
  if (nonEmpty(env.DATABASE_URL)) config.connectionString = env.DATABASE_URL;
  const client = new pg.Client(config);
  // Not the application's: neither counted nor remembered as one of its databases.
  clients.ignore(client);
  // An error event with no listener would crash the application.
  client.on('error', () => {});
  client.connection?.stream?.unref?.();
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    client.end().catch(() => {});
  }
}

async function pingRedisFromEnv(Redis: RedisConstructor, url: string, timeoutMs: number) {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectionName: 'datalab-otel-health',
  });
  ownClients.add(client);
  // ioredis rejects with a bare "Connection is closed."; the cause comes as an error event.
  let cause: Error | undefined;
  client.on('error', (err) => {
    cause ??= err;
  });
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    throw cause ?? err;
  } finally {
    client.disconnect();
  }
}

type ObservableRedisClient = RedisClientLike & {
  once?(event: string, listener: () => void): unknown;
  removeListener?(event: string, listener: () => void): unknown;
};

/**
 * A client on its way to a connection: wait for it to be ready, or for the attempt to fail.
 * PING would otherwise sit in the offline queue until the check times out, so a Redis that is
 * down would cost every report the full timeout. Only 'ready'/'close'/'end' are listened to:
 * an 'error' listener would silence ioredis' own "Unhandled error event" output for the app.
 */
function connected(client: ObservableRedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  if (!CONNECTING_STATES.has(client.status) || !client.once || !client.removeListener) {
    return Promise.reject(new Error(`connection is ${client.status}`));
  }
  const { once, removeListener } = { once: client.once, removeListener: client.removeListener };
  return new Promise((resolve, reject) => {
    const finish = (err?: Error) => {
      clearTimeout(timer);
      removeListener.call(client, 'ready', onReady);
      removeListener.call(client, 'close', onClose);
      removeListener.call(client, 'end', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => finish();
    const onClose = () => finish(new Error('connection closed while connecting'));
    const timer = setTimeout(() => finish(new Error(`connection is ${client.status}`)), timeoutMs);
    timer.unref();
    once.call(client, 'ready', onReady);
    once.call(client, 'close', onClose);
    once.call(client, 'end', onClose);
  });
}

export function databaseCheck(options: DependencyCheckOptions): {
  applies: () => boolean;
  check: () => Promise<CheckOutcome>;
} {
  const { clients, env, load, timeoutMs } = options;
  return {
    applies: () =>
      livePools(clients).length > 0 ||
      clients.mysqlPools().length > 0 ||
      clients.connectionTargets().length > 0 ||
      (postgresConfigured(env) && pgModule(load) !== undefined),
    check: async () => {
      const pools = livePools(clients);
      const mysqlPools = clients.mysqlPools();
      const targets = clients.connectionTargets();
      const count = pools.length + mysqlPools.length + targets.length;
      const source = count > 0 ? 'application' : 'environment';
      const pg = pools.length + targets.filter((t) => t.system === 'postgresql').length;
      const mysql = mysqlPools.length + targets.filter((t) => t.system === 'mysql').length;
      try {
        if (count > 0) {
          await Promise.all([
            ...pools.map((pool) => pool.query('SELECT 1')),
            ...mysqlPools.map(pingMysqlPool),
            ...targets.map((target) => pingTarget(clients, target, timeoutMs)),
          ]);
        } else {
          const pg = pgModule(load);
          if (!pg) throw new Error('the pg package is not installed');
          await pingPostgresFromEnv(pg, env, timeoutMs, clients);
        }
        const outcome: CheckOutcome = {
          status: 'healthy',
          message: 'Database connection successful',
          source,
        };
        if (count > 1) outcome.pools = count;
        if (mysql > 0) outcome.systems = systems(pg, mysql);
        return outcome;
      } catch (err) {
        const outcome: CheckOutcome = {
          status: 'unhealthy',
          message: `Database connection failed: ${describeError(err)}`,
          source,
        };
        if (mysql > 0) outcome.systems = systems(pg, mysql);
        return outcome;
      }
    },
  };
}

/** Which database systems the check pinged, as `db_system` names them; only when MySQL is one. */
function systems(pg: number, mysql: number): string[] {
  return pg > 0 && mysql > 0 ? ['postgresql', 'mysql'] : ['mysql'];
}

const BLOCKING_COMMANDS = new Set([
  'blpop',
  'brpop',
  'brpoplpush',
  'blmove',
  'blmpop',
  'bzpopmin',
  'bzpopmax',
  'bzmpop',
  'xread',
  'xreadgroup',
  'wait',
  'waitaof',
]);

/** Whether an ioredis client has a blocking command in flight (its command queue is public). */
export function isBlocked(client: RedisClientLike): boolean {
  const queue = (
    client as { commandQueue?: { toArray?: () => { command?: { name?: unknown } }[] } }
  ).commandQueue;
  const items = typeof queue?.toArray === 'function' ? queue.toArray() : [];
  return items.some((item) => {
    const name = item.command?.name;
    return typeof name === 'string' && BLOCKING_COMMANDS.has(name.toLowerCase());
  });
}

/** ioredis states from which a connection may still become ready without a reconnection. */
const CONNECTING_STATES = new Set(['wait', 'connecting', 'connect']);

/** Whether a node-redis 3 client has a blocking command in flight. */
function isBlocked3(client: NodeRedis3Like): boolean {
  const queue = client.command_queue;
  const items = typeof queue?.toArray === 'function' ? queue.toArray() : [];
  return items.some(
    (item) => typeof item.command === 'string' && BLOCKING_COMMANDS.has(item.command.toLowerCase()),
  );
}

/**
 * A client the check can ping, whatever its library: `ping` rejects at once when the client is
 * not connected (a PING would wait in its offline queue for the whole timeout).
 */
interface Pingable {
  ping(): Promise<unknown>;
}

function nodeRedis3Pingable(client: NodeRedis3Like): Pingable {
  return {
    ping: () =>
      new Promise((resolve, reject) => {
        if (!client.ready) {
          reject(new Error('connection is not ready'));
          return;
        }
        client.ping((err) => (err ? reject(err) : resolve(undefined)));
      }),
  };
}

function nodeRedis4Pingable(client: NodeRedis4Like): Pingable {
  return {
    ping: () =>
      client.isReady
        ? // In legacy mode the client's own methods take callbacks; `v4` has the promise ones
          // (and throws when read outside legacy mode).
          (client.options?.legacyMode === true && client.v4 ? client.v4 : client).ping()
        : Promise.reject(new Error('connection is not ready')),
  };
}

/** The application's node-redis clients worth a PING: not quit, not waiting in a blocking command. */
function nodeRedisTargets(clients: ClientRegistry): { live: number; open: Pingable[] } {
  // `closing` (3) / not `isOpen` (4): the application quit the client.
  const v3 = clients.nodeRedis3Clients().filter((client) => !client.closing);
  const v4 = clients.nodeRedis4Clients().filter((client) => client.isOpen);
  return {
    live: v3.length + v4.length,
    open: [
      ...v3.filter((client) => !isBlocked3(client)).map(nodeRedis3Pingable),
      ...v4.map(nodeRedis4Pingable),
    ],
  };
}

export function redisCheck(options: DependencyCheckOptions): {
  applies: () => boolean;
  check: () => Promise<CheckOutcome>;
} {
  const { clients, env, load, timeoutMs } = options;
  return {
    applies: () =>
      appRedisClients(clients).length > 0 ||
      clients.nodeRedis3Clients().length > 0 ||
      clients.nodeRedis4Clients().length > 0 ||
      (redisConfigured(env) && redisModule(load) !== undefined),
    check: async () => {
      const ioredis = appRedisClients(clients);
      const nodeRedis = nodeRedisTargets(clients);
      const all =
        ioredis.length + clients.nodeRedis3Clients().length + clients.nodeRedis4Clients().length;
      // A client the application quit is not its connection any more.
      const liveIoredis = ioredis.filter((client) => client.status !== 'end');
      const live = liveIoredis.length + nodeRedis.live;
      // A connection waiting in BRPOP & co. (job queues keep one) answers PING only after the
      // blocking command returns: pinging it would time out on a healthy Redis.
      const openIoredis = liveIoredis.filter((client) => !isBlocked(client));
      const open = openIoredis.length + nodeRedis.open.length;
      if (live > 0 && open === 0) {
        return {
          status: 'healthy',
          message: 'Redis connections are all waiting in blocking commands; not pinged',
          source: 'application',
        };
      }
      const fromEnv = open === 0 && redisConfigured(env);
      const source = fromEnv || all === 0 ? 'environment' : 'application';
      try {
        if (open > 0) {
          await Promise.all([
            ...openIoredis.map(async (client) => {
              await connected(client, timeoutMs);
              await client.ping();
            }),
            ...nodeRedis.open.map((client) => client.ping()),
          ]);
        } else if (fromEnv) {
          const Redis = redisModule(load);
          if (!Redis) throw new Error('the ioredis package is not installed');
          await pingRedisFromEnv(Redis, env.REDIS_URL as string, timeoutMs);
        } else {
          throw new Error('connection is closed');
        }
        return { status: 'healthy', message: 'Redis connection successful', source };
      } catch (err) {
        return {
          status: 'unhealthy',
          message: `Redis connection failed: ${describeError(err)}`,
          source,
        };
      }
    },
  };
}
