/**
 * Finds the application's own database clients (pg pools, mysql2 pools, ioredis connections)
 * and times their operations, with no code change in the application.
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
  private readonly seen = new WeakSet<object>();

  addPool(pool: PgPoolLike): void {
    if (this.seen.has(pool)) return;
    this.seen.add(pool);
    this.pools.add(new WeakRef(pool));
  }

  addMysqlPool(pool: MysqlPoolLike): void {
    if (this.seen.has(pool)) return;
    this.seen.add(pool);
    this.mysql.add(new WeakRef(pool));
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

  /** Connections checked out of every pool right now (SPEC §3 database_connections_active). */
  checkedOutConnections(): number {
    let sum = 0;
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

function unstack(target: Target, name: string): void {
  const current = target[name] as Stacked | undefined;
  // Only when ours is still on top: unwrapping from under another wrapper would remove it too.
  if (current?.[kOriginal]) {
    target[name] = current[kOriginal];
    target[kStacked]?.delete(name);
  }
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
        (mod: { Query: { prototype: Proto } }) => {
          this.patchPgQueryClass(cjs(mod).Query);
          bindQueryCallbacks(cjs(mod).Query.prototype);
          return mod;
        },
        (mod: { Query: { prototype: Proto } }) => {
          const proto = cjs(mod).Query.prototype;
          for (const name of ['submit', 'handleReadyForQuery', 'handleError']) unstack(proto, name);
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
    const record = this.record;
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
            if (
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
    return function getConnection(this: MysqlPoolLike, ...args: unknown[]) {
      try {
        registry.addMysqlPool(this);
        // As for pg-pool: a caller queued for a connection is called back when another request
        // releases one, in that request's context otherwise.
        if (typeof args[0] === 'function') args[0] = context.bind(context.active(), args[0]);
      } catch (err) {
        guard(err);
      }
      return original.apply(this, args);
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
