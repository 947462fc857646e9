/**
 * The Koa and hapi route sources against stand-ins of the framework objects they patch: what
 * lands in the request record, what the application reads back, and that a failure inside a
 * hook is reported and swallowed. The real frameworks run in test/e2e/routes-{koa,hapi}.test.ts.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RequestRecord } from '../../src/request/record';
import { patchLookup, unpatchLookup } from '../../src/routes/hapi';
import {
  defineMatchedRoute,
  isMiddlewarePath,
  mountedTemplate,
  patchRouter,
  removeMatchedRoute,
  routeLayerPath,
  templateOf,
  unpatchRouter,
} from '../../src/routes/koa';
import { setWarningSink, type WarningCode } from '../../src/warnings';

function tracked(): { req: IncomingMessage; record: RequestRecord } {
  const req = {} as IncomingMessage;
  const record = new RequestRecord(req, {} as ServerResponse, 0, true);
  return { req, record };
}

const route = (path: unknown, ...methods: string[]) => ({ path, methods });
const middleware = (path: unknown) => ({ path, methods: [] as string[] });

function captureWarnings(): { warnings: string[]; restore: () => void } {
  const warnings: string[] = [];
  const previous = setWarningSink((code: WarningCode, message: string) =>
    warnings.push(`${code}: ${message}`),
  );
  return { warnings, restore: () => setWarningSink(previous) };
}

describe('Koa route source', () => {
  describe('templateOf', () => {
    it('keeps a string template, drops an empty one and non-paths', () => {
      assert.equal(templateOf('/users/:id'), '/users/:id');
      assert.equal(templateOf(''), undefined);
      assert.equal(templateOf(undefined), undefined);
      assert.equal(templateOf(42), undefined);
    });

    it('stringifies a RegExp route once', () => {
      const re = /^\/re\/\d+$/;
      const first = templateOf(re);
      assert.equal(first, '/^\\/re\\/\\d+$/');
      assert.equal(templateOf(re), first);
    });
  });

  describe('isMiddlewarePath / routeLayerPath', () => {
    const matched = [
      middleware('/api(?:\\/|$)'),
      route('/api/users/me', 'HEAD', 'GET'),
      route('/api/users/:id', 'HEAD', 'GET'),
      route('/api/users/:id', 'DELETE'),
    ];

    it('tells router.use() layers from routes', () => {
      assert.equal(isMiddlewarePath(matched, '/api(?:\\/|$)'), true);
      assert.equal(isMiddlewarePath(matched, '/api/users/:id'), false);
      // Not in the list (another router's), or no list at all: the router's word is taken.
      assert.equal(isMiddlewarePath(matched, '/elsewhere'), false);
      assert.equal(isMiddlewarePath(undefined, '/api(?:\\/|$)'), false);
      // A middleware and a route on one path: it is a route.
      assert.equal(isMiddlewarePath([middleware('/x'), route('/x', 'GET')], '/x'), false);
    });

    it('finds the last route layer for the method, as the router matches', () => {
      assert.equal(routeLayerPath(matched, 'GET'), '/api/users/:id');
      assert.equal(routeLayerPath(matched, 'DELETE'), '/api/users/:id');
      assert.equal(routeLayerPath(matched.slice(0, 2), 'GET'), '/api/users/me');
      assert.equal(routeLayerPath(matched, 'POST'), undefined);
      assert.equal(routeLayerPath([middleware('/api')], 'GET'), undefined);
      assert.equal(routeLayerPath(undefined, 'GET'), undefined);
      assert.equal(routeLayerPath(matched, undefined), undefined);
    });
  });

  describe('mountedTemplate (koa-mount)', () => {
    it('puts the mount path the router did not see in front of the template', () => {
      assert.equal(
        mountedTemplate('/v1/users/:id', '/api/v1/users/42?x=1', '/v1/users/42'),
        '/api/v1/users/:id',
      );
      // Nested mounts: everything before the path the router sees.
      assert.equal(
        mountedTemplate('/users/:id', '/api/v1/users/42', '/users/42'),
        '/api/v1/users/:id',
      );
      // The mount path itself: the mounted app sees `/`.
      assert.equal(mountedTemplate('/', '/api', '/'), '/api');
      assert.equal(mountedTemplate('/', '/api/', '/'), '/api');
    });

    it('a hit of the cache gives the same string, and another mount its own', () => {
      const first = mountedTemplate('/items/:id', '/shop/items/1', '/items/1');
      assert.equal(mountedTemplate('/items/:id', '/shop/items/2', '/items/2'), first);
      assert.equal(mountedTemplate('/items/:id', '/admin/items/2', '/items/2'), '/admin/items/:id');
      assert.equal(mountedTemplate('/items/:id', '/shop/items/3', '/items/3'), '/shop/items/:id');
    });

    it('a path that is no tail of the original URL (a rewrite) keeps the template', () => {
      assert.equal(mountedTemplate('/users/:id', '/very/long/old', '/users/1'), '/users/:id');
      assert.equal(mountedTemplate('/users/:id', '/users/1', '/users/1'), '/users/:id');
      assert.equal(mountedTemplate('/users/:id', '/u/1', '/users/1'), '/users/:id');
    });
  });

  describe('ctx._matchedRoute accessor', () => {
    it('copies route templates into the record and gives the application its value back', () => {
      const proto = {};
      defineMatchedRoute(proto);
      const { req, record } = tracked();
      const ctx = Object.create(Object.create(proto)) as Record<string, unknown>;
      ctx.req = req;
      ctx.matched = [middleware('/b(?:\\/|$)'), route('/b/items/:id', 'GET')];

      ctx._matchedRoute = '/b/items/:id';
      assert.equal(record.template, '/b/items/:id');
      // The router's chain reaches its use() middleware: read back, but no route.
      ctx._matchedRoute = '/b(?:\\/|$)';
      assert.equal(ctx._matchedRoute, '/b(?:\\/|$)');
      assert.equal(record.template, '/b/items/:id');
      assert.equal(Object.keys(ctx).includes('_matchedRoute'), false);

      // Other contexts keep their own value.
      const other = Object.create(proto) as Record<string, unknown>;
      assert.equal(other._matchedRoute, undefined);
    });

    it('is defined once, never over a property of someone else, and removed', () => {
      const proto = {};
      defineMatchedRoute(proto);
      const ours = Object.getOwnPropertyDescriptor(proto, '_matchedRoute');
      defineMatchedRoute(proto);
      assert.equal(Object.getOwnPropertyDescriptor(proto, '_matchedRoute')?.set, ours?.set);
      removeMatchedRoute(proto);
      assert.equal(Object.getOwnPropertyDescriptor(proto, '_matchedRoute'), undefined);

      const theirs = { _matchedRoute: 'kept' };
      defineMatchedRoute(theirs);
      removeMatchedRoute(theirs);
      assert.equal(theirs._matchedRoute, 'kept');
    });

    it('without a request record (server.inject-like callers) only stores the value', () => {
      const proto = {};
      defineMatchedRoute(proto);
      const ctx = Object.create(proto) as Record<string, unknown>;
      ctx.req = {};
      ctx._matchedRoute = '/users/:id';
      assert.equal(ctx._matchedRoute, '/users/:id');
    });

    it('a failure is reported once and the write still happens', () => {
      const { warnings, restore } = captureWarnings();
      try {
        const proto = {};
        defineMatchedRoute(proto);
        const ctx = Object.create(proto) as Record<string, unknown>;
        Object.defineProperty(ctx, 'req', {
          get() {
            throw new Error('broken req');
          },
        });
        ctx._matchedRoute = '/a';
        ctx._matchedRoute = '/b';
        assert.equal(ctx._matchedRoute, '/b');
        assert.equal(warnings.length, 1);
        assert.match(
          warnings[0] as string,
          /^DLOTEL_INTERNAL_ERROR: Koa route source: .*broken req/,
        );
      } finally {
        restore();
      }
    });
  });

  describe('router dispatch', () => {
    type Ctx = Record<string, unknown> & { req: IncomingMessage; method: string };
    type Dispatch = ((ctx: Ctx, next: () => unknown) => unknown) & { router?: unknown };

    /** A router that matches `layers` against nothing but the method, like the real ones'
     * dispatch: it appends to ctx.matched and, when a route matched, writes _matchedRoute. */
    function routerClass(style: 'alias' | 'calls') {
      class Router {
        constructor(readonly layers: { path: unknown; methods: string[] }[]) {}
        middleware(): Dispatch {
          const dispatch: Dispatch = (ctx, next) => {
            ctx.matched = [...((ctx.matched as []) ?? []), ...this.layers];
            const picked = routeLayerPath(this.layers, ctx.method);
            if (picked === undefined) return next();
            ctx._matchedRoute = picked;
            return 'handled';
          };
          dispatch.router = this;
          return dispatch;
        }
        routes(): Dispatch {
          return this.middleware();
        }
      }
      if (style === 'alias') {
        (Router.prototype as { routes: unknown }).routes = Router.prototype.middleware;
      }
      return Router;
    }

    for (const style of ['alias', 'calls'] as const) {
      it(`routes() and middleware() (${style === 'alias' ? 'one function' : 'routes() calling middleware()'}): route, unmatched, nested-router marker`, () => {
        const Router = routerClass(style);
        const originalRoutes = Router.prototype.routes;
        patchRouter(Router);
        patchRouter(Router); // the require and the import hook both reach it
        try {
          const users = new Router([route('/api/users/:id', 'GET')]);
          const dispatch = users.routes();
          assert.equal(dispatch.router, users);
          assert.equal(typeof users.middleware().router, 'object');

          const hit = tracked();
          const out = dispatch({ req: hit.req, method: 'GET' }, () =>
            assert.fail('next() on a match'),
          );
          assert.equal(out, 'handled');
          assert.equal(hit.record.template, '/api/users/:id');
          assert.equal(hit.record.unmatched, false);

          const miss = tracked();
          assert.equal(
            dispatch({ req: miss.req, method: 'POST' }, () => 'next'),
            'next',
          );
          assert.equal(miss.record.template, undefined);
          assert.equal(miss.record.unmatched, true);

          // A second router reached through next() in the same tick matches: its route.
          const teams = new Router([route('/api/teams/:team', 'GET')]).routes();
          const chained = tracked();
          const ctx = { req: chained.req, method: 'GET', path: '/api/teams/x' };
          new Router([route('/other', 'POST')]).routes()(ctx, () => teams(ctx, () => undefined));
          assert.equal(chained.record.template, '/api/teams/:team');
          assert.equal(chained.record.unmatched, false);
        } finally {
          unpatchRouter(Router);
        }
        assert.equal(Router.prototype.routes, originalRoutes);
        assert.equal(new Router([]).routes().router instanceof Router, true);
      });
    }

    it('a failure inside the wrapper is reported and the router result returned', () => {
      const Router = routerClass('calls');
      patchRouter(Router);
      const { warnings, restore } = captureWarnings();
      try {
        const dispatch = new Router([route('/x', 'GET')]).routes();
        const ctx = { method: 'GET' } as unknown as Ctx;
        Object.defineProperty(ctx, 'req', {
          get() {
            throw new Error('no req today');
          },
        });
        assert.equal(
          dispatch(ctx, () => undefined),
          'handled',
        );
        assert.equal(warnings.length, 1);
        assert.match(
          warnings[0] as string,
          /^DLOTEL_INTERNAL_ERROR: Koa route source: .*no req today/,
        );
      } finally {
        restore();
        unpatchRouter(Router);
      }
    });

    it('a module with no Router class is refused', () => {
      assert.throws(() => patchRouter(undefined), /no Router class/);
    });
  });
});

