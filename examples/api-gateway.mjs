// The seed's api-gateway: an ordinary Express service that forwards to data-service with fetch.
// It does not import @datalab/otel; the demo starts it with --import @datalab/otel/register.
import express from 'express';
import winston from 'winston';

const log = winston.createLogger({
  format: winston.format.json(),
  defaultMeta: { service: 'api-gateway' },
  transports: [new winston.transports.Console()],
});
const dataService = process.env.DATA_SERVICE_URL ?? 'http://127.0.0.1:8001';
const app = express();

app.get('/api/orders/:id', async (req, res) => {
  log.info('forwarding order lookup', { order: req.params.id });
  try {
    const r = await fetch(`${dataService}/orders/${encodeURIComponent(req.params.id)}`);
    res.status(r.status).json(await r.json());
  } catch (err) {
    log.error('data-service unreachable', { error: err.message });
    res.status(502).json({ error: 'data-service unreachable' });
  }
});

const server = app.listen(Number(process.env.PORT ?? 8000), '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'listening', port: server.address().port }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
