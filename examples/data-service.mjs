// The seed's data-service: Express with PostgreSQL (pg) and a Redis cache (ioredis). It does not
// import @datalab/otel; the demo starts it with --import @datalab/otel/register.
import express from 'express';
import Redis from 'ioredis';
import pg from 'pg';
import winston from 'winston';

const log = winston.createLogger({
  format: winston.format.json(),
  defaultMeta: { service: 'data-service' },
  transports: [new winston.transports.Console()],
});
const pool = new pg.Pool({ max: 5, connectionTimeoutMillis: 2000 });
pool.on('error', () => {});
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', {
  maxRetriesPerRequest: 1,
  retryStrategy: (n) => (n > 3 ? null : 200),
});
redis.on('error', () => {});
const app = express();

app.get('/orders/:id', async (req, res) => {
  const key = `order:${req.params.id}`;
  try {
    const cached = await redis.get(key).catch(() => null);
    if (cached) {
      log.info('order served from cache', { order: req.params.id });
      return res.json({ ...JSON.parse(cached), cached: true });
    }
    const { rows } = await pool.query(
      "SELECT $1::text AS id, 'shipped' AS status, now() AS checked_at",
      [req.params.id],
    );
    await redis.set(key, JSON.stringify(rows[0]), 'EX', 30).catch(() => {});
    log.info('order loaded from the database', { order: req.params.id });
    res.json(rows[0]);
  } catch (err) {
    log.error('order lookup failed', { order: req.params.id, error: err.message });
    res.status(500).json({ error: 'order lookup failed' });
  }
});

const server = app.listen(Number(process.env.PORT ?? 8001), '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'listening', port: server.address().port }));
});
process.on('SIGTERM', () => {
  server.close();
  redis.disconnect();
  pool.end().finally(() => process.exit(0));
});
