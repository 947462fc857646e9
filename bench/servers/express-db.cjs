// Express `/users/:id` doing one PostgreSQL query and one Redis GET per request.
// PostgreSQL: PGHOST/PGPORT/PGUSER/PGDATABASE (127.0.0.1:5432, postgres, test); Redis: REDIS_URL
// (redis://127.0.0.1:6379). BENCH_PROM_BUNDLE=1 adds express-prom-bundle.
const express = require('express');
const Redis = require('ioredis');
const pg = require('pg');

const pool = new pg.Pool({ max: 10 });
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { lazyConnect: true });
const app = express();
if (process.env.BENCH_PROM_BUNDLE === '1') app.use(require('./prom-bundle.cjs')());
app.use(express.json());
app.get('/users/:id', async (req, res, next) => {
  try {
    const { rows } = await pool.query('SELECT $1::int AS id, $2::text AS name', [
      req.params.id,
      'Ada Lovelace',
    ]);
    const plan = await redis.get(`bench:plan:${req.params.id}`);
    res.json({ ...rows[0], plan });
  } catch (err) {
    next(err);
  }
});

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', async () => {
  try {
    await redis.connect();
    await redis.set('bench:plan:42', 'pro');
    await pool.query('SELECT 1');
  } catch (err) {
    console.error(`express-db: PostgreSQL or Redis unreachable: ${err.message}`);
    process.exit(1);
  }
  console.log(JSON.stringify({ event: 'listening', port: server.address().port }));
});
