import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RequestRecord, recordOf } from '../../src/request/record';
import {
  contextTemplate,
  createRouteHook,
  FASTIFY_INITIALIZATION_CHANNEL,
  type FastifyRequestLike,
  FastifyRouteSource,
  findContextKey,
} from '../../src/routes/fastify';
import { setWarningSink, type WarningCode } from '../../src/warnings';

type FastifyApp = import('fastify').FastifyInstance;
const fastify = require('fastify') as typeof import('fastify').default;

function fastifyVersion(): string {
  return (require('fastify/package.json') as { version: string }).version;
}

// Fastify's private key is a Symbol('fastify.context'): these stand for two copies of Fastify.
const kContext = Symbol('fastify.context');
const kOtherCopy = Symbol('fastify.context');

function rawRequest(): IncomingMessage {
  const raw = {} as IncomingMessage;
  new RequestRecord(raw, {} as ServerResponse, 0, true);
  return raw;
}

function fastifyRequest(url: unknown, key: symbol = kContext): FastifyRequestLike {
  return { raw: rawRequest(), [key]: { config: url === undefined ? {} : { url } } };
}

function run(hook: ReturnType<typeof createRouteHook>, request: FastifyRequestLike): void {
  let done = 0;
  hook(request, {}, () => done++);
  assert.equal(done, 1, 'done() called once');
}

