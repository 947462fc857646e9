import assert from 'node:assert/strict';
import {
  hasTraceparent,
  missingNames,
  useCorrelationHeader,
} from '../../src/request/response-headers';

describe('response trace headers: merging with the application values', () => {
  afterEach(() => useCorrelationHeader('x-correlation-id'));

  it('finds a traceparent metric anywhere in a Server-Timing value, and only a metric of that name', () => {
    for (const value of [
      'traceparent;desc="00-a-b-01"',
      'db;dur=53, traceparent;desc="x"',
      'db;dur=53,TraceParent',
      ['db;dur=53', ' traceparent ;desc=x'],
    ]) {
      assert.equal(hasTraceparent(value), true, String(value));
    }
    for (const value of ['db;dur=53', 'db;desc="traceparent"', 'traceparent-x;dur=1', 53, []]) {
      assert.equal(hasTraceparent(value), false, String(value));
    }
  });

  it('lists the exposed names a value lacks, compared without case, in their order', () => {
    assert.equal(missingNames('X-Foo'), 'x-correlation-id, traceresponse, Server-Timing');
    assert.equal(missingNames('X-Correlation-ID,X-Foo'), 'traceresponse, Server-Timing');
    assert.equal(missingNames(['server-timing', 'TRACERESPONSE']), 'x-correlation-id');
    assert.equal(missingNames('x-correlation-id, traceresponse, Server-Timing'), '');
    // '*' exposes every name only to requests without credentials: ours are still listed.
    assert.equal(missingNames('*'), 'x-correlation-id, traceresponse, Server-Timing');
  });

  it('exposes the configured correlation header', () => {
    useCorrelationHeader('x-request-id');
    assert.equal(missingNames('X-Request-Id'), 'traceresponse, Server-Timing');
    assert.equal(missingNames('x-correlation-id'), 'x-request-id, traceresponse, Server-Timing');
  });
});
