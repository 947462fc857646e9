/**
 * Finds the application's own database clients (pg pools and clients, mysql2 pools and
 * connections, ioredis and node-redis 3/4 clients) and times their operations, with no code
 * change in the application. ORMs reach the database through these drivers: TypeORM, Kysely and
 * MikroORM through a pg Pool or mysql2 pool, Sequelize and Knex through `pg.Client`s or mysql2
 * connections in a pool of their own.
 *
 * The timings feed one histogram for every database system, and the pools feed
 * `database_connections_active`, independent of tracing: the OpenTelemetry instrumentations
 * only measure when they make a span (ioredis needs a parent span, pg's metric has no `service`),
 * and their metrics live under other names. The registry is also what the health checks use to
 * ping the application's real connections.
 */
import { performance } from 'node:perf_hooks';
import { context } from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
} from '@opentelemetry/instrumentation';
import { DISTRO_VERSION } from '../version';
import { warnOnce } from '../warnings';
import { sqlOperation } from './sql';

/** What a pg-pool instance exposes that we read. */
export interface PgPoolLike {
  readonly totalCount: number;
  readonly idleCount: number;
  query(text: string): Promise<unknown>;
}

/** What a mysql2 (core, callback) pool exposes that we read. */
export interface MysqlPoolLike {
  readonly config?: { readonly connectionConfig?: MysqlConfig };
  readonly _allConnections?: { readonly length: number };
  readonly _freeConnections?: { readonly length: number };
  readonly _closed?: boolean;
  query(sql: string, callback: (err: Error | null) => void): unknown;
}

/** What an ioredis client exposes that we read. */
export interface RedisClientLike {
  readonly status: string;
  ping(): Promise<unknown>;
}

/**
 * What a `pg.Client` exposes that we read. pg 8.12+ keeps the query state in `_activeQuery`,
 * `_queryQueue` and `_txStatus` (the old names are deprecated getters that print a warning).
 */
export interface PgClientLike {
  readonly connectionParameters?: PgConnectionParameters;
  readonly _activeQuery?: unknown;
  readonly _queryQueue?: { readonly length: number };
  readonly _txStatus?: string | null;
  readonly _ending?: boolean;
  readonly activeQuery?: unknown;
  readonly queryQueue?: { readonly length: number };
}

export interface PgConnectionParameters {
  readonly host?: string;
  readonly port?: number;
  readonly user?: string;
  readonly database?: string;
  readonly password?: unknown;
  readonly ssl?: unknown;
}

/** What a mysql2 (core) connection exposes that we read. */
export interface MysqlConnectionLike {
  readonly config?: Record<string, unknown> & {
    host?: string;
    port?: number;
    user?: string;
    database?: string;
    socketPath?: string;
  };
  readonly _command?: unknown;
  readonly _commands?: { readonly length?: number };
  readonly _closing?: boolean;
  readonly _fatalError?: unknown;
}

/** A node-redis 3 `RedisClient` (callback API). */
export interface NodeRedis3Like {
  readonly ready: boolean;
  readonly connected: boolean;
  readonly closing: boolean;
  readonly command_queue?: { toArray?(): { command?: unknown }[] };
  ping(callback: (err: Error | null) => void): unknown;
}

/** A node-redis 4 (`@redis/client` 1.x) client (promise API). */
export interface NodeRedis4Like {
  readonly isOpen: boolean;
  readonly isReady: boolean;
  readonly options?: { readonly legacyMode?: boolean };
  readonly v4?: { ping(): Promise<unknown> };
  ping(): Promise<unknown>;
}

/**
 * A database a standalone client (one not taken from a pg or mysql2 pool: ORMs such as
 * Sequelize and Knex pool them themselves) connected to, and what it takes to open one more
 * connection to it: the application's own driver class and the client's settings.
 */
export interface ConnectionTarget {
  readonly system: 'postgresql' | 'mysql';
  readonly key: string;
  readonly driver: new (config: never) => unknown;
  readonly config: Readonly<Record<string, unknown>>;
  /** Learnt from a mysql2 pool: pinged through the pool while it is open. */
  readonly pooled?: boolean;
}

