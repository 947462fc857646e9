import assert from 'node:assert/strict';
import {
  ClientRegistry,
  type MysqlConnectionLike,
  type MysqlPoolLike,
  type PgClientLike,
  type PgPoolLike,
  redisOperation,
} from '../../src/db/clients';
import { redisStatement } from '../../src/db/redis';
import { sanitizeMysqlError, sanitizeSql, sqlOperation } from '../../src/db/sql';

describe('sanitizeSql', () => {
  const cases: [string, string][] = [
    [
      "SELECT * FROM users WHERE email = 'a@b.c' AND id = 42",
      'SELECT * FROM users WHERE email = ? AND id = ?',
    ],
    ['SELECT $1::int, $2', 'SELECT $1::int, $2'],
    ["INSERT INTO t (a, b) VALUES ('it''s', -3.5e10)", 'INSERT INTO t (a, b) VALUES (?, -?)'],
    ["SELECT E'esc\\'aped secret', 'plain'", 'SELECT ?, ?'],
    ["SELECT B'0101', X'1F', N'nat'", 'SELECT ?, ?, ?'],
    ['SELECT $$dollar secret$$, $tag$ x $$ y $tag$', 'SELECT ?, ?'],
    [
      'SELECT col2, t1.c3 FROM table9 t1 LIMIT 10 OFFSET 0x1F',
      'SELECT col2, t1.c3 FROM table9 t1 LIMIT ? OFFSET ?',
    ],
    ['SELECT "Column 42" FROM "t"', 'SELECT "Column 42" FROM "t"'],
    ["SELECT 1 -- secret 'x'\nFROM t", 'SELECT ? \nFROM t'],
    [
      "SELECT /* secret 'x' 7 */ a FROM t WHERE b IN (1, 2, .5)",
      'SELECT   a FROM t WHERE b IN (?, ?, ?)',
    ],
    ["SELECT 'unterminated secret", 'SELECT ?'],
    ['SELECT now()', 'SELECT now()'],
  ];
  for (const [input, expected] of cases) {
    it(JSON.stringify(input), () => assert.equal(sanitizeSql(input), expected));
  }

  it('leaves no quoted value or number behind on generated input', () => {
    for (let i = 0; i < 200; i++) {
      const value = `v${Math.random().toString(36).slice(2)}`;
      const n = Math.floor(Math.random() * 1e9);
      const out = sanitizeSql(`UPDATE t SET a = '${value}', b = ${n} WHERE c = E'${value}\\''`);
      assert.ok(!out.includes(value) && !out.includes(String(n)), out);
    }
  });
});

describe('sanitizeSql, MySQL dialect', () => {
  const cases: [string, string][] = [
    // mysql2 formats parameters into the text with backslash escapes.
    [
      "SELECT * FROM t WHERE a = 'it\\'s secret' AND b = 'x\\\\' AND c = 'after'",
      'SELECT * FROM t WHERE a = ? AND b = ? AND c = ?',
    ],
    [
      'SELECT * FROM t WHERE a = "double secret" AND b = "say ""hi"""',
      'SELECT * FROM t WHERE a = ? AND b = ?',
    ],
    ['SELECT `Column 42`, `t`.`c` FROM `db`.`t`', 'SELECT `Column 42`, `t`.`c` FROM `db`.`t`'],
    ["SELECT a # secret 'x' 42\nFROM t WHERE id = ?", 'SELECT a \nFROM t WHERE id = ?'],
    ["SELECT X'1F', x'ab', 0xCAFE, _utf8mb4'secret'", 'SELECT ?, ?, ?, _utf8mb4?'],
    ["SELECT 'unterminated \\' secret", 'SELECT ?'],
  ];
  for (const [input, expected] of cases) {
    it(JSON.stringify(input), () => assert.equal(sanitizeSql(input, 'mysql'), expected));
  }

  it('leaves no value behind whatever mysql2 escaped into the text', () => {
    for (let i = 0; i < 200; i++) {
      const value = `v${Math.random().toString(36).slice(2)}`;
      const n = Math.floor(Math.random() * 1e9);
      // What mysql2 writes for `'x' OR "y" \ value`: quotes and backslashes escaped with \.
      const escaped = `\\'x\\' OR \\"y\\" \\\\ ${value}`;
      const sql = `UPDATE t SET a = '${escaped}', b = ${n} WHERE c = "${escaped}"`;
      const out = sanitizeSql(sql, 'mysql');
      assert.ok(!out.includes(value) && !out.includes(String(n)), out);
    }
  });

  it('PostgreSQL keeps its own rules ("x" is a name, no backslash escapes)', () => {
    assert.equal(sanitizeSql('SELECT "name" FROM t'), 'SELECT "name" FROM t');
    assert.equal(sanitizeSql('SELECT "name" FROM t', 'mysql'), 'SELECT ? FROM t');
  });
});

