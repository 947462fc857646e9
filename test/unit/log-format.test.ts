import assert from 'node:assert/strict';
import {
  baseFields,
  isSecretKey,
  REDACTED,
  redact,
  renderJson,
  renderPretty,
} from '../../src/logging/format';

const KEYS = new Set(['authorization', 'cookie', 'set-cookie', 'x-api-key']);

describe('log format', () => {
  it('redacts secret-named fields at any depth, and nothing else', () => {
    const input = {
      authorization: 'Bearer x',
      headers: { Cookie: 'a=b', 'X-Api-Key': 'k', accept: '*/*' },
      user: { name: 'ann', db_password: 'p', authToken: 't', clientSecret: 's' },
      list: [{ token: 't' }, 'plain'],
    };
    assert.deepEqual(redact(input, KEYS), {
      authorization: REDACTED,
      headers: { Cookie: REDACTED, 'X-Api-Key': REDACTED, accept: '*/*' },
      user: { name: 'ann', db_password: REDACTED, authToken: REDACTED, clientSecret: REDACTED },
      list: [{ token: REDACTED }, 'plain'],
    });
    assert.ok(isSecretKey('PASSWORD', KEYS));
    assert.ok(!isSecretKey('path', KEYS));
  });

  it('survives deep and circular objects', () => {
    const circular: Record<string, unknown> = { a: 1 };
    circular.self = circular;
    const out = redact(circular, KEYS) as Record<string, unknown>;
    assert.equal(out.a, 1);
    const record = { ...baseFields('info', 'm', 's', 0), meta: circular };
    assert.doesNotThrow(() => JSON.parse(renderJson(record)));
  });

  it('renders contract fields first, as one line', () => {
    const line = renderJson({
      extra: 1,
      ...baseFields('info', 'two\nlines', 'svc', 1_700_000_000_123),
      trace_id: 't',
      correlation_id: 'c',
    });
    assert.ok(!line.includes('\n'));
    assert.deepEqual(Object.keys(JSON.parse(line)), [
      'level',
      'message',
      'service',
      'timestamp',
      'iso_timestamp',
      'trace_id',
      'correlation_id',
      'extra',
    ]);
    assert.equal(JSON.parse(line).timestamp, 1_700_000_000.123);
    assert.equal(JSON.parse(line).iso_timestamp, '2023-11-14T22:13:20.123Z');
  });

  it('pretty lines cannot be split by a hostile message', () => {
    const line = renderPretty({ ...baseFields('warn', 'a\r\nFAKE b', 'svc', 0), k: 'v\nw' });
    assert.equal(line, '1970-01-01T00:00:00.000Z WARN  [svc] a\\r\\nFAKE b  k=v\\nw');
  });
});