type MysqlConfig = NonNullable<MysqlConnectionLike['config']>;

function mysqlKey(config: MysqlConfig): string {
  const where = config.socketPath ?? `${config.host ?? ''}:${config.port ?? ''}`;
  return `mysql ${config.user ?? ''}@${where}/${config.database ?? ''}`;
}

/** Distinct databases remembered for the health check: beyond, new ones are not. */
const MAX_TARGETS = 16;

export type OperationRecorder = (
  system: 'postgresql' | 'mysql' | 'redis',
  operation: string,
  seconds: number,
) => void;

/**
 * Long-lived clients the application created, held weakly: a pool the application drops must
 * not be kept alive by its telemetry.
 */
export class ClientRegistry {
  private readonly pools = new Set<WeakRef<PgPoolLike>>();
  private readonly mysql = new Set<WeakRef<MysqlPoolLike>>();
  private readonly redis = new Set<WeakRef<RedisClientLike>>();
  private readonly pgStandalone = new Set<WeakRef<PgClientLike>>();
  private readonly mysqlStandalone = new Set<WeakRef<MysqlConnectionLike>>();
  private readonly redis3 = new Set<WeakRef<NodeRedis3Like>>();
  private readonly redis4 = new Set<WeakRef<NodeRedis4Like>>();
  private readonly targets = new Map<string, ConnectionTarget>();
  private readonly seen = new WeakSet<object>();
  /** Connections the distro opened itself (health checks): never the application's. */
  private readonly own = new WeakSet<object>();

  /** Marks a client the distro opens itself, before it connects. */
  ignore(client: object): void {
    this.own.add(client);
  }

  isOwn(client: object): boolean {
    return this.own.has(client);
  }

  /**
   * A pg.Client that connects. Those of a pg Pool the distro knows are counted through the
   * pool; the pool pushes its client into `_clients` before connecting it.
   */
  addPgClient(client: PgClientLike, driver: unknown): void {
    if (this.seen.has(client) || this.own.has(client)) return;
    this.seen.add(client);
    for (const pool of this.pgPools()) {
      const members = (pool as { _clients?: unknown[] })._clients;
      if (Array.isArray(members) && members.includes(client)) return;
    }
    this.pgStandalone.add(new WeakRef(client));
    const params = client.connectionParameters;
    if (params && typeof driver === 'function') {
      const key = `postgresql ${params.user ?? ''}@${params.host ?? ''}:${params.port ?? ''}/${params.database ?? ''}`;
      this.addTarget({
        system: 'postgresql',
        key,
        driver: driver as ConnectionTarget['driver'],
        config: {
          host: params.host,
          port: params.port,
          user: params.user,
          database: params.database,
          password: params.password,
          ssl: params.ssl,
        },
      });
    }
  }

  /** A mysql2 connection that is not a pool's (its handshake is its first command). */
  addMysqlConnection(connection: MysqlConnectionLike, driver: unknown): void {
    if (this.seen.has(connection) || this.own.has(connection)) return;
    if (connection.config && this.own.has(connection.config)) return;
    this.seen.add(connection);
    this.mysqlStandalone.add(new WeakRef(connection));
    const config = connection.config;
    if (config && typeof driver === 'function') {
      this.addTarget({
        system: 'mysql',
        key: mysqlKey(config),
        driver: driver as ConnectionTarget['driver'],
        config,
      });
    }
  }

  private addTarget(target: ConnectionTarget): void {
    if (this.targets.has(target.key) || this.targets.size >= MAX_TARGETS) return;
    this.targets.set(target.key, target);
  }

  addNodeRedis3(client: NodeRedis3Like): void {
    if (this.seen.has(client)) return;
    this.seen.add(client);
    this.redis3.add(new WeakRef(client));
  }

  addNodeRedis4(client: NodeRedis4Like): void {
    if (this.seen.has(client)) return;
    this.seen.add(client);
    this.redis4.add(new WeakRef(client));
  }

