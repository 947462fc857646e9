/**
 * Fixture applications that need a library at a major version the repository's own
 * devDependencies do not hold (Fastify 4 beside 5, Koa 2 beside 3, `redis` 3 beside 4, …). Each
 * lives in `test/fixtures/apps/<name>/` with its own package.json and lockfile, and is installed
 * there on first use: the library then loads from a `node_modules/<its real name>` directory,
 * which is what the distro's module hooks match (an npm alias such as `fastify4` would not be).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type AppProcess, FIXTURES, request, startApp } from './app';
import { NPM_FLAGS, npm, skipIfOffline } from './install';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from './otlp-receiver';
import type { Sample } from './prometheus-text';

export const FIXTURE_APPS = join(FIXTURES, 'apps');

const installed = new Map<string, Promise<void>>();

/**
 * Installs `test/fixtures/apps/<name>` from its lockfile (`npm ci`) unless its node_modules is
 * newer than the lockfile. Call from a `before` hook with a timeout of a few minutes. Returns the
 * fixture directory.
 */
export async function installFixtureApp(ctx: Mocha.Context, name: string): Promise<string> {
  const dir = join(FIXTURE_APPS, name);
  assert.ok(existsSync(join(dir, 'package.json')), `no fixture app ${dir}`);
  let pending = installed.get(name);
  if (pending === undefined) {
    pending = (async () => {
      const lock = join(dir, 'package-lock.json');
      const marker = join(dir, 'node_modules', '.package-lock.json');
      if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return;
      const result = await npm(dir, ['ci', ...NPM_FLAGS]);
      skipIfOffline(ctx, result);
      assert.equal(result.code, 0, `npm ci failed in ${dir}:\n${result.stderr}`);
    })();
    installed.set(name, pending);
  }
  await pending;
  return dir;
}

/** The version of `pkg` installed in a fixture app (for test titles and the docs table). */
export function installedVersion(name: string, pkg: string): string {
  const file = join(FIXTURE_APPS, name, 'node_modules', pkg, 'package.json');
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

/** `http_requests_total` summed by endpoint (all methods and statuses). */
export function countsByEndpoint(samples: readonly Sample[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== 'http_requests_total') continue;
    const endpoint = s.labels.endpoint as string;
    out.set(endpoint, (out.get(endpoint) ?? 0) + s.value);
  }
  return out;
}

async function inBatches(paths: readonly string[], app: AppProcess, expect: number): Promise<void> {
  for (let i = 0; i < paths.length; i += 50) {
    const statuses = await Promise.all(paths.slice(i, i + 50).map((p) => request(app.url(p))));
    for (const [j, status] of statuses.entries()) {
      assert.equal(status, expect, `${paths[i + j]} answered ${status}, expected ${expect}`);
    }
  }
}

export interface RouteAcceptance {
  /** The template `/api/v1/users/<name>` must be counted under (with the app's prefixes). */
  readonly usersTemplate: string;
  /** Path prefix the app serves the users route under (default `/api/v1`). */
  readonly prefix?: string;
  /** A real route first requested after the 404s, and the template it must be counted under. */
  readonly laterPath: string;
  readonly laterTemplate: string;
}

/**
 * The route-template acceptance of every framework fixture: 500 requests to
 * `<prefix>/users/<name>` with 500 different names give exactly one series under the users
 * template with count 500; 1,000 random 404 paths give one `__unmatched__` series with count
 * 1,000; a real route first requested after them still gets its own series. The app must answer
 * 200 on both routes and 404 on anything else.
 */