describe('sanitizeMysqlError', () => {
  it('cuts every quoted part, unbalanced quotes included', () => {
    assert.equal(
      sanitizeMysqlError("Duplicate entry 'secret' for key 'PRIMARY'"),
      'Duplicate entry ?',
    );
    assert.equal(
      sanitizeMysqlError(
        "You have an error in your SQL syntax; near 'FORM t WHERE k = 'secret'' at line 1",
      ),
      'You have an error in your SQL syntax; near ? at line 1',
    );
    assert.equal(
      sanitizeMysqlError("Incorrect integer value: 'it's secret' for column `t`.`n` at row 1"),
      'Incorrect integer value: ? for column `t`.`n` at row 1',
    );
    assert.equal(sanitizeMysqlError('Unknown column "secret'), 'Unknown column ?');
    assert.equal(sanitizeMysqlError('Lock wait timeout exceeded'), 'Lock wait timeout exceeded');
  });
});

describe('sqlOperation', () => {
  it('takes the first keyword, upper-case', () => {
    assert.equal(sqlOperation('select 1'), 'SELECT');
    assert.equal(sqlOperation('  /* c */ -- x\n (SELECT 1)'), 'SELECT');
    assert.equal(sqlOperation('WITH x AS (SELECT 1) DELETE FROM t'), 'WITH');
    assert.equal(sqlOperation('insert into t values (1)'), 'INSERT');
    assert.equal(sqlOperation('# note\nREPLACE INTO t VALUES (1)'), 'REPLACE');
  });
  it('keeps the label set closed', () => {
    assert.equal(sqlOperation('EXPLODE everything'), 'OTHER');
    assert.equal(sqlOperation(''), 'OTHER');
    assert.equal(sqlOperation(undefined), 'OTHER');
    assert.equal(sqlOperation(`SELECTED${'x'.repeat(100)}`), 'OTHER');
  });
});

describe('redis', () => {
  it('records the command and key, never values', () => {
    assert.equal(redisStatement('SET', ['order:1', 'secret-value', 'EX', 60]), 'set order:1');
    assert.equal(redisStatement('get', ['k']), 'get k');
    assert.equal(redisStatement('auth', ['user', 'password']), 'auth');
    assert.equal(redisStatement('EVAL', ['return secret', 0]), 'eval');
    assert.equal(redisStatement('hello', [3, 'AUTH', 'u', 'p']), 'hello');
    assert.equal(redisStatement('set', [Buffer.from('binary key'), 'v']), 'set ?');
    assert.equal(redisStatement('multi', []), 'multi');
  });
  it('bounds the operation label', () => {
    assert.equal(redisOperation('GET'), 'get');
    assert.equal(redisOperation('client|setname'), 'client|setname');
    assert.equal(redisOperation('x'.repeat(40)), 'other');
    assert.equal(redisOperation('weird command!'), 'other');
    assert.equal(redisOperation(undefined), 'other');
  });
});

