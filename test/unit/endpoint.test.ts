import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import {
  EndpointRegistry,
  isIdSegment,
  MAX_ENDPOINT_LENGTH,
  normalizeMethod,
  normalizePath,
  OVERFLOW_ENDPOINT,
} from '../../src/metrics/endpoint';
import {
  expressEndpoint,
  expressRoute,
  MAX_MOUNT_TEMPLATES,
  MAX_TEMPLATES_PER_ROUTE,
  mountTemplate,
  responseStatus,
  routeTemplate,
} from '../../src/metrics/http';

describe('endpoint normalisation', () => {
  const cases: [string | undefined, string][] = [
    [undefined, '/'],
    ['', '/'],
    ['/', '/'],
    ['/?q=1', '/'],
    ['/users/42', '/users/:id'],
    ['/users/42/orders/7?page=2', '/users/:id/orders/:id'],
    ['/files/550e8400-e29b-41d4-a716-446655440000', '/files/:id'],
    ['/blobs/507f1f77bcf86cd799439011', '/blobs/:id'],
    ['/health/live', '/health/live'],
    ['/v2/items', '/v2/items'],
    ['/users/abc#frag', '/users/abc'],
    ['/users/', '/users/'],
    ['http://example.com/users/9?x', '/users/:id'],
    ['/deadbeef', '/deadbeef'],
  ];
  for (const [input, expected] of cases) {
    it(`${JSON.stringify(input)} → ${expected}`, () =>
      assert.equal(normalizePath(input), expected));
  }

  it('recognises id segments', () => {
    assert.ok(isIdSegment('123'));
    assert.ok(isIdSegment('0123456789abcdef'));
    assert.ok(!isIdSegment('v2'));
    assert.ok(!isIdSegment('abc'));
    assert.ok(!isIdSegment(''));
  });

  it('normalises methods', () => {
    assert.equal(normalizeMethod('GET'), 'GET');
    assert.equal(normalizeMethod('patch'), 'PATCH');
    assert.equal(normalizeMethod('PROPFIND'), '_OTHER');
    assert.equal(normalizeMethod(undefined), '_OTHER');
  });
});

describe('EndpointRegistry', () => {
  it('admits up to the cap, then counts new ones as overflow, warning once', () => {
    const overflowed: string[] = [];
    const registry = new EndpointRegistry(3, (e) => overflowed.push(e));
    for (const e of ['/a', '/b', '/c']) assert.equal(registry.admit(e), e);
    assert.equal(registry.admit('/d'), OVERFLOW_ENDPOINT);
    assert.equal(registry.admit('/e'), OVERFLOW_ENDPOINT);
    assert.equal(registry.admit('/a'), '/a', 'known ones still pass');
    assert.deepEqual(overflowed, ['/d']);
    assert.equal(registry.size, 3);
  });

  it('always admits route templates, even after a scan used up the cap', () => {
    const registry = new EndpointRegistry(2);
    registry.admit('/scan-1');
    registry.admit('/scan-2');
    assert.equal(registry.admit('/scan-3'), OVERFLOW_ENDPOINT);
    assert.equal(registry.admit('/users/:id', true), '/users/:id');
  });

  it('never admits absurdly long endpoints', () => {
    const registry = new EndpointRegistry(10);
    assert.equal(registry.admit(`/${'x'.repeat(MAX_ENDPOINT_LENGTH)}`), OVERFLOW_ENDPOINT);
    assert.equal(registry.size, 0);
  });
});

describe('Express route templates without instrumentation-express', () => {
  const cases: [string, unknown, string | undefined][] = [
    ['', '/users/:id', '/users/:id'],
    ['/api/v1', '/things/:slug', '/api/v1/things/:slug'],
    ['/api', '/', '/api'],
    ['', '/', '/'],
    ['', '/*', '/'],
    ['/api/', '/x', '/api/x'],
    ['', /^\/re\/\d+$/, '/^\\/re\\/\\d+$/'],
    ['/a', ['/b', '/c'], '/a/b,/c'],
    ['', undefined, undefined],
    ['', 42, undefined],
  ];
  for (const [base, path, expected] of cases) {
    it(`${JSON.stringify(base)} + ${String(path)} → ${String(expected)}`, () => {
      assert.equal(routeTemplate(base, path), expected);
    });
  }

  it('keeps the template on the route object, per mount path', () => {
    const route = { path: '/items/:name' };
    const first = expressRoute({ route, baseUrl: '/shop' });
    assert.equal(first, '/shop/items/:name');
    assert.equal(expressRoute({ route, baseUrl: '/shop' }), first);
    assert.equal(expressRoute({ route, baseUrl: '/admin' }), '/admin/items/:name');
    assert.equal(expressRoute({ route, baseUrl: '/shop' }), '/shop/items/:name');
    assert.equal(expressRoute({ route: undefined, baseUrl: '/shop' }), undefined);
    assert.equal(expressRoute({ route: null }), undefined);
  });
});