export async function checkRouteTemplates(app: AppProcess, spec: RouteAcceptance): Promise<void> {
  const prefix = spec.prefix ?? '/api/v1';
  const names = Array.from({ length: 500 }, (_, i) => `${prefix}/users/user-${randomWord(i)}`);
  await inBatches(names, app, 200);
  const junk = Array.from({ length: 1000 }, (_, i) => `/${randomWord(i)}/${randomWord(i + 7)}.php`);
  await inBatches(junk, app, 404);
  assert.equal(await request(app.url(spec.laterPath)), 200, spec.laterPath);

  // The response's close event counts it; a scrape right after the last answer may beat it.
  let counts = new Map<string, number>();
  for (let i = 0; i < 50; i++) {
    counts = countsByEndpoint(await app.scrape());
    if ((counts.get(spec.laterTemplate) ?? 0) >= 1) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const seen = Object.fromEntries(counts);
  assert.equal(counts.get(spec.usersTemplate), 500, `users route: ${JSON.stringify(seen)}`);
  assert.equal(counts.get('__unmatched__'), 1000, `404s: ${JSON.stringify(seen)}`);
  assert.equal(counts.get(spec.laterTemplate), 1, `later route: ${JSON.stringify(seen)}`);
  assert.equal(counts.get('__overflow__'), undefined, `overflow: ${JSON.stringify(seen)}`);
  // Nothing else: no series per name, per 404 path.
  assert.equal(counts.size, 3, `unexpected endpoints: ${JSON.stringify(seen)}`);
}

function randomWord(seed: number): string {
  return `${Math.random().toString(36).slice(2, 8)}${seed.toString(36)}x`;
}

export interface RouteSuite extends RouteAcceptance {
  /** Suite title, e.g. `Fastify 5`. */
  readonly title: string;
  /** The directory under test/fixtures/apps. */
  readonly app: string;
  /** Entry files in that directory: one CommonJS, one ESM (default app.cjs and app.mjs). */
  readonly files?: readonly string[];
  /** Extra environment of every run. */
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * The acceptance of one framework fixture as a mocha suite: each entry file (CJS, ESM) in traced
 * and metrics-only mode. Traced, the server spans (received over OTLP) also carry the template
 * as `http.route` and in their name, and the 404s carry no `http.route`.
 */
export function describeRouteTemplates(suite: RouteSuite): void {
  describe(`route templates: ${suite.title}`, function () {
    this.timeout(120_000);
    let receiver: OtlpReceiver;
    let app: AppProcess | undefined;

    before(async function () {
      this.timeout(300_000);
      await installFixtureApp(this, suite.app);
      receiver = await startOtlpReceiver();
    });
    after(async () => {
      await receiver?.close();
    });
    afterEach(async () => {
      await app?.stop();
      app = undefined;
      receiver.clear();
    });

    for (const file of suite.files ?? ['app.cjs', 'app.mjs']) {
      for (const traced of [true, false]) {
        const mode = traced ? 'traced' : 'metrics only';
        it(`${file}, ${mode}: one series per route, one __unmatched__ for 1,000 random 404s`, async () => {
          app = await startApp({
            fixture: join(FIXTURE_APPS, suite.app, file),
            preload: file.endsWith('.mjs') ? 'import' : 'require',
            env: {
              OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
              OTEL_BSP_SCHEDULE_DELAY: '100',
              ...(traced ? {} : { OTEL_TRACES_EXPORTER: 'none', DATALAB_TRACES_FILE: 'false' }),
              ...suite.env,
            },
          });
          await checkRouteTemplates(app, suite);
          assert.deepEqual(app.warnings(), []);
          if (!traced) return;
          const laterPath = suite.laterPath;
          const isLater = (s: ReceivedSpan) =>
            s.kind === 2 && s.attributes['url.path'] === laterPath;
          await receiver.waitFor(() => receiver.spans.some(isLater), 10_000, 'the later span');
          const later = receiver.spans.find(isLater) as ReceivedSpan;
          assert.equal(later.attributes['http.route'], suite.laterTemplate);
          assert.equal(later.name, `GET ${suite.laterTemplate}`);
          const notFound = receiver.spans.find(
            (s) => s.kind === 2 && s.attributes['http.response.status_code'] === 404,
          );
          assert.ok(notFound, 'a 404 server span');
          assert.equal(notFound.attributes['http.route'], undefined, notFound.name);
        });
      }
    }
  });
}
