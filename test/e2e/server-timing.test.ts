/**
 * From a browser to the trace: a traced node:http response carries `Server-Timing:
 * traceparent;desc="<traceresponse>"` naming the server span, and `Access-Control-Expose-Headers`
 * so cross-origin browser code may read the correlation ID, `traceresponse` and `Server-Timing`.
 * An application's own values for both headers (setHeader, writeHead with an object or a list)
 * stay, ours appended. A real headless Chromium reads them the way real-user monitoring does.
 */
import assert from 'node:assert/strict';
import { type AppProcess, startApp } from '../support/app';
import { dumpDom, outputOf, requireChromium } from '../support/chromium';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver';

const SERVER = 2;
const TRACE_RESPONSE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;
const OURS = ['x-correlation-id', 'traceresponse', 'server-timing'];
const NO_DEPENDENCIES = { PGHOST: '', PGPORT: '', PGUSER: '', PGDATABASE: '' };

/** The names of an Access-Control-Expose-Headers value, lower case, in order. */
function exposedNames(value: string | null): string[] {
  return (value ?? '').split(',').map((n) => n.trim().toLowerCase());
}

describe('Server-Timing and the exposed trace headers (node:http)', function () {
  this.timeout(60_000);

  describe('traced', () => {
    let receiver: OtlpReceiver;
    let app: AppProcess;

    before(async () => {
      receiver = await startOtlpReceiver();
      app = await startApp({
        fixture: 'server-timing-app.mjs',
        env: {
          ...NO_DEPENDENCIES,
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_BSP_SCHEDULE_DELAY: '100',
        },
      });
    });
    after(async () => {
      await app?.stop();
      await receiver?.close();
    });

    /** The exported server span a traceresponse value names. */
    async function serverSpanOf(traceresponse: string, path: string): Promise<ReceivedSpan> {
      const m = TRACE_RESPONSE.exec(traceresponse);
      assert.ok(m, `traceresponse ${traceresponse}`);
      const [, traceId, spanId] = m;
      await receiver.waitFor(
        () => receiver.spans.some((s) => s.traceId === traceId && s.kind === SERVER),
        10_000,
        `the server span of ${path}`,
      );
      const span = receiver.spans.find((s) => s.traceId === traceId && s.kind === SERVER);
      assert.ok(span);
      assert.equal(span.spanId, spanId, 'the server span, not another span of the trace');
      assert.equal(span.attributes['url.path'], path);
      return span;
    }

    it('a response whose handler sets neither header: Server-Timing names the server span, all three exposed', async () => {
      const res = await fetch(app.url('/plain'));
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      const traceresponse = res.headers.get('traceresponse') ?? '';
      assert.match(traceresponse, TRACE_RESPONSE);
      assert.equal(res.headers.get('server-timing'), `traceparent;desc="${traceresponse}"`);
      assert.deepEqual(exposedNames(res.headers.get('access-control-expose-headers')), OURS);
      await serverSpanOf(traceresponse, '/plain');
    });

    for (const [path, how] of [
      ['/set-own', 'setHeader'],
      ['/writehead-own', 'writeHead(status, headers), one frozen object for every response'],
      ['/writehead-reason-list', 'writeHead(status, reason, [name, value, …])'],
    ] as const) {
      it(`the handler's own values (${how}) stay first, ours appended`, async () => {
        // Twice: a headers object the application reuses must not collect our values.
        for (let i = 0; i < 2; i++) {
          const res = await fetch(app.url(path));
          assert.equal(res.status, 200);
          await res.arrayBuffer();
          const traceresponse = res.headers.get('traceresponse') ?? '';
          assert.match(traceresponse, TRACE_RESPONSE);
          assert.equal(
            res.headers.get('server-timing'),
            `db;dur=53, traceparent;desc="${traceresponse}"`,
          );
          assert.deepEqual(exposedNames(res.headers.get('access-control-expose-headers')), [
            'x-foo',
            ...OURS,
          ]);
          if (path === '/writehead-reason-list') assert.equal(res.statusText, 'Fine');
          await serverSpanOf(traceresponse, path);
        }
        // Writing into the frozen object would have thrown inside the distro's hook.
        assert.deepEqual(app.warnings(), []);
      });
    }

    it('names the handler already lists (any case) and its own traceparent metric are not repeated', async () => {
      const res = await fetch(app.url('/already'));
      await res.arrayBuffer();
      assert.equal(res.headers.get('server-timing'), 'traceparent;desc="mine"');
      assert.deepEqual(exposedNames(res.headers.get('access-control-expose-headers')), [
        'x-correlation-id',
        'x-foo',
        'traceresponse',
        'server-timing',
      ]);
    });

    it('a handler that removes them sends neither', async () => {
      const res = await fetch(app.url('/removed'));
      await res.arrayBuffer();
      assert.match(res.headers.get('traceresponse') ?? '', TRACE_RESPONSE);
      assert.equal(res.headers.get('server-timing'), null);
      assert.equal(res.headers.get('access-control-expose-headers'), null);
      assert.deepEqual(app.warnings(), []);
    });

    describe('in headless Chromium', () => {
      let chromium: string;
      before(function () {
        chromium = requireChromium(this);
      });

      it("a page's navigation entry has serverTiming traceparent naming its server span", async () => {
        const out = outputOf(await dumpDom(chromium, app.url('/navigation')));
        const entries = JSON.parse(out) as { name: string; description: string }[];
        assert.equal(entries.length, 1, out);
        assert.equal(entries[0]?.name, 'traceparent');
        await serverSpanOf(entries[0]?.description ?? '', '/navigation');
      });

      it('a cross-origin fetch reads the correlation ID, traceresponse and Server-Timing', async () => {
        const read = JSON.parse(
          outputOf(await dumpDom(chromium, app.url('/cross-origin?api=/api'))),
        ) as Record<string, string | string[] | null>;
        const traceresponse = String(read.traceresponse);
        const span = await serverSpanOf(traceresponse, '/api');
        assert.equal(read.correlation, span.traceId);
        assert.equal(read.serverTiming, `traceparent;desc="${traceresponse}"`);
        // Without Timing-Allow-Origin the browser keeps server timing from the other origin.
        assert.deepEqual(read.resourceTiming, []);
      });

      it('without Access-Control-Expose-Headers the same fetch reads none of them', async () => {
        const read = JSON.parse(
          outputOf(await dumpDom(chromium, app.url('/cross-origin?api=/api-bare'))),
        ) as Record<string, unknown>;
        assert.deepEqual(
          [read.correlation, read.traceresponse, read.serverTiming],
          [null, null, null],
        );
      });

      it("with the application's Timing-Allow-Origin, the cross-origin resource entry has serverTiming", async () => {
        const read = JSON.parse(
          outputOf(await dumpDom(chromium, app.url('/cross-origin?api=/api-tao'))),
        ) as Record<string, string | string[] | null>;
        const traceresponse = String(read.traceresponse);
        await serverSpanOf(traceresponse, '/api-tao');
        assert.deepEqual(read.resourceTiming, [`traceparent=${traceresponse}`]);
      });
    });
  });

  describe('not traced (OTEL_TRACES_EXPORTER=none, no trace file)', () => {
    let app: AppProcess;
    before(async () => {
      app = await startApp({
        fixture: 'server-timing-app.mjs',
        env: { ...NO_DEPENDENCIES, OTEL_TRACES_EXPORTER: 'none', DATALAB_TRACES_FILE: 'false' },
      });
    });
    after(async () => {
      await app?.stop();
    });

    it('no Server-Timing, no exposed headers; the correlation ID still echoed', async () => {
      const res = await fetch(app.url('/plain'));
      await res.arrayBuffer();
      assert.match(res.headers.get('x-correlation-id') ?? '', /^[0-9a-f]{32}$/);
      assert.equal(res.headers.get('traceresponse'), null);
      assert.equal(res.headers.get('server-timing'), null);
      assert.equal(res.headers.get('access-control-expose-headers'), null);
    });

    it("the handler's own values go out unchanged", async () => {
      for (const path of ['/set-own', '/writehead-own']) {
        const res = await fetch(app.url(path));
        await res.arrayBuffer();
        assert.equal(res.headers.get('server-timing'), 'db;dur=53', path);
        assert.equal(res.headers.get('access-control-expose-headers'), 'X-Foo', path);
      }
    });
  });
});