describe('Fastify route source', () => {
  describe('findContextKey', () => {
    it('finds the own symbol described fastify.context among the others', () => {
      const request = { [Symbol('fastify.other')]: 1, [kContext]: {}, id: 'x' };
      assert.equal(findContextKey(request), kContext);
    });
    it('finds nothing on a request without it (a string key does not count)', () => {
      assert.equal(findContextKey({ context: {}, [Symbol('fastify.context.x')]: {} }), undefined);
    });
  });

  describe('contextTemplate', () => {
    it('is the route context config url, prefixes included', () => {
      assert.equal(contextTemplate({ config: { url: '/api/v1/users/:id' } }), '/api/v1/users/:id');
    });
    it("is '/' for a route registered as '' at the root", () => {
      assert.equal(contextTemplate({ config: { url: '' } }), '/');
    });
    it('is undefined for a not-found context (config without url) or anything else', () => {
      assert.equal(contextTemplate({ config: {} }), undefined);
      assert.equal(contextTemplate({ config: null }), undefined);
      assert.equal(contextTemplate({}), undefined);
      assert.equal(contextTemplate(undefined), undefined);
      assert.equal(contextTemplate({ config: { url: 42 } }), undefined);
    });
  });

  describe('the onRequest hook', () => {
    it('writes the template of a routed request into its record', () => {
      const hook = createRouteHook();
      const request = fastifyRequest('/api/v1/users/:id');
      run(hook, request);
      const record = recordOf(request.raw) as RequestRecord;
      assert.equal(record.template, '/api/v1/users/:id');
      assert.equal(record.unmatched, false);
    });

    it('marks a request given to the not-found handler unmatched, with no route', () => {
      const hook = createRouteHook();
      run(hook, fastifyRequest('/a'));
      const request = fastifyRequest(undefined);
      run(hook, request);
      const record = recordOf(request.raw) as RequestRecord;
      assert.equal(record.template, undefined);
      assert.equal(record.unmatched, true);
    });

    it('finds the key again for a request of another copy of Fastify', () => {
      const hook = createRouteHook();
      run(hook, fastifyRequest('/first'));
      const request = fastifyRequest('/second', kOtherCopy);
      run(hook, request);
      assert.equal(recordOf(request.raw)?.template, '/second');
    });

    it('falls back on the public is404 and routeOptions without the private key', () => {
      const hook = createRouteHook();
      const routed: FastifyRequestLike = {
        raw: rawRequest(),
        is404: false,
        routeOptions: { url: '/teams/:team' },
      };
      run(hook, routed);
      assert.equal(recordOf(routed.raw)?.template, '/teams/:team');
      const notFound: FastifyRequestLike = { raw: rawRequest(), is404: true };
      run(hook, notFound);
      assert.equal(recordOf(notFound.raw)?.unmatched, true);
      assert.equal(recordOf(notFound.raw)?.template, undefined);
    });

    it('leaves requests the distro has no record of alone (HTTP/2, inject())', () => {
      const hook = createRouteHook();
      const request = { raw: {} as IncomingMessage, [kContext]: { config: { url: '/x' } } };
      run(hook, request);
      assert.equal(recordOf(request.raw), undefined);
    });

    it('swallows its own failure with one coded warning and still calls done()', () => {
      const warnings: WarningCode[] = [];
      const previous = setWarningSink((code) => warnings.push(code));
      try {
        const hook = createRouteHook();
        const hostile = {
          raw: rawRequest(),
          get [kContext]() {
            throw new Error('boom');
          },
        } as unknown as FastifyRequestLike;
        run(hook, hostile);
        run(hook, hostile);
        const after = fastifyRequest('/after');
        run(hook, after);
        assert.equal(recordOf(after.raw)?.template, '/after');
      } finally {
        setWarningSink(previous);
      }
      // Reported once per process, however often it fails.
      assert.deepEqual(warnings, ['DLOTEL_INTERNAL_ERROR']);
    });
  });

  describe('FastifyRouteSource', () => {
    it('adds its hook to each instance published on fastify.initialization while enabled', () => {
      const source = new FastifyRouteSource();
      const channel = diagnosticsChannel.channel(FASTIFY_INITIALIZATION_CHANNEL);
      const added: string[] = [];
      const instance = { addHook: (name: string) => added.push(name) };
      try {
        source.enable();
        source.enable();
        channel.publish({ fastify: instance });
        assert.deepEqual(added, ['onRequest']);
        source.disable();
        channel.publish({ fastify: instance });
        assert.deepEqual(added, ['onRequest']);
        assert.equal(channel.hasSubscribers, false);
      } finally {
        source.disable();
      }
    });

    it('never throws into the publisher', async () => {
      const source = new FastifyRouteSource();
      const previous = setWarningSink(() => {});
      try {
        source.enable();
        const channel = diagnosticsChannel.channel(FASTIFY_INITIALIZATION_CHANNEL);
        const failing = {
          addHook() {
            throw new Error('instance already started');
          },
        };
        channel.publish({ fastify: failing });
        channel.publish(null);
        channel.publish({ fastify: {} });
        // Node rethrows a subscriber's exception on the next tick, as an uncaught exception.
        await new Promise((resolve) => setImmediate(resolve));
      } finally {
        source.disable();
        setWarningSink(previous);
      }
    });
  });

  // The devDependency Fastify, in process (inject()): its real contexts, prefixes and not-found
  // handlers. The record is made where the distro makes it for a real request (before Fastify
  // sees it); genReqId is the first code Fastify runs with the raw request.
  describe(`with Fastify ${fastifyVersion()}`, () => {
    const source = new FastifyRouteSource();
    before(() => source.enable());
    after(() => source.disable());

    async function recordFor(
      app: { inject(o: object): Promise<{ statusCode: number }> },
      seen: IncomingMessage[],
      url: string,
    ): Promise<{ status: number; record: RequestRecord }> {
      const { statusCode } = await app.inject({ method: 'GET', url });
      const record = recordOf(seen.pop());
      assert.ok(record, url);
      return { status: statusCode, record };
    }

    function build(configure: (app: FastifyApp) => void): {
      app: FastifyApp;
      seen: IncomingMessage[];
    } {
      const seen: IncomingMessage[] = [];
      const app = fastify({
        genReqId(raw: IncomingMessage) {
          new RequestRecord(raw, {} as ServerResponse, 0, true);
          seen.push(raw);
          return 'r';
        },
      });
      configure(app);
      return { app, seen };
    }

    it('gives the template with every register() prefix; 404s, HEAD and hook answers', async () => {
      const { app, seen } = build((app) => {
        // An application hook answering before the route: the route still counts.
        app.addHook('onRequest', (request, reply, done) => {
          if (request.headers.authorization === undefined && request.url.includes('private')) {
            reply.code(401).send();
            return;
          }
          done();
        });
        app.register(
          async (api) => {
            api.register(
              async (users) => {
                users.get('/:id', async () => ({}));
                users.get('/private/:id', async () => ({}));
              },
              { prefix: '/users' },
            );
          },
          { prefix: '/api/v1' },
        );
      });
      try {
        let r = await recordFor(app, seen, '/api/v1/users/42');
        assert.equal(r.status, 200);
        assert.equal(r.record.template, '/api/v1/users/:id');
        r = await recordFor(app, seen, '/api/v1/users/private/42');
        assert.equal(r.status, 401);
        assert.equal(r.record.template, '/api/v1/users/private/:id');
        r = await recordFor(app, seen, '/api/v1/nothing');
        assert.equal(r.status, 404);
        assert.equal(r.record.template, undefined);
        assert.equal(r.record.unmatched, true);
        const { statusCode } = await app.inject({ method: 'HEAD', url: '/api/v1/users/7' });
        assert.equal(statusCode, 200);
        assert.equal(recordOf(seen.pop())?.template, '/api/v1/users/:id');
        const post = await app.inject({ method: 'POST', url: '/api/v1/users/7' });
        assert.equal(post.statusCode, 404);
        assert.equal(recordOf(seen.pop())?.unmatched, true);
      } finally {
        await app.close();
      }
    });

    // The fallback on routeOptions gives the same answers, at three times the cost: an upgrade
    // that moves the context must be noticed here, not by the end-to-end tests.
    it('keeps the route context under the key the hook looks for (no fallback)', async () => {
      let seen: object | undefined;
      const { app } = build((app) => {
        app.addHook('onRequest', (request, _reply, done) => {
          seen = request;
          done();
        });
        app.get('/x', async () => 'x');
      });
      try {
        await app.inject({ method: 'GET', url: '/x' });
        assert.ok(seen);
        const key = findContextKey(seen);
        assert.ok(key, 'no fastify.context symbol on the request');
        assert.equal(contextTemplate((seen as Record<symbol, never>)[key]), '/x');
      } finally {
        await app.close();
      }
    });

    it('counts a custom not-found handler, root or in a prefix, as unmatched', async () => {
      const { app, seen } = build((app) => {
        app.setNotFoundHandler((_request, reply) => reply.code(404).send('none'));
        app.register(
          async (api) => {
            api.setNotFoundHandler((_request, reply) => reply.code(404).send('no api'));
            api.get('/ok', async () => 'ok');
          },
          { prefix: '/api' },
        );
      });
      try {
        for (const url of ['/x', '/api/x', '/api/ok/more']) {
          const r = await recordFor(app, seen, url);
          assert.equal(r.status, 404, url);
          assert.equal(r.record.unmatched, true, url);
          assert.equal(r.record.template, undefined, url);
        }
        assert.equal((await recordFor(app, seen, '/api/ok')).record.template, '/api/ok');
      } finally {
        await app.close();
      }
    });
  });
});
