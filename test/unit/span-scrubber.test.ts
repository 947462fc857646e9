import assert from 'node:assert/strict';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { SpanScrubber } from '../../src/span-scrubber';

describe('span scrubber: SQL as the application wrote it', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({
    spanProcessors: [new SpanScrubber(), new SimpleSpanProcessor({ exporter })],
  });
  afterEach(() => exporter.reset());
  after(() => provider.shutdown());

  function recorded(scope: string, attributes: Record<string, string>) {
    provider.getTracer(scope).startSpan('query', { attributes }).end();
    return exporter.getFinishedSpans()[0]?.attributes;
  }

  it('replaces the literals of mysql, tedious, oracledb, knex and cassandra-driver statements', () => {
    for (const name of ['mysql', 'tedious', 'oracledb', 'knex', 'cassandra-driver']) {
      const attributes = recorded(`@opentelemetry/instrumentation-${name}`, {
        'db.statement': "SELECT * FROM users WHERE email = 'ann@example.com' AND id = 42",
        'db.query.text': "UPDATE t SET secret = 'hunter2'",
      });
      assert.equal(
        attributes?.['db.statement'],
        'SELECT * FROM users WHERE email = ? AND id = ?',
        name,
      );
      assert.equal(attributes?.['db.query.text'], 'UPDATE t SET secret = ?', name);
      exporter.reset();
    }
  });

  it('leaves other scopes alone', () => {
    const attributes = recorded('@opentelemetry/instrumentation-mongodb', {
      'db.statement': '{"email":"?"}',
    });
    assert.equal(attributes?.['db.statement'], '{"email":"?"}');
  });
});