describe('hapi route source', () => {
  type FakeRoute = { method: string; path: string };
  function requestClass() {
    return class Request {
      route: FakeRoute = { method: '_special', path: '/{p*}' };
      constructor(
        readonly raw: { req: IncomingMessage },
        private readonly table: Record<string, FakeRoute>,
        readonly path: string,
      ) {}
      _lookup(): void {
        this.route = this.table[this.path] ?? { method: '_special', path: '/{p*}' };
      }
    };
  }
  const table = { '/api/v1/users/42': { method: 'get', path: '/api/v1/users/{id}' } };

  it('a routed request gets its route path, an unrouted one is unmatched', () => {
    const Request = requestClass();
    const original = Request.prototype._lookup;
    patchLookup(Request);
    patchLookup(Request);
    try {
      const hit = tracked();
      new Request({ req: hit.req }, table, '/api/v1/users/42')._lookup();
      assert.equal(hit.record.template, '/api/v1/users/{id}');
      assert.equal(hit.record.unmatched, false);

      const miss = tracked();
      new Request({ req: miss.req }, table, '/wp-login.php')._lookup();
      assert.equal(miss.record.template, undefined);
      assert.equal(miss.record.unmatched, true);

      // server.inject(): a request that is no tracked node request.
      const injected = new Request({ req: {} as IncomingMessage }, table, '/api/v1/users/42');
      injected._lookup();
      assert.equal(injected.route.path, '/api/v1/users/{id}');
    } finally {
      unpatchLookup(Request);
    }
    assert.equal(Request.prototype._lookup, original);
  });

  it('a failure is reported once and routing goes on', () => {
    const Request = requestClass();
    patchLookup(Request);
    const { warnings, restore } = captureWarnings();
    try {
      const request = new Request({ req: {} as IncomingMessage }, table, '/api/v1/users/42');
      Object.defineProperty(request, 'raw', {
        get() {
          throw new Error('raw gone');
        },
      });
      request._lookup();
      request._lookup();
      assert.equal(request.route.path, '/api/v1/users/{id}');
      assert.equal(warnings.length, 1);
      assert.match(warnings[0] as string, /^DLOTEL_INTERNAL_ERROR: hapi route source: .*raw gone/);
    } finally {
      restore();
      unpatchLookup(Request);
    }
  });

  it('a Request without _lookup() is refused', () => {
    assert.throws(() => patchLookup(class {} as never), /no _lookup/);
  });
});
