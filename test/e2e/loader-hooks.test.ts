/**
 * The loader hooks of the --import preload, on each Node.js line the distro supports: ESM
 * libraries get patched without a loader thread where Node.js allows it, no deprecation warning
 * anywhere, TypeScript runners keep working, and another agent's loader does not break ours.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type AppProcess, FIXTURES, ROOT, request, startApp } from '../support/app';
import { findEarlyNode22, requireNode, versionOf } from '../support/node-binaries';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';
import { samplesNamed } from '../support/prometheus-text';
import { skipBecause } from '../support/skip';

/** The Node.js lines the preload must work on: the one running the tests, 22 and 26. */
const LINES: readonly (number | 'running')[] = ['running', 22, 26];

function binaryFor(ctx: Mocha.Context, line: number | 'running'): string {
  return line === 'running' ? process.execPath : requireNode(ctx, line);
}

function label(line: number | 'running'): string {
  return line === 'running' ? `Node ${process.versions.node} (running)` : `Node ${line}`;
}

describe('loader hooks', () => {
  let receiver: OtlpReceiver;
  let app: AppProcess | undefined;
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    receiver.clear();
  });

  const env = () => ({
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '100',
  });

  /** Served, counted under its route template, and Express (imported as ESM or not) patched. */
  async function assertInstrumented(running: AppProcess, path = '/users/7'): Promise<void> {
    assert.equal(await request(running.url(path)), 200);
    const counters = samplesNamed(await running.scrape(), 'http_requests_total');
    assert.equal(counters[0]?.labels.endpoint, '/users/:id', JSON.stringify(counters));
    await receiver.waitFor(
      () => receiver.spans.some((s) => s.scope.includes('instrumentation-express')),
      10_000,
      `an Express span (the library was patched)\n${running.stderr.join('\n')}`,
    );
  }

  function assertNoDeprecation(running: AppProcess): void {
    const lines = running.stderr.filter((l) => /Deprecation|DEP\d{4}/.test(l));
    assert.deepEqual(lines, [], 'no deprecation warning');
    assert.deepEqual(running.warnings(), [], 'no distro warning');
  }

  for (const line of LINES) {
    it(`${label(line)}: --import of an ESM app under --throw-deprecation patches what it imports`, async function () {
      const node = binaryFor(this, line);
      app = await startApp({
        fixture: 'express-app.mjs',
        preload: 'import',
        node,
        nodeArgs: ['--throw-deprecation'],
        env: env(),
      });
      await assertInstrumented(app);
      assertNoDeprecation(app);
    });

    it(`${label(line)}: --require of a CommonJS app under --throw-deprecation`, async function () {
      const node = binaryFor(this, line);
      app = await startApp({
        fixture: 'express-app.cjs',
        preload: 'require',
        node,
        nodeArgs: ['--throw-deprecation'],
        env: env(),
      });
      await assertInstrumented(app);
      assertNoDeprecation(app);
    });
  }

  describe('TypeScript', () => {
    const TS_CJS = { TS_NODE_PROJECT: join(FIXTURES, 'ts', 'tsconfig.json') };
    const TS_ESM = { TS_NODE_PROJECT: join(FIXTURES, 'ts-esm', 'tsconfig.json') };
    const cases = [
      {
        name: 'ts-node (-r ts-node/register), CommonJS',
        fixture: 'ts/server.ts',
        nodeArgs: ['--throw-deprecation', '-r', 'ts-node/register'],
        env: TS_CJS,
      },
      {
        // ts-node's ESM loader itself uses deprecated fs APIs (DEP0180): no --throw-deprecation.
        name: 'ts-node ESM loader (--loader ts-node/esm)',
        fixture: 'ts-esm/server.ts',
        nodeArgs: ['--loader', 'ts-node/esm'],
        env: TS_ESM,
      },
      {
        name: 'tsx (--import tsx), CommonJS',
        fixture: 'ts/server.ts',
        nodeArgs: ['--throw-deprecation', '--import', 'tsx'],
        env: {},
      },
      {
        name: 'tsx (--import tsx), ESM',
        fixture: 'ts-esm/server.ts',
        nodeArgs: ['--throw-deprecation', '--import', 'tsx'],
        env: {},
      },
      {
        name: "Node's own type stripping (node app.ts)",
        fixture: 'ts-esm/native.ts',
        nodeArgs: ['--throw-deprecation'],
        env: {},
      },
    ];
    for (const line of LINES) {
      for (const c of cases) {
        it(`${label(line)}: --import with ${c.name}`, async function () {
          const node = binaryFor(this, line);
          app = await startApp({
            fixture: c.fixture,
            preload: 'import',
            node,
            nodeArgs: c.nodeArgs,
            env: { ...env(), ...c.env },
          });
          await assertInstrumented(app);
          assert.deepEqual(app.warnings(), []);
        });
      }
    }
  });

  describe('which hook mechanism each line gets', () => {
    // The deprecation checks cannot tell a silent fallback to module.register() on 24 (which
    // does not deprecate it yet) from the in-thread path: ask the distro itself.
    function mechanism(node: string): string {
      const program = `const finish = require(${JSON.stringify(join(ROOT, 'dist', 'src', 'esm-hooks.js'))}).prepareEsmHooks(); process.stdout.write(finish() === undefined ? 'in-thread' : 'loader-thread');`;
      return execFileSync(node, ['-e', program], { encoding: 'utf8', timeout: 30_000 });
    }
    for (const line of LINES) {
      it(`${label(line)}: in-thread (module.registerHooks)`, function () {
        assert.equal(mechanism(binaryFor(this, line)), 'in-thread');
      });
    }
    it('Node 22 before 22.22.3: the loader thread (module.register)', function () {
      const node = findEarlyNode22();
      if (!node) {
        const reason = 'no Node.js 22 older than 22.22.3 in the cache';
        if (process.env.CI === 'true') throw new Error(`CI must provide it: ${reason}`);
        return skipBecause(this, reason);
      }
      assert.equal(mechanism(node), 'loader-thread');
    });
  });

  describe('on a Node.js 22 before 22.22.3 (the loader-thread fallback)', () => {
    function early(ctx: Mocha.Context): string {
      const binary = findEarlyNode22();
      if (binary) return binary;
      const reason =
        'no Node.js 22 older than 22.22.3 (`node scripts/node-matrix.mjs --fetch-only 22.15.0` caches one, or set DATALAB_TEST_NODE_22_EARLY)';
      // CI fetches 22.15.0 before the tests: the fallback path is supported, so it is proven.
      if (process.env.CI === 'true') throw new Error(`CI must provide it: ${reason}`);
      return skipBecause(ctx, reason);
    }

    it('--import of an ESM app patches what it imports', async function () {
      app = await startApp({
        fixture: 'express-app.mjs',
        preload: 'import',
        node: early(this),
        nodeArgs: ['--throw-deprecation'],
        env: env(),
      });
      await assertInstrumented(app);
      assertNoDeprecation(app);
    });

    it('--import with ts-node (-r ts-node/register)', async function () {
      app = await startApp({
        fixture: 'ts/server.ts',
        preload: 'import',
        node: early(this),
        nodeArgs: ['--throw-deprecation', '-r', 'ts-node/register'],
        env: { ...env(), TS_NODE_PROJECT: join(FIXTURES, 'ts', 'tsconfig.json') },
      });
      await assertInstrumented(app);
      assert.deepEqual(app.warnings(), []);
    });
  });

  describe('with another agent on the loader thread', () => {
    const other = join(FIXTURES, 'other-apm.mjs');
    for (const line of LINES) {
      for (const order of ['before', 'after'] as const) {
        it(`${label(line)}: loaded ${order} ours, both agents patch express`, async function () {
          const node = binaryFor(this, line);
          const ours = ['--import', '@datalab/otel/register'];
          const theirs = ['--import', other];
          app = await startApp({
            fixture: 'express-app.mjs',
            preload: 'none',
            waitForMetrics: true,
            node,
            nodeArgs: order === 'before' ? [...theirs, ...ours] : [...ours, ...theirs],
            env: env(),
          });
          await assertInstrumented(app);
          assert.ok(
            app.stdout.some((l) => l.includes('"other-apm-hooked"')),
            `the other agent's hook ran too (${versionOf(node)})`,
          );
          assert.deepEqual(app.warnings(), []);
        });
      }
    }
  });

  describe('with another agent in-thread (module.registerHooks)', () => {
    // An agent that bundles its own copy of import-in-the-middle: installed for the test where
    // resolution from it still finds import-in-the-middle's dependencies.
    const dir = join(ROOT, 'node_modules', '.other-agent');
    const ownCopy = join(dir, 'agent.mjs');
    const sameCopy = join(FIXTURES, 'other-apm-sync.mjs');
    before(() => {
      mkdirSync(join(dir, 'node_modules'), { recursive: true });
      cpSync(
        join(ROOT, 'node_modules', 'import-in-the-middle'),
        join(dir, 'node_modules', 'import-in-the-middle'),
        { recursive: true },
      );
      copyFileSync(sameCopy, ownCopy);
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    async function startWith(ctx: Mocha.Context, line: number | 'running', theirs: string[]) {
      const node = binaryFor(ctx, line);
      return startApp({
        fixture: 'express-app.mjs',
        preload: 'none',
        waitForMetrics: true,
        node,
        nodeArgs: theirs,
        env: env(),
      });
    }
    const ours = ['--import', '@datalab/otel/register'];
    const otherHooked = (running: AppProcess) =>
      running.stdout.some((l) => l.includes('"other-apm-hooked"'));

    for (const line of LINES) {
      it(`${label(line)}: same import-in-the-middle, loaded after ours: both agents patch express`, async function () {
        app = await startWith(this, line, [...ours, '--import', sameCopy]);
        await assertInstrumented(app);
        assert.ok(otherHooked(app), "the other agent's hook ran too");
        assert.deepEqual(app.warnings(), []);
      });

      it(`${label(line)}: same import-in-the-middle, loaded before ours: one DLOTEL_ESM_HOOKS_CONFLICT`, async function () {
        app = await startWith(this, line, ['--import', sameCopy, ...ours]);
        assert.equal(await request(app.url('/users/7')), 200);
        const counters = samplesNamed(await app.scrape(), 'http_requests_total');
        assert.equal(counters[0]?.labels.endpoint, '/users/:id');
        assert.ok(otherHooked(app), "the other agent's hook ran");
        assert.deepEqual(
          app.warnings().map((w) => w.split(':')[0]),
          ['DLOTEL_ESM_HOOKS_CONFLICT'],
        );
        assert.ok(
          !app.stderr.some((l) => l.includes('already been registered')),
          "import-in-the-middle's own uncoded warning is replaced by the coded one",
        );
      });

      // Two copies of import-in-the-middle in-thread cannot both wrap one module (only one
      // wrapper is generated, and each copy calls only its own hooks): the service runs, and
      // one of the two agents patches it. README "Node.js versions and TypeScript" says so.
      for (const order of ['before', 'after'] as const) {
        it(`${label(line)}: its own import-in-the-middle, loaded ${order} ours: the service runs, one agent patches express`, async function () {
          const theirs = ['--import', ownCopy];
          app = await startWith(
            this,
            line,
            order === 'before' ? [...theirs, ...ours] : [...ours, ...theirs],
          );
          assert.equal(await request(app.url('/users/7')), 200);
          const counters = samplesNamed(await app.scrape(), 'http_requests_total');
          assert.equal(counters[0]?.labels.endpoint, '/users/:id');
          await new Promise((r) => setTimeout(r, 300));
          const oursPatched = async () => {
            try {
              await receiver.waitFor(
                () => receiver.spans.some((s) => s.scope.includes('instrumentation-express')),
                8_000,
              );
              return true;
            } catch {
              return false;
            }
          };
          const patched = [otherHooked(app), await oursPatched()];
          assert.equal(patched.filter(Boolean).length >= 1, true, JSON.stringify(patched));
          assert.deepEqual(app.warnings(), []);
        });
      }
    }
  });
});