  /**
   * Databases the application reached through standalone clients (kept after those clients
   * close: an ORM's pool drops idle connections, the database is still the service's).
   */
  connectionTargets(): ConnectionTarget[] {
    const out: ConnectionTarget[] = [];
    let pooled: Set<string> | undefined;
    for (const target of this.targets.values()) {
      if (target.pooled) {
        // A live pool to the same database answers for it.
        pooled ??= new Set(
          this.mysqlPools().map((pool) =>
            pool.config?.connectionConfig ? mysqlKey(pool.config.connectionConfig) : '',
          ),
        );
        if (pooled.has(target.key)) continue;
      }
      out.push(target);
    }
    return out;
  }

  nodeRedis3Clients(): NodeRedis3Like[] {
    return live(this.redis3);
  }

  nodeRedis4Clients(): NodeRedis4Like[] {
    return live(this.redis4);
  }

  addPool(pool: PgPoolLike): void {
    if (this.seen.has(pool)) return;
    this.seen.add(pool);
    this.pools.add(new WeakRef(pool));
  }

  /**
   * A mysql2 pool, and its database as a target: ORMs end the pool when their first connection
   * fails (TypeORM does), and the database is still the one the service needs.
   */
  addMysqlPool(pool: MysqlPoolLike, connectionClass?: unknown): void {
    if (this.seen.has(pool)) return;
    this.seen.add(pool);
    this.mysql.add(new WeakRef(pool));
    const config = pool.config?.connectionConfig;
    if (config && typeof connectionClass === 'function') {
      this.addTarget({
        system: 'mysql',
        key: mysqlKey(config),
        driver: connectionClass as ConnectionTarget['driver'],
        config,
        pooled: true,
      });
    }
  }

  addRedis(client: RedisClientLike): void {
    if (this.seen.has(client)) return;
    this.seen.add(client);
    this.redis.add(new WeakRef(client));
  }

  pgPools(): PgPoolLike[] {
    return live(this.pools);
  }

  /** mysql2 pools the application has not ended. */
  mysqlPools(): MysqlPoolLike[] {
    return live(this.mysql).filter((pool) => pool._closed !== true);
  }

  redisClients(): RedisClientLike[] {
    return live(this.redis);
  }

  /**
   * Connections in use right now (SPEC §3 database_connections_active): checked out of a pg or
   * mysql2 pool, or, for a standalone client (an ORM's own pool of them), running or queueing a
   * statement or, for pg, inside a transaction.
   */
  checkedOutConnections(): number {
    let sum = 0;
    for (const client of live(this.pgStandalone)) if (pgClientBusy(client)) sum++;
    for (const connection of live(this.mysqlStandalone)) {
      if (connection._closing || connection._fatalError) continue;
      if (connection._command || (connection._commands?.length ?? 0) > 0) sum++;
    }
    for (const pool of this.pgPools()) sum += Math.max(0, pool.totalCount - pool.idleCount);
    // mysql2 keeps every connection in `_allConnections` (those still connecting too, as pg's
    // totalCount does) and the idle ones also in `_freeConnections`.
    for (const pool of this.mysqlPools()) {
      const all = pool._allConnections?.length;
      const free = pool._freeConnections?.length;
      if (typeof all === 'number' && typeof free === 'number') sum += Math.max(0, all - free);
    }
    return sum;
  }
}

function pgClientBusy(client: PgClientLike): boolean {
  if (client._ending) return false;
  if ('_activeQuery' in client) {
    // 'T' in a transaction block, 'E' in a failed one: held by the application between statements.
    const tx = client._txStatus;
    return (
      client._activeQuery != null ||
      (client._queryQueue?.length ?? 0) > 0 ||
      tx === 'T' ||
      tx === 'E'
    );
  }
  return client.activeQuery != null || (client.queryQueue?.length ?? 0) > 0;
}

function live<T extends object>(refs: Set<WeakRef<T>>): T[] {
  const out: T[] = [];
  for (const ref of refs) {
    const value = ref.deref();
    if (value === undefined) refs.delete(ref);
    else out.push(value);
  }
  return out;
}

type AnyFunction = (...args: unknown[]) => unknown;

const kTimed = Symbol('datalab.otel.timed');
const kQueryStart = Symbol('datalab.otel.queryStart');

interface TimedQuery {
  text?: string;
  [kQueryStart]?: number;
}

interface RedisCommand {
  name?: unknown;
  promise?: Promise<unknown>;
  [kTimed]?: boolean;
}

