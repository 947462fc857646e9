// Scrape cost at the endpoint cap: a plain node:http server under the preload receives
// DATALAB_MAX_ENDPOINTS (200) distinct paths x methods x statuses, then /metrics is timed.
import http from 'node:http';
import { request } from './http.mjs';
import { startServer, stopServer } from './load.mjs';
import { percentile, processCpuMicros, summary } from './proc.mjs';

const ENDPOINTS = 200;
const METHODS = ['GET', 'POST', 'PUT', 'DELETE'];
const STATUSES = [200, 404, 500];

export async function runScrape({ sink, pin, scrapes }) {
  const app = await startServer({ server: 'status.cjs', config: 'datalab', sink, pin });
  try {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const work = [];
    for (let i = 0; i < ENDPOINTS; i++) {
      // Not ID-like (digits, UUIDs, long hex): each path is its own endpoint.
      for (const method of METHODS) {
        for (const status of STATUSES)
          work.push({ path: `/api/resource-${i}/items`, method, status });
      }
    }
    let next = 0;
    const worker = async () => {
      while (next < work.length) {
        const { path, method, status } = work[next++];
        const res = await request(app.url(`${path}?status=${status}`), { method, agent });
        if (res.status !== status) throw new Error(`${method} ${path} answered ${res.status}`);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    agent.destroy();

    // Two untimed scrapes (first collection, JIT), then the timed ones, one after the other.
    await request(app.metricsUrl);
    await request(app.metricsUrl);
    const times = [];
    let last;
    const cpu0 = processCpuMicros(app.proc.pid);
    for (let i = 0; i < scrapes; i++) {
      last = await request(app.metricsUrl);
      times.push(last.ms);
    }
    const cpuPerScrapeMs = (processCpuMicros(app.proc.pid) - cpu0) / scrapes / 1000;
    const text = last.body.toString('utf8');
    const lines = text.split('\n');
    const series = lines.filter((l) => l && !l.startsWith('#')).length;
    const requestSeries = lines.filter((l) => l.startsWith('http_requests_total{')).length;
    const overflow = lines.some((l) => l.includes('endpoint="__overflow__"'));
    const sorted = [...times].sort((a, b) => a - b);
    return {
      requestsSent: work.length,
      endpoints: ENDPOINTS,
      methods: METHODS,
      statuses: STATUSES,
      scrapes,
      ms: summary(times),
      p90Ms: percentile(sorted, 90),
      serverCpuMsPerScrape: cpuPerScrapeMs,
      bytes: last.bytes,
      series,
      requestSeries,
      overflow,
    };
  } finally {
    await stopServer(app.proc, sink);
  }
}
