import assert from 'node:assert/strict';
import * as semconv from '@opentelemetry/semantic-conventions';
import { lazyExports, STABLE_CONSTANTS } from '../../src/semconv-stub';
import { setWarningSink, type WarningCode } from '../../src/warnings';

describe('semconv stub', () => {
  it('answers every constant with the value @opentelemetry/semantic-conventions has', () => {
    const real = semconv as unknown as Record<string, unknown>;
    for (const [name, value] of Object.entries(STABLE_CONSTANTS)) {
      assert.equal(value, real[name], name);
    }
  });

  it('answers its constants without loading the module', () => {
    let loads = 0;
    const exports = lazyExports(STABLE_CONSTANTS, () => {
      loads++;
      return semconv;
    });
    assert.equal(exports.ATTR_SERVICE_NAME, 'service.name');
    assert.equal(exports.ATTR_HTTP_REQUEST_METHOD, 'http.request.method');
    assert.equal(loads, 0);
  });

  it('loads the module once for any other name, enumeration or `in`', () => {
    let loads = 0;
    const exports = lazyExports(STABLE_CONSTANTS, () => {
      loads++;
      return semconv;
    });
    const real = semconv as unknown as Record<string, unknown>;
    assert.equal(exports.SEMATTRS_HTTP_METHOD, real.SEMATTRS_HTTP_METHOD);
    assert.equal(exports.ATTR_SERVICE_NAME, 'service.name');
    assert.ok('ATTR_URL_FULL' in exports);
    assert.deepEqual(Object.keys(exports).sort(), Object.keys(semconv).sort());
    assert.equal({ ...exports }.ATTR_DB_SYSTEM_NAME, real.ATTR_DB_SYSTEM_NAME);
    assert.equal(loads, 1);
  });

  it('reports a module that fails to load once, and answers undefined instead of throwing', () => {
    const seen: [WarningCode, string][] = [];
    const previous = setWarningSink((code, message) => seen.push([code, message]));
    try {
      const exports = lazyExports(STABLE_CONSTANTS, () => {
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
