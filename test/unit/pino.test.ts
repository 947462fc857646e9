import assert from 'node:assert/strict';
import { SeverityNumber } from '@opentelemetry/api';
import { DEFAULT_REDACT_KEYS } from '../../src/config/types';
import { redactRecord, secretTest, severityOf } from '../../src/logging/pino';

describe('pino records: redaction', () => {
  const isSecret = secretTest(new Set([...DEFAULT_REDACT_KEYS, 'iban']));

  it('returns the record itself when no field is secret (no copy)', () => {
    const record = { service: 'x', correlation_id: 'c', nested: { keep: [1, { a: 2 }] } };
    assert.equal(redactRecord(record, isSecret), record);
  });

  it('redacts secret-named fields at any depth, in a copy, leaving the logged object intact', () => {
    const record = {
      password: 'p',
      nested: { apiToken: 't', keep: 'visible', list: [{ Authorization: 'a', x: 1 }] },
      IBAN: 'DE00',
      n: 1,
    };
    const out = redactRecord(record, isSecret);
    assert.notEqual(out, record);
    assert.deepEqual(out, {
      password: '[REDACTED]',
      nested: {
        apiToken: '[REDACTED]',
        keep: 'visible',
        list: [{ Authorization: '[REDACTED]', x: 1 }],
      },
      IBAN: '[REDACTED]',
      n: 1,
    });
    assert.equal(record.password, 'p');
    assert.equal(record.nested.apiToken, 't');
  });

  it('leaves class instances and errors to pino (same object, not walked)', () => {
    class Request {
      secret = 'inside';
    }
    const req = new Request();
    const err = Object.assign(new Error('boom'), { token: 'x' });
    const record = { req, err, password: 'p' };
    const out = redactRecord(record, isSecret);
    assert.equal(out.req, req);
    assert.equal(out.err, err);
    assert.equal(out.password, '[REDACTED]');
    assert.equal(redactRecord({ req, err }, isSecret).req, req);
  });

  it('stops at depth 6', () => {
    const deep = { a: { b: { c: { d: { e: { f: { password: 'p' } } } } } } };
    assert.equal(redactRecord(deep, isSecret), deep);
    const five = { a: { b: { c: { d: { e: { password: 'p' } } } } } };
    assert.equal((redactRecord(five, isSecret) as typeof five).a.b.c.d.e.password, '[REDACTED]');
  });

  it('gives the same answer for a remembered name', () => {
    for (let i = 0; i < 3; i++) {
      assert.equal(isSecret('db_password'), true);
      assert.equal(isSecret('orderId'), false);
    }
  });
});

describe('pino records: OTLP severity', () => {
  it('maps the standard levels exactly and custom ones into their range', () => {
    assert.equal(severityOf(10), SeverityNumber.TRACE);
    assert.equal(severityOf(20), SeverityNumber.DEBUG);
    assert.equal(severityOf(30), SeverityNumber.INFO);
    assert.equal(severityOf(40), SeverityNumber.WARN);
    assert.equal(severityOf(50), SeverityNumber.ERROR);
    assert.equal(severityOf(60), SeverityNumber.FATAL);
    assert.equal(severityOf(35), SeverityNumber.INFO3);
    assert.equal(severityOf(49), SeverityNumber.WARN4);
    assert.equal(severityOf(5), SeverityNumber.TRACE);
    assert.equal(severityOf(100), SeverityNumber.FATAL);
  });
});