/** Redis command names form a closed set, but `call('anything')` does not: keep the label sane. */
export function redisOperation(name: unknown): string {
  if (typeof name !== 'string') return 'other';
  const lower = name.toLowerCase();
  return /^[a-z][a-z_.|-]{0,31}$/.test(lower) ? lower : 'other';
}

const kOriginal = Symbol('datalab.otel.original');
const kStacked = Symbol('datalab.otel.stacked');
type Stacked = AnyFunction & { [kOriginal]?: AnyFunction };
type Target = Record<string, unknown> & { [kStacked]?: Set<string> };

/**
 * Wraps a method on top of whatever is there. Unlike InstrumentationBase#_wrap, which unwraps an
 * existing wrapper first, this leaves the OpenTelemetry instrumentations' wrappers of the same
 * method (pg's query, pg-pool's connect, ioredis' sendCommand) in place, in either order.
 */
function stack(target: Target, name: string, wrap: (original: AnyFunction) => AnyFunction): void {
  const current = target[name];
  // The same module can reach us twice (require and import hooks): patch a method once.
  if (typeof current !== 'function' || target[kStacked]?.has(name)) return;
  if (!Object.hasOwn(target, kStacked)) target[kStacked] = new Set();
  target[kStacked]?.add(name);
  const wrapped: Stacked = wrap(current as AnyFunction);
  wrapped[kOriginal] = current as AnyFunction;
  target[name] = wrapped;
}

/** pg 8's Client opens its connection in `_connect`; `connect` where a version has no such. */
function pgConnectMethod(proto: Target): string {
  return typeof proto._connect === 'function' ? '_connect' : 'connect';
}

function unstack(target: Target, name: string): void {
  const current = target[name] as Stacked | undefined;
  // Only when ours is still on top: unwrapping from under another wrapper would remove it too.
  if (current?.[kOriginal]) {
    target[name] = current[kOriginal];
    target[kStacked]?.delete(name);
  }
}

interface PgModule {
  Query: { prototype: Target };
  Client?: { prototype: Target };
}

interface MysqlCommand {
  sql?: unknown;
  onResult?: unknown;
  query?: unknown;
  constructor?: { name?: string };
  on?(event: 'end', listener: () => void): unknown;
  [kQueryStart]?: number;
}

interface MysqlConnection {
  _fatalError?: unknown;
  _command?: MysqlCommand | null;
  _commands?: { length?: number; get?(i: number): MysqlCommand | undefined };
}

/**
 * mysql2 3.x keeps query/execute/addCommand on a base class that `lib/connection.js`'s export
 * extends (older 3.x releases have them on the export itself).
 */
function commandPrototype(mod: { prototype: Target }): Target {
  const proto = mod.prototype;
  const base = Object.getPrototypeOf(proto) as Target | null;
  return base && typeof base.addCommand === 'function' && !Object.hasOwn(proto, 'addCommand')
    ? base
    : proto;
}

const kCallback = Symbol('datalab.otel.queryCallback');

/**
 * pg calls a query's callback from its socket's events, that is in the context of whichever
 * request opened the pooled connection: log lines and outbound calls made in the callback would
 * carry that request's correlation ID. instrumentation-pg rebinds callbacks only when it makes a
 * span (not in metrics-only mode, nor outside a traced request). pg's Query constructor assigns
 * `this.callback` while the caller's context is active, so an accessor on the prototype binds it
 * there, whoever wraps `Client#query` (pg itself binds the same property to `process.domain`).
 * Left in place on unpatch: a query in flight would otherwise lose its callback.
 */
function bindQueryCallbacks(proto: Target): void {
  if (Object.hasOwn(proto, 'callback')) return;
  type Holder = { [kCallback]?: unknown };
  Object.defineProperty(proto, 'callback', {
    configurable: true,
    get(this: Holder) {
      return this[kCallback];
    },
    set(this: Holder, fn: unknown) {
      this[kCallback] =
        typeof fn === 'function' ? context.bind(context.active(), fn as AnyFunction) : fn;
    },
  });
}

