/**
 * The prom-client process series (process_*, nodejs_version_info, nodejs_active_*_total) of a
 * real fixture under the preload, checked against what the kernel says about the same process
 * (/proc/<pid>/stat, /proc/<pid>/limits) and against prom-client 15's own default metrics run in
 * that same process.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { type AppProcess, request, startApp } from '../support/app';
import { type ReceivedMetric, startOtlpReceiver } from '../support/otlp-receiver';
import { IN_CI, requirePrometheusTool } from '../support/prometheus-server';
import { parsePrometheusText, type Sample, samplesNamed } from '../support/prometheus-text';
import { skipBecause } from '../support/skip';

const FIXTURE = 'process-app.cjs';
const SERVICE = 'fixture-service';

/** The families the distro exports under prom-client's names (SPEC §3). */
const PROM_CLIENT_FAMILIES = [
  'process_cpu_user_seconds_total',
  'process_cpu_system_seconds_total',
  'process_cpu_seconds_total',
  'process_start_time_seconds',
  'process_resident_memory_bytes',
  'process_virtual_memory_bytes',
  'process_heap_bytes',
  'process_open_fds',
  'process_max_fds',
  'nodejs_version_info',
  'nodejs_active_handles',
];
/** Families with a sample only while there is one: no libuv request may be in progress. */
const WHEN_ANY = ['nodejs_active_requests'];
/** What the comparison with prom-client covers on the distro's side. */
const COMPARED = /^(process_.+|nodejs_version_info|nodejs_active_.+)$/;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Clock ticks per second, the unit of /proc/<pid>/stat's times. */
function clockTicks(): number {
  try {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    if (Number.isInteger(ticks) && ticks > 0) return ticks;
  } catch {
    // getconf missing: Linux has used 100 (USER_HZ) on every architecture for decades.
  }
  return 100;
}

/** Fields of /proc/<pid>/stat from the third (state) on: the command name may hold spaces. */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat
    .slice(stat.lastIndexOf(')') + 2)
    .trim()
    .split(' ');
}

/** utime + stime of the process, in seconds (fields 14 and 15 of proc(5)). */
function procCpuSeconds(pid: number, ticks: number): number {
  const f = statFields(pid);
  return (Number(f[14 - 3]) + Number(f[15 - 3])) / ticks;
}

/**
 * The process's start as wall-clock seconds since the epoch: field 22 (starttime, clock ticks
 * since boot) placed against /proc/uptime (seconds since boot, 10 ms resolution) rather than
 * /proc/stat's btime, which the kernel truncates to the second.
 */
function procStartSeconds(pid: number, ticks: number): number {
  const startedAfterBoot = Number(statFields(pid)[22 - 3]) / ticks;
  const now = Date.now() / 1000;
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return now - uptime + startedAfterBoot;
}

/** The soft `Max open files` of /proc/<pid>/limits. */
function procMaxFds(pid: number): number {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  return Number(line?.slice('Max open files'.length).trim().split(/\s+/)[0]);
}

function only(samples: readonly Sample[], name: string): Sample {
  const found = samplesNamed(samples, name);
  assert.equal(found.length, 1, `one ${name} series: ${JSON.stringify(found)}`);
  return found[0] as Sample;
}