describe('Express endpoints with mounts', () => {
  it('a matched route: every mount plus the route path', () => {
    const route = { path: '/users/:id' };
    assert.equal(expressEndpoint({ route, baseUrl: '/admin' }), '/admin/users/:id');
    assert.equal(expressEndpoint({ route, baseUrl: '' }), '/users/:id');
  });

  it('a mount path with an ID value is normalised, not a series per value', () => {
    const route = { path: '/:repo' };
    assert.equal(expressEndpoint({ route, baseUrl: '/orgs/42/repos' }), '/orgs/:id/repos/:repo');
    assert.equal(expressEndpoint({ route, baseUrl: '/orgs/43/repos' }), '/orgs/:id/repos/:repo');
  });

  it('a mount path with other values: a few templates per route, then __overflow__', () => {
    const route = { path: '/api/items' };
    const tenants = Array.from({ length: MAX_TEMPLATES_PER_ROUTE + 3 }, (_, i) => `/tenant-${i}`);
    const got = tenants.map((baseUrl) => expressEndpoint({ route, baseUrl }));
    assert.deepEqual(
      got.slice(0, MAX_TEMPLATES_PER_ROUTE),
      tenants.slice(0, MAX_TEMPLATES_PER_ROUTE).map((t) => `${t}/api/items`),
    );
    assert.deepEqual(new Set(got.slice(MAX_TEMPLATES_PER_ROUTE)), new Set([OVERFLOW_ENDPOINT]));
    // The ones admitted first keep their template.
    assert.equal(expressEndpoint({ route, baseUrl: '/tenant-0' }), '/tenant-0/api/items');
  });

  it('ID values in a mount path never use up that allowance', () => {
    const route = { path: '/:repo' };
    for (let id = 0; id < 500; id++) {
      assert.equal(
        expressEndpoint({ route, baseUrl: `/orgs/${id}/repos` }),
        '/orgs/:id/repos/:repo',
      );
    }
  });

  it('mounted middleware that answered without a route: the mount plus /*', () => {
    assert.equal(expressEndpoint({ baseUrl: '/static' }), '/static/*');
    assert.equal(expressEndpoint({ baseUrl: '/static' }), '/static/*');
    assert.equal(expressEndpoint({ baseUrl: '/api/7/files' }), '/api/:id/files/*');
    assert.equal(mountTemplate('/proxy'), '/proxy/*');
  });

  it('no route and no mount: undefined (the caller normalises the original URL)', () => {
    assert.equal(expressEndpoint({ baseUrl: '' }), undefined);
    assert.equal(expressEndpoint({ baseUrl: undefined }), undefined);
    assert.equal(expressEndpoint({}), undefined);
  });
});

describe('Express mounts with a parameter', () => {
  // Last: the allowance of distinct mount endpoints is per process.
  it('mounted middleware: at most MAX_MOUNT_TEMPLATES endpoints, then __overflow__', () => {
    const got = new Set<string | undefined>();
    for (let i = 0; i < MAX_MOUNT_TEMPLATES + 10; i++) {
      got.add(expressEndpoint({ baseUrl: `/tenant-${i}/static` }));
    }
    assert.ok(got.has(OVERFLOW_ENDPOINT));
    assert.ok(got.size <= MAX_MOUNT_TEMPLATES + 1, `${got.size} endpoints`);
    assert.equal(expressEndpoint({ baseUrl: '/static' }), '/static/*', 'one seen before stays');
  });
});

describe('status of a closed response', () => {
  const response = (headersSent: boolean, socket: unknown, statusCode = 200) =>
    ({ headersSent, statusCode, req: { socket } }) as unknown as ServerResponse;

  it('what was sent, once headers went out', () => {
    assert.equal(responseStatus(response(true, { readableEnded: true }, 204)), 204);
  });
  it('499 when the client closed first (FIN or reset)', () => {
    assert.equal(responseStatus(response(false, { readableEnded: true, errored: null })), 499);
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    assert.equal(responseStatus(response(false, { readableEnded: false, errored: reset })), 499);
  });
  it("408 when Node's request timeout answered", () => {
    const timeout = Object.assign(new Error('timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' });
    assert.equal(responseStatus(response(false, { readableEnded: false, errored: timeout })), 408);
  });
  it('500 when the server side dropped it', () => {
    assert.equal(responseStatus(response(false, { readableEnded: false, errored: null })), 500);
    const own = Object.assign(new Error('boom'), { code: 'ERR_OWN' });
    assert.equal(responseStatus(response(false, { readableEnded: false, errored: own })), 500);
    assert.equal(responseStatus(response(false, null)), 500);
  });
});