function guard(err: unknown): void {
  warnOnce(
    'DLOTEL_INTERNAL_ERROR',
    'db-clients',
    `database client hook failed and was skipped: ${err instanceof Error ? err.message : String(err)}`,
  );
}

export class DbClientsInstrumentation extends InstrumentationBase {
  /** mysql2's `Connection` (lib/connection.js), for the health check's own connections. */
  private mysqlConnectionClass: unknown;

  constructor(
    private readonly registry: ClientRegistry,
    private readonly record: OperationRecorder,
  ) {
    super('@datalab/otel/db-clients', DISTRO_VERSION, {});
  }

  protected init() {
    type Proto = Target;
    // ESM namespaces carry the CommonJS exports under `default`.
    const cjs = <T>(mod: T & { default?: T }): T => mod.default ?? mod;
    return [
      new InstrumentationNodeModuleDefinition(
        'pg-pool',
        ['>=2 <4'],
        (mod: { prototype: Proto }) => {
          stack(cjs(mod).prototype, 'connect', (original) => this.patchPoolConnect(original));
          return mod;
        },
        (mod: { prototype: Proto }) => unstack(cjs(mod).prototype, 'connect'),
      ),
      new InstrumentationNodeModuleDefinition(
        'pg',
        ['>=8 <9'],
        (mod: PgModule) => {
          this.patchPgQueryClass(cjs(mod).Query);
          bindQueryCallbacks(cjs(mod).Query.prototype);
          const Client = cjs(mod).Client;
          // `_connect`, which `connect` calls, not `connect`: instrumentation-pg patches `connect`
          // once per hook it has on pg (the module and lib/client.js) and tells its own wrapper
          // by a marker, so a wrapper of ours between the two would get its span made twice.
          if (Client)
            stack(Client.prototype, pgConnectMethod(Client.prototype), (original) =>
              this.patchPgConnect(original),
            );
          return mod;
        },
        (mod: PgModule) => {
          const proto = cjs(mod).Query.prototype;
          for (const name of ['submit', 'handleReadyForQuery', 'handleError']) unstack(proto, name);
          const Client = cjs(mod).Client;
          if (Client) unstack(Client.prototype, pgConnectMethod(Client.prototype));
        },
      ),
      new InstrumentationNodeModuleDefinition(
        'mysql2',
        ['>=3 <4'],
        (mod) => mod,
        () => {},
        [
          new InstrumentationNodeModuleFile(
            'mysql2/lib/connection.js',
            ['>=3 <4'],
            (mod: { prototype: Proto }) => {
              this.mysqlConnectionClass = mod;
              this.patchMysqlConnection(commandPrototype(mod));
              return mod;
            },
            (mod: { prototype: Proto } | undefined) => {
              if (mod === undefined) return;
              const proto = commandPrototype(mod);
              for (const name of ['addCommand', '_notifyError']) unstack(proto, name);
            },
          ),
          new InstrumentationNodeModuleFile(
            'mysql2/lib/pool.js',
            ['>=3 <4'],
            (mod: { prototype: Proto }) => {
              stack(mod.prototype, 'getConnection', (original) =>
                this.patchMysqlGetConnection(original),
              );
              return mod;
            },
            (mod: { prototype: Proto } | undefined) => {
              if (mod !== undefined) unstack(mod.prototype, 'getConnection');
            },
          ),
        ],
      ),
      new InstrumentationNodeModuleDefinition(
        'redis',
        ['>=2.6 <4'],
        (mod: { RedisClient?: { prototype: Proto } }) => {
          const proto = cjs(mod).RedisClient?.prototype;
          if (proto) {
            stack(proto, 'create_stream', (original) => this.patchRedis3CreateStream(original));
            stack(proto, 'internal_send_command', (original) =>
              this.patchRedis3SendCommand(original),
            );
          }
          return mod;
        },
        (mod: { RedisClient?: { prototype: Proto } }) => {
          const proto = cjs(mod).RedisClient?.prototype;
          if (proto)
            for (const name of ['create_stream', 'internal_send_command']) unstack(proto, name);
        },
      ),
      ...['@redis/client', '@node-redis/client'].map(
        (name) =>
          new InstrumentationNodeModuleDefinition(
            name,
            ['^1.0.0'],
            (mod) => mod,
            () => {},
            [
              new InstrumentationNodeModuleFile(
                `${name}/dist/lib/client/index.js`,
                ['^1.0.0'],
                (mod: { default?: { prototype: Proto } }) => {
                  const proto = mod.default?.prototype;
                  if (proto) {
                    stack(proto, 'connect', (original) => this.patchRedis4Connect(original));
                    stack(proto, 'duplicate', (original) => this.patchRedis4Duplicate(original));
                  }
                  return mod;
                },
                (mod: { default?: { prototype: Proto } } | undefined) => {
                  const proto = mod?.default?.prototype;
                  if (proto) for (const method of ['connect', 'duplicate']) unstack(proto, method);
                },
              ),
              new InstrumentationNodeModuleFile(
                `${name}/dist/lib/client/commands-queue.js`,
                ['^1.0.0'],
                (mod: { default?: { prototype: Proto } }) => {
                  const proto = mod.default?.prototype;
                  if (proto) {
                    stack(proto, 'addCommand', (original) => this.patchRedis4AddCommand(original));
                  }
                  return mod;
                },
                (mod: { default?: { prototype: Proto } } | undefined) => {
                  const proto = mod?.default?.prototype;
                  if (proto) unstack(proto, 'addCommand');
                },
              ),
            ],
          ),
      ),
      new InstrumentationNodeModuleDefinition(
        'ioredis',
        ['>=4 <7'],
        (mod: { prototype: Proto }) => {
          stack(cjs(mod).prototype, 'sendCommand', (original) =>
            this.patchRedisSendCommand(original),
          );
          return mod;
        },
        (mod: { prototype: Proto }) => unstack(cjs(mod).prototype, 'sendCommand'),
      ),
    ];
  }

