// An ordinary Express + PostgreSQL service. It does not import @datalab/otel: the demo starts it
// with `node --import @datalab/otel/register examples/orders-service.mjs`.
import express from 'express';
import pg from 'pg';

const pool = new pg.Pool({ max: 5 });
const app = express();

app.get('/orders/:id', async (req, res, next) => {
  try {
    const { rows } = await pool.query('SELECT $1::int AS id, now() AS fetched_at', [req.params.id]);
    res.json(rows[0]);
  } catch (err) {
    next(err);
  }
});
app.get('/boom', () => {
  throw new Error('something broke');
});

app.use((err, req, res, _next) => {
  console.error(`${req.method} ${req.path} failed: ${err.message}`);
  res.status(500).json({ error: 'internal error' });
});

const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'listening', port: server.address().port }));
});
process.on('SIGTERM', () => {
  server.close();
  pool.end().finally(() => process.exit(0));
});
