// node:http server answering any path with the status given in `?status=` (default 200): used
// to fill the distro's endpoint cap (paths x methods x statuses) before timing /metrics.
const http = require('node:http');

const server = http.createServer((req, res) => {
  const q = req.url.indexOf('?');
  const status = q === -1 ? 200 : Number(new URLSearchParams(req.url.slice(q)).get('status'));
  req.resume();
  res.writeHead(status >= 200 && status < 600 ? status : 200, { 'content-type': 'text/plain' });
  res.end('ok');
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'listening', port: server.address().port }));
});