  private patchPoolConnect(original: AnyFunction) {
    const registry = this.registry;
    return function connect(this: PgPoolLike, ...args: unknown[]) {
      try {
        registry.addPool(this);
        // A caller waiting for a free connection is called back when another request releases
        // one: without this, in that request's context (its correlation ID in our log lines).
        if (typeof args[0] === 'function') args[0] = context.bind(context.active(), args[0]);
      } catch (err) {
        guard(err);
      }
      return original.apply(this, args);
    };
  }

  /**
   * pg: a Query is timed from `submit` (sent to the server) until `handleReadyForQuery`
   * (success) or `handleError`, exactly one of which pg calls. Patching Query rather than
   * Client#query keeps clear of instrumentation-pg, which wraps Client#query twice (once per
   * hook) and would wrap a foreign wrapper in between a second time.
   */
  private patchPgQueryClass(Query: { prototype: Target }): void {
    const record = this.record;
    stack(
      Query.prototype,
      'submit',
      (original) =>
        function submit(this: TimedQuery, ...args: unknown[]) {
          try {
            this[kQueryStart] = performance.now();
          } catch (err) {
            guard(err);
          }
          return original.apply(this, args);
        },
    );
    const finishing = (original: AnyFunction) =>
      function finish(this: TimedQuery, ...args: unknown[]) {
        try {
          const start = this[kQueryStart];
          if (start !== undefined) {
            this[kQueryStart] = undefined;
            record('postgresql', sqlOperation(this.text), (performance.now() - start) / 1000);
          }
        } catch (err) {
          guard(err);
        }
        return original.apply(this, args);
      };
    stack(Query.prototype, 'handleReadyForQuery', finishing);
    stack(Query.prototype, 'handleError', finishing);
  }