describe('ClientRegistry', () => {
  it('sums checked-out connections over every pool, once per pool', () => {
    const registry = new ClientRegistry();
    const pool = (total: number, idle: number): PgPoolLike => ({
      totalCount: total,
      idleCount: idle,
      query: async () => undefined,
    });
    const a = pool(5, 2);
    registry.addPool(a);
    registry.addPool(a);
    registry.addPool(pool(3, 3));
    assert.equal(registry.pgPools().length, 2);
    assert.equal(registry.checkedOutConnections(), 3);
  });

  it('adds the connections checked out of mysql2 pools that are not closed', () => {
    const registry = new ClientRegistry();
    const pool = (all: number, free: number, closed = false): MysqlPoolLike => ({
      _allConnections: { length: all },
      _freeConnections: { length: free },
      _closed: closed,
      query: () => undefined,
    });
    registry.addPool({ totalCount: 2, idleCount: 1, query: async () => undefined });
    const a = pool(5, 1);
    registry.addMysqlPool(a);
    registry.addMysqlPool(a);
    registry.addMysqlPool(pool(4, 4));
    registry.addMysqlPool(pool(3, 0, true));
    // A mysql2 release that keeps its queues elsewhere counts nothing rather than garbage.
    registry.addMysqlPool({ query: () => undefined });
    assert.equal(registry.mysqlPools().length, 3);
    assert.equal(registry.checkedOutConnections(), 1 + 4);
  });

  /** A pg 8.12+ `Client` in a given state, as Sequelize and Knex pool them. */
  function pgClient(state: Partial<Record<keyof PgClientLike, unknown>> = {}): PgClientLike {
    return {
      connectionParameters: { host: '127.0.0.1', port: 5432, user: 'app', database: 'orders' },
      _activeQuery: null,
      _queryQueue: [],
      _txStatus: 'I',
      _ending: false,
      ...state,
    } as PgClientLike;
  }
  class Client {}

  it('counts standalone pg clients running, queueing or in a transaction, not idle or ending ones', () => {
    const registry = new ClientRegistry();
    const clients = [
      pgClient({ _activeQuery: {} }),
      pgClient({ _queryQueue: [{}] }),
      pgClient({ _txStatus: 'T' }),
      pgClient({ _txStatus: 'E' }),
      pgClient(),
      pgClient({ _activeQuery: {}, _ending: true }),
    ];
    for (const client of clients) registry.addPgClient(client, Client);
    registry.addPgClient(clients[0] as PgClientLike, Client);
    assert.equal(registry.checkedOutConnections(), 4);
    (clients[0] as { _activeQuery: unknown })._activeQuery = null;
    assert.equal(registry.checkedOutConnections(), 3, 'read at collection time');
  });

  it('reads the pre-8.12 pg names without touching the deprecated getters of later releases', () => {
    const registry = new ClientRegistry();
    registry.addPgClient({ activeQuery: {}, queryQueue: [] }, Client);
    registry.addPgClient({ activeQuery: null, queryQueue: [{}] }, Client);
    registry.addPgClient({ activeQuery: null, queryQueue: [] }, Client);
    const modern = pgClient();
    Object.defineProperty(modern, 'activeQuery', {
      get: () => assert.fail('deprecated getter read'),
    });
    registry.addPgClient(modern, Client);
    assert.equal(registry.checkedOutConnections(), 2);
  });

  it("counts a pg Pool's clients through the pool only, and never the distro's own", () => {
    const registry = new ClientRegistry();
    const member = pgClient({ _activeQuery: {} });
    const pool = { totalCount: 1, idleCount: 0, query: async () => undefined, _clients: [member] };
    registry.addPool(pool);
    registry.addPgClient(member, Client);
    const own = pgClient({ _activeQuery: {} });
    registry.ignore(own);
    registry.addPgClient(own, Client);
    assert.equal(registry.checkedOutConnections(), 1);
    assert.deepEqual(registry.connectionTargets(), [], 'no target learnt from either');
  });

  it('remembers each database of standalone clients once, with the driver and settings to reach it', () => {
    const registry = new ClientRegistry();
    registry.addPgClient(pgClient(), Client);
    registry.addPgClient(pgClient(), Client);
    registry.addPgClient(
      pgClient({ connectionParameters: { host: 'db2', port: 5432, user: 'app', database: 'x' } }),
      Client,
    );
    const targets = registry.connectionTargets();
    assert.equal(targets.length, 2);
    assert.equal(targets[0]?.system, 'postgresql');
    assert.equal(targets[0]?.driver, Client);
    assert.equal(targets[0]?.config.database, 'orders');
    for (let i = 0; i < 40; i++) {
      registry.addPgClient(
        pgClient({ connectionParameters: { host: `h${i}`, port: 1, user: 'u', database: 'd' } }),
        Client,
      );
    }
    assert.equal(registry.connectionTargets().length, 16, 'bounded');
  });

  it('counts standalone mysql2 connections with a command, not closing or broken ones', () => {
    const registry = new ClientRegistry();
    const connection = (state: Partial<MysqlConnectionLike>): MysqlConnectionLike => ({
      config: { host: '127.0.0.1', port: 3306, user: 'root', database: 'app' },
      _commands: { length: 0 },
      ...state,
    });
    for (const c of [
      connection({ _command: {} }),
      connection({ _commands: { length: 2 } }),
      connection({}),
      connection({ _command: {}, _closing: true }),
      connection({ _command: {}, _fatalError: new Error('gone') }),
    ]) {
      registry.addMysqlConnection(c, Client);
    }
    assert.equal(registry.checkedOutConnections(), 2);
    assert.equal(registry.connectionTargets().length, 1);
  });

  it("checks an ended mysql2 pool's database over a connection of its own, an open pool's through the pool", () => {
    const registry = new ClientRegistry();
    const connectionConfig = { host: '127.0.0.1', port: 3306, user: 'root', database: 'app' };
    const pool: MysqlPoolLike & { _closed: boolean } = {
      config: { connectionConfig },
      _allConnections: { length: 0 },
      _freeConnections: { length: 0 },
      _closed: false,
      query: () => undefined,
    };
    registry.addMysqlPool(pool, Client);
    assert.deepEqual(registry.connectionTargets(), []);
    pool._closed = true;
    assert.deepEqual(
      registry.connectionTargets().map((t) => [t.system, t.config]),
      [['mysql', connectionConfig]],
    );
  });
});
