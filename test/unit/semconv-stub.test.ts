import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { exportedNames, lazyExports, STABLE_CONSTANTS } from '../../src/semconv-stub';
import { setWarningSink, type WarningCode } from '../../src/warnings';

const INDEX = require.resolve('@opentelemetry/semantic-conventions');
// The CommonJS exports object itself, as the SDK's packages get it.
const semconv = require(INDEX) as Record<string, unknown>;
const real = semconv;

describe('semconv stub', () => {
  const names = exportedNames(readFileSync(INDEX, 'utf8'));

  it('finds every name the package exports, in its order', () => {
    assert.deepEqual(names, Object.keys(real));
  });

  it('answers every constant with the value @opentelemetry/semantic-conventions has', () => {
    for (const [name, value] of Object.entries(STABLE_CONSTANTS)) {
      assert.equal(value, real[name], name);
    }
  });

  it('answers its constants as plain values, and lists every name, without loading the module', () => {
    let loads = 0;
    const exports = lazyExports(names, STABLE_CONSTANTS, () => {
      loads++;
      return semconv;
    });
    assert.equal(exports.ATTR_SERVICE_NAME, 'service.name');
    assert.equal(exports.ATTR_HTTP_REQUEST_METHOD, 'http.request.method');
    // A data property: read as fast as the real module's.
    assert.equal(
      Object.getOwnPropertyDescriptor(exports, 'ATTR_URL_FULL')?.value,
      real.ATTR_URL_FULL,
    );
    assert.deepEqual(Object.keys(exports), Object.keys(real));
    assert.ok('SEMATTRS_HTTP_METHOD' in exports);
    assert.equal(loads, 0);
  });

  it('loads the module once at the first other name, then answers everything from it', () => {
    let loads = 0;
    const exports = lazyExports(names, STABLE_CONSTANTS, () => {
      loads++;
      return semconv;
    });
    assert.equal(exports.SEMATTRS_HTTP_METHOD, real.SEMATTRS_HTTP_METHOD);
    assert.equal(exports.SEMRESATTRS_HOST_NAME, real.SEMRESATTRS_HOST_NAME);
    assert.equal(loads, 1);
    assert.deepEqual({ ...exports }, { ...real });
    assert.deepEqual(Object.keys(exports), Object.keys(real));
  });

  it('reports a module that fails to load once, and answers undefined instead of throwing', () => {
    const seen: [WarningCode, string][] = [];
    const previous = setWarningSink((code, message) => seen.push([code, message]));
    try {
      const exports = lazyExports(names, STABLE_CONSTANTS, () => {
        throw new Error('ENOENT: removed');
      });
      assert.equal(exports.ATTR_SERVICE_NAME, 'service.name');
      assert.equal(exports.SEMATTRS_HTTP_METHOD, undefined);
      assert.equal(exports.SEMRESATTRS_HOST_NAME, undefined);
      assert.equal(seen.length, 1);
      assert.equal(seen[0]?.[0], 'DLOTEL_INTERNAL_ERROR');
      assert.match(
        seen[0]?.[1] ?? '',
        /semantic-conventions could not be loaded \(ENOENT: removed\)/,
      );
    } finally {
      setWarningSink(previous);
    }
  });
});