  /**
   * mysql2: every statement becomes a Query or Execute command handed to `addCommand`, whichever
   * API the application used (callback or promise, connection or pool, `query` or `execute`), and
   * each command emits 'end' once, after its result or its error. Timed from `addCommand` (for
   * `execute`, that includes preparing the statement the first time), which is what the
   * application waits for once it holds the connection. Patching `addCommand` rather than
   * `query`/`execute` keeps clear of instrumentation-mysql2, which unwraps and re-wraps those.
   * A connection that breaks fails its commands without 'end': `_notifyError` records them.
   */
  private patchMysqlConnection(proto: Target): void {
    const { record, registry } = this;
    function finish(this: MysqlCommand) {
      try {
        const start = this[kQueryStart];
        if (start === undefined) return;
        this[kQueryStart] = undefined;
        // Execute commands of older 3.x releases kept the text in `query`.
        const text = typeof this.sql === 'string' ? this.sql : this.query;
        record(
          'mysql',
          sqlOperation(typeof text === 'string' ? text : undefined),
          (performance.now() - start) / 1000,
        );
      } catch (err) {
        guard(err);
      }
    }
    stack(
      proto,
      'addCommand',
      (original) =>
        function addCommand(this: unknown, ...args: unknown[]) {
          try {
            const command = args[0] as MysqlCommand | undefined;
            const kind = command?.constructor?.name;
            // A connection's first command; those of a pool are counted through the pool.
            if (kind === 'ClientHandshake') {
              const ctor = (this as { constructor?: { name?: string } }).constructor;
              if (ctor?.name !== 'PoolConnection') {
                registry.addMysqlConnection(this as MysqlConnectionLike, ctor);
              }
            } else if (
              command !== undefined &&
              (kind === 'Query' || kind === 'Execute') &&
              command[kQueryStart] === undefined
            ) {
              command[kQueryStart] = performance.now();
              // A shared listener: `this` is the command.
              command.on?.('end', finish);
              // mysql2 calls back from its socket's events, in the context of whichever request
              // opened the pooled connection (or of none, for one opened at start-up):
              // instrumentation-mysql2 does not rebind. `addCommand` runs in the caller's context
              // (pool callers' too: see patchMysqlGetConnection).
              if (typeof command.onResult === 'function') {
                command.onResult = context.bind(context.active(), command.onResult);
              }
            }
          } catch (err) {
            guard(err);
          }
          return original.apply(this, args);
        },
    );
    stack(
      proto,
      '_notifyError',
      (original) =>
        function notifyError(this: MysqlConnection, ...args: unknown[]) {
          try {
            if (!this._fatalError) {
              if (this._command) finish.call(this._command);
              const queued = this._commands;
              const length = typeof queued?.length === 'number' ? queued.length : 0;
              for (let i = 0; i < length; i++) {
                const command = queued?.get?.(i);
                if (command) finish.call(command);
              }
            }
          } catch (err) {
            guard(err);
          }
          return original.apply(this, args);
        },
    );
  }

  private patchMysqlGetConnection(original: AnyFunction) {
    const registry = this.registry;
    const instrumentation = this;
    return function getConnection(this: MysqlPoolLike, ...args: unknown[]) {
      try {
        registry.addMysqlPool(this, instrumentation.mysqlConnectionClass);
        // As for pg-pool: a caller queued for a connection is called back when another request
        // releases one, in that request's context otherwise.
        if (typeof args[0] === 'function') args[0] = context.bind(context.active(), args[0]);
      } catch (err) {
        guard(err);
      }
      return original.apply(this, args);
    };
  }

  /** Once per connection, never per query: the client joins the registry. */
  private patchPgConnect(original: AnyFunction) {
    const registry = this.registry;
    return function connect(this: PgClientLike, ...args: unknown[]) {
      try {
        registry.addPgClient(this, (this as { constructor?: unknown }).constructor);
      } catch (err) {
        guard(err);
      }
      return original.apply(this, args);
    };
  }

  /** node-redis 3 opens (and reopens) its socket here, from its constructor on. */
  private patchRedis3CreateStream(original: AnyFunction) {
    const registry = this.registry;
    return function create_stream(this: NodeRedis3Like, ...args: unknown[]) {
      try {
        registry.addNodeRedis3(this);
      } catch (err) {
        guard(err);
      }
      return original.apply(this, args);
    };
  }

