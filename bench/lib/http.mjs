// A small HTTP client for the orchestrator: status, body, size and wall time of one request.
import http from 'node:http';

export const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 32 });

export function request(url, { method = 'GET', agent = keepAlive, timeoutMs = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = http.request(url, { method, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode,
          body,
          bytes: body.length,
          ms: Number(process.hrtime.bigint() - started) / 1e6,
        });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Retries a GET until it answers 200 (an endpoint that is still starting refuses connections). */
export async function waitForOk(url, ms) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const res = await request(url, { agent: false, timeoutMs: 2000 });
      if (res.status === 200) return res;
      last = `status ${res.status}`;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline)
      throw new Error(`${url} did not answer 200 within ${ms} ms (${last})`);
    await sleep(25);
  }
}