/** `# TYPE` and `# HELP` of every family in a text exposition. */
function families(text: string): Map<string, { type: string; help: string }> {
  const out = new Map<string, { type: string; help: string }>();
  for (const m of text.matchAll(/^# (TYPE|HELP) (\S+) (.*)$/gm)) {
    const name = m[2] as string;
    const entry = out.get(name) ?? { type: '', help: '' };
    if (m[1] === 'TYPE') entry.type = m[3] as string;
    else entry.help = m[3] as string;
    out.set(name, entry);
  }
  return out;
}

describe('process metrics under prom-client names: /metrics against /proc and prom-client', function () {
  this.timeout(60_000);
  const ticks = clockTicks();
  let app: AppProcess | undefined;

  before(function () {
    if (process.platform !== 'linux') {
      const reason = 'these tests read /proc/<pid> (Linux only)';
      if (IN_CI) throw new Error(`${reason}: CI runs on Linux`);
      skipBecause(this, reason);
    }
  });

  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  it('under a CPU-bound route, the rate of process_cpu_seconds_total is the /proc/<pid>/stat rate within 5%', async () => {
    app = await startApp({ fixture: FIXTURE, env: { OTEL_TRACES_EXPORTER: 'none' } });
    const pid = app.pid;
    // The kernel's reading taken on both sides of each scrape: the collection happens between.
    const reading = async () => {
      const before = procCpuSeconds(pid, ticks);
      const t0 = Date.now();
      const samples = await (app as AppProcess).scrape();
      const t1 = Date.now();
      const after = procCpuSeconds(pid, ticks);
      return {
        samples,
        kernel: (before + after) / 2,
        at: (t0 + t1) / 2000,
        spread: after - before,
      };
    };
    const first = await reading();
    // At least 2 s of CPU: one clock tick (10 ms) is then 0.5% of the difference.
    const deadline = Date.now() + 25_000;
    while (procCpuSeconds(pid, ticks) - first.kernel < 2 && Date.now() < deadline) {
      assert.equal(await request(app.url('/burn/250')), 200);
    }
    const second = await reading();
    const kernelCpu = second.kernel - first.kernel;
    assert.ok(kernelCpu >= 2, `the route burnt ${kernelCpu.toFixed(2)} s of CPU`);

    const value = (r: { samples: Sample[] }, name: string) => only(r.samples, name).value;
    const seconds = second.at - first.at;
    const distroRate =
      (value(second, 'process_cpu_seconds_total') - value(first, 'process_cpu_seconds_total')) /
      seconds;
    const kernelRate = kernelCpu / seconds;
    console.log(
      `      CPU over ${seconds.toFixed(1)} s: process_cpu_seconds_total ${distroRate.toFixed(4)}/s, ` +
        `/proc/${pid}/stat ${kernelRate.toFixed(4)}/s (CLK_TCK ${ticks}; scrape spreads ` +
        `${first.spread.toFixed(2)} s, ${second.spread.toFixed(2)} s)`,
    );
    assert.ok(
      Math.abs(distroRate - kernelRate) / kernelRate < 0.05,
      `rate ${distroRate} vs /proc ${kernelRate}`,
    );
    // Absolute too: the counter counts from the process's start, as the kernel does.
    const total = value(second, 'process_cpu_seconds_total');
    assert.ok(
      Math.abs(total - second.kernel) / second.kernel < 0.05,
      `${total} vs ${second.kernel}`,
    );
    for (const r of [first, second]) {
      const user = value(r, 'process_cpu_user_seconds_total');
      const system = value(r, 'process_cpu_system_seconds_total');
      assert.ok(
        Math.abs(user + system - value(r, 'process_cpu_seconds_total')) < 1e-6,
        'user + system',
      );
      assert.deepEqual(only(r.samples, 'process_cpu_seconds_total').labels, { service: SERVICE });
    }
  });

  it('process_start_time_seconds is the start per /proc/<pid>/stat within 1 s, steady, and changes across a restart', async () => {
    const starts: number[] = [];
    for (let run = 0; run < 2; run++) {
      app = await startApp({ fixture: FIXTURE, env: { OTEL_TRACES_EXPORTER: 'none' } });
      const kernel = procStartSeconds(app.pid, ticks);
      const reported = only(await app.scrape(), 'process_start_time_seconds');
      assert.deepEqual(reported.labels, { service: SERVICE });
      console.log(
        `      pid ${app.pid}: process_start_time_seconds ${reported.value.toFixed(3)}, ` +
          `/proc ${kernel.toFixed(3)} (${(reported.value - kernel).toFixed(3)} s)`,
      );
      assert.ok(Math.abs(reported.value - kernel) < 1, `${reported.value} vs /proc ${kernel}`);
      // A value that moved between scrapes would read as a restart in changes().
      await sleep(300);
      assert.equal(only(await app.scrape(), 'process_start_time_seconds').value, reported.value);
      starts.push(reported.value);
      await app.stop();
      app = undefined;
    }
    const [before, after] = starts as [number, number];
    assert.ok(after > before, `the restarted process reports a later start: ${before} → ${after}`);
  });

  it('names, types and help texts are those of prom-client 15 in the same process', async () => {
    app = await startApp({
      fixture: FIXTURE,
      env: { OTEL_TRACES_EXPORTER: 'none', PROM_CLIENT: '1' },
    });
    const res = await fetch(app.url('/prom-client'));
    assert.equal(res.status, 200);
    const promText = await res.text();
    const distroText = await app.scrapeText();
    const prom = families(promText);
    const distro = families(distroText);

    const compared = [...distro.keys()].filter((name) => COMPARED.test(name));
    assert.deepEqual(
      compared.filter((name) => !WHEN_ANY.includes(name)).sort(),
      [...PROM_CLIENT_FAMILIES].sort(),
    );
    const differences: string[] = [];
    for (const name of compared) {
      const theirs = prom.get(name);
      const ours = distro.get(name);
      if (!theirs) differences.push(`${name}: not in prom-client's output`);
      else if (theirs.type !== ours?.type) {
        differences.push(`${name}: # TYPE ${ours?.type}, prom-client ${theirs.type}`);
      } else if (theirs.help !== ours.help) {
        differences.push(`${name}: # HELP "${ours.help}", prom-client "${theirs.help}"`);
      }
    }
    assert.deepEqual(differences, []);

    // Values that do not move: the same as prom-client's, labels included.
    const ourSamples = parsePrometheusText(distroText);
    const theirSamples = parsePrometheusText(promText);
    const version = only(ourSamples, 'nodejs_version_info');
    const { service, ...versionLabels } = version.labels;
    assert.equal(service, SERVICE);
    assert.equal(version.value, 1);
    assert.deepEqual(versionLabels, only(theirSamples, 'nodejs_version_info').labels);
    assert.equal(
      only(ourSamples, 'process_max_fds').value,
      only(theirSamples, 'process_max_fds').value,
    );
    assert.equal(only(ourSamples, 'process_max_fds').value, procMaxFds(app.pid));
    // prom-client rounds the start to the second.
    assert.ok(
      Math.abs(
        only(ourSamples, 'process_start_time_seconds').value -
          only(theirSamples, 'process_start_time_seconds').value,
      ) <=
        0.5 + 0.05,
    );
    // Descriptors come and go (the scrape's own connection): the same order of magnitude.
    const openFds = only(ourSamples, 'process_open_fds').value;
    const kernelFds = readdirSync(`/proc/${app.pid}/fd`).length;
    assert.ok(Math.abs(openFds - kernelFds) <= 3, `process_open_fds ${openFds} vs ${kernelFds}`);
    for (const name of PROM_CLIENT_FAMILIES) {
      const series = ourSamples.filter((s) => s.name === name);
      assert.ok(series.length > 0, name);
      for (const s of series) assert.equal(s.labels.service, SERVICE, `${name} carries service`);
    }
    // One series per handle type, as prom-client groups them: the fixture listens on a server.
    const handles = ourSamples.filter((s) => s.name === 'nodejs_active_handles');
    assert.equal(handles.find((s) => s.labels.type === 'Server')?.value, 1);
    assert.equal(new Set(handles.map((s) => s.labels.type)).size, handles.length);
  });

  it('are pushed over OTLP under the same names, as cumulative monotonic sums and gauges, with service', async () => {
    const receiver = await startOtlpReceiver();
    try {
      app = await startApp({
        fixture: FIXTURE,
        env: {
          OTEL_TRACES_EXPORTER: 'none',
          OTEL_METRICS_EXPORTER: 'prometheus,otlp',
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_METRIC_EXPORT_INTERVAL: '300',
        },
      });
      const pushed = () => new Map(receiver.metrics.map((m) => [m.name, m]));
      await receiver.waitFor(
        () => PROM_CLIENT_FAMILIES.every((name) => pushed().has(name)),
        10_000,
        'every process series over OTLP',
      );
      const scraped = families(await app.scrapeText());
      for (const name of PROM_CLIENT_FAMILIES) {
        const metric = pushed().get(name) as ReceivedMetric;
        const counter = scraped.get(name)?.type === 'counter';
        assert.equal(metric.type, counter ? 'sum' : 'gauge', `${name} type`);
        if (counter) {
          assert.equal(metric.monotonic, true, `${name} monotonic`);
          assert.equal(metric.temporality, 2, `${name} cumulative`);
        }
        assert.equal(metric.description, scraped.get(name)?.help, `${name} description`);
        // One series, or one per type (nodejs_active_handles).
        const perType = name === 'nodejs_active_handles';
        if (!perType) assert.equal(metric.dataPoints.length, 1, `${name}: one series`);
        assert.ok(metric.dataPoints.length > 0, name);
        for (const point of metric.dataPoints) {
          assert.equal(point.attributes.service, SERVICE, `${name} service`);
          if (perType) assert.equal(typeof point.attributes.type, 'string', `${name} type`);
        }
      }
    } finally {
      await app?.stop();
      app = undefined;
      await receiver.close();
    }
  });

  it('promtool check metrics finds nothing in the scrape', async function () {
    const promtool = requirePrometheusTool(this, 'promtool');
    app = await startApp({
      fixture: FIXTURE,
      env: { OTEL_TRACES_EXPORTER: 'none', PROM_CLIENT: '1' },
    });
    const check = (text: string) => {
      const result = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      assert.equal(result.error, undefined);
      const findings = `${result.stdout}${result.stderr}`.split('\n').filter((l) => l !== '');
      // 0: clean; 3: lint findings, one per line. Anything else is a parse failure.
      assert.ok(result.status === 0 || result.status === 3, `promtool: ${findings.join('\n')}`);
      return findings;
    };
    assert.deepEqual(check(await app.scrapeText()), []);
    // prom-client's own output draws findings for its `_total` gauges, which the distro leaves out.
    assert.ok(
      check(await (await fetch(app.url('/prom-client'))).text()).some((f) =>
        f.startsWith('nodejs_active_handles_total'),
      ),
    );
  });
});