  /**
   * node-redis 3: every command, whichever API sent it (commands, `send_command`, MULTI), goes
   * through `internal_send_command` with its callback; one sent while the connection is not
   * ready is queued and sent through here again once it is: timed once, from the first send.
   * A command without a callback (fire and forget) is not timed: giving it one would change how
   * node-redis reports its errors (an 'error' event without a callback).
   */
  private patchRedis3SendCommand(original: AnyFunction) {
    const record = this.record;
    return function internal_send_command(this: unknown, ...args: unknown[]) {
      try {
        const command = args[0] as
          | { command?: unknown; callback?: unknown; [kTimed]?: boolean }
          | undefined;
        const callback = command?.callback;
        if (command && typeof callback === 'function' && !command[kTimed]) {
          command[kTimed] = true;
          const start = performance.now();
          const name = redisOperation(command.command);
          command.callback = function timed(this: unknown, ...results: unknown[]) {
            try {
              record('redis', name, (performance.now() - start) / 1000);
            } catch (err) {
              guard(err);
            }
            return (callback as AnyFunction).apply(this, results);
          };
        }
      } catch (err) {
        guard(err);
      }
      return original.apply(this, args);
    };
  }

  /**
   * The clients of node-redis 4's isolation pool are `duplicate({ isolationPoolOptions:
   * undefined })`s of the application's client, there to run blocking commands (BLPOP & co.):
   * a PING on them would wait behind those. The application's client stands for them.
   */
  private patchRedis4Duplicate(original: AnyFunction) {
    const registry = this.registry;
    return function duplicate(this: unknown, ...args: unknown[]) {
      const client = original.apply(this, args);
      try {
        const overrides = args[0];
        if (
          typeof overrides === 'object' &&
          overrides !== null &&
          Object.hasOwn(overrides, 'isolationPoolOptions') &&
          (overrides as { isolationPoolOptions?: unknown }).isolationPoolOptions === undefined &&
          typeof client === 'object' &&
          client !== null
        ) {
          registry.ignore(client);
        }
      } catch (err) {
        guard(err);
      }
      return client;
    };
  }

  private patchRedis4Connect(original: AnyFunction) {
    const registry = this.registry;
    return function connect(this: NodeRedis4Like, ...args: unknown[]) {
      try {
        if (!registry.isOwn(this)) registry.addNodeRedis4(this);
      } catch (err) {
        guard(err);
      }
      return original.apply(this, args);
    };
  }

  /**
   * node-redis 4: every command of every client (commands, `sendCommand`, MULTI's, the isolated
   * clients' of the isolation pool) enters its client's queue here, name first, and settles the
   * promise returned. Timed from there, which includes a wait for the connection, as for ioredis.
   */
  private patchRedis4AddCommand(original: AnyFunction) {
    const record = this.record;
    return function addCommand(this: unknown, ...args: unknown[]) {
      const start = performance.now();
      const result = original.apply(this, args);
      try {
        const redisArgs = args[0] as readonly unknown[] | undefined;
        const first = redisArgs?.[0];
        const name = redisOperation(
          typeof first === 'string' ? first : Buffer.isBuffer(first) ? first.toString() : first,
        );
        const finish = () => {
          try {
            record('redis', name, (performance.now() - start) / 1000);
          } catch (err) {
            guard(err);
          }
        };
        const promise = result as Promise<unknown> | undefined;
        if (typeof promise?.then === 'function') {
          // The caller gets a promise that settles as the command's does, not the command's
          // own with a handler attached: a failed command nobody awaits must still surface as
          // an unhandled rejection, as it would without the distro.
          return promise.then(
            (value) => {
              finish();
              return value;
            },
            (error: unknown) => {
              finish();
              throw error;
            },
          );
        }
      } catch (err) {
        guard(err);
      }
      return result;
    };
  }

  private patchRedisSendCommand(original: AnyFunction) {
    const { registry, record } = this;
    return function sendCommand(this: RedisClientLike, ...args: unknown[]) {
      const start = performance.now();
      const result = original.apply(this, args);
      try {
        registry.addRedis(this);
        const command = args[0] as RedisCommand | undefined;
        // Commands sent before the connection is ready are queued and sent again: time each
        // command once, from its first send, which is what the application waits for.
        if (!command || command[kTimed]) return result;
        command[kTimed] = true;
        const name = redisOperation(command?.name);
        const finish = () => {
          try {
            record('redis', name, (performance.now() - start) / 1000);
          } catch (err) {
            guard(err);
          }
        };
        command.promise?.then(finish, finish);
      } catch (err) {
        guard(err);
      }
      return result;
    };
  }
}
