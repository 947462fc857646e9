// Express `/users/:id` with a JSON body parser, as most Express services are set up.
// BENCH_PROM_BUNDLE=1 adds express-prom-bundle (method, route, status, default metrics) instead
// of a preload.
const express = require('express');

const app = express();
if (process.env.BENCH_PROM_BUNDLE === '1') app.use(require('./prom-bundle.cjs')());
app.use(express.json());
app.get('/users/:id', (req, res) => res.json({ id: req.params.id, name: 'Ada Lovelace' }));

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'listening', port: server.address().port }));
});
