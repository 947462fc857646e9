// node:http "hello world": the floor of what a Node.js HTTP server costs per request. It knows
// nothing of any instrumentation; the benchmark adds it with a preload flag.
const http = require('node:http');

const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('hello world');
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'listening', port: server.address().port }));
});
