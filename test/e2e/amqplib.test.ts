/**
 * amqplib against the machine's RabbitMQ, for real: an HTTP service (CommonJS and ESM) whose
 * handler publishes to a queue and waits for its own consumer to receive the message. The
 * producer span belongs to the request's trace under the server span; the consumer span continues
 * that trace from the message headers and carries the messaging attributes.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { type AppProcess, reachable, startApp } from '../support/app';
import { FIXTURE_APPS, installFixtureApp } from '../support/framework-apps';
import {
  ancestors,
  type OtlpReceiver,
  type ReceivedSpan,
  startOtlpReceiver,
} from '../support/otlp-receiver';
import { skipBecause } from '../support/skip';

const SERVER = 2;
const PRODUCER = 4;
const CONSUMER = 5;
const RABBITMQ_PORT = 5672;

async function loaded(app: AppProcess): Promise<string[]> {
  return (await (await fetch(app.url('/loaded'))).json()) as string[];
}

describe('amqplib (RabbitMQ)', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver | undefined;
  let app: AppProcess | undefined;

  before(async function () {
    if (!(await reachable(RABBITMQ_PORT))) {
      if (process.env.CI === 'true') {
        throw new Error('RabbitMQ is not reachable on 127.0.0.1:5672 (.ci/run starts it)');
      }
      skipBecause(this, 'RabbitMQ is not running on 127.0.0.1:5672');
    }
    this.timeout(300_000);
    await installFixtureApp(this, 'amqplib');
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver?.close();
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    receiver?.clear();
  });

  for (const file of ['app.cjs', 'app.mjs']) {
    it(`${file}: publish and consume in a request, one trace from server span to consumer`, async () => {
      const otlp = receiver as OtlpReceiver;
      const queue = `dlotel-${randomBytes(4).toString('hex')}`;
      app = await startApp({
        fixture: join(FIXTURE_APPS, 'amqplib', file),
        preload: file.endsWith('.mjs') ? 'import' : 'require',
        env: {
          AMQP_QUEUE: queue,
          OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
          OTEL_BSP_SCHEDULE_DELAY: '100',
        },
      });
      const res = await fetch(app.url('/publish'));
      assert.equal(res.status, 200, await res.clone().text());
      assert.deepEqual(await res.json(), { received: 'hello m1' });

      const isConsumer = (s: ReceivedSpan) =>
        s.kind === CONSUMER && s.scope === '@opentelemetry/instrumentation-amqplib';
      const isServer = (s: ReceivedSpan) =>
        s.kind === SERVER && s.attributes['url.path'] === '/publish';
      await otlp.waitFor(
        () => otlp.spans.some(isConsumer) && otlp.spans.some(isServer),
        15_000,
        'the consumer and server spans',
      );
      const server = otlp.spans.find(isServer) as ReceivedSpan;
      const producer = otlp.spans.find(
        (s) => s.kind === PRODUCER && s.scope === '@opentelemetry/instrumentation-amqplib',
      );
      assert.ok(producer, 'a producer span');
      assert.equal(producer.traceId, server.traceId, 'the producer span is in the request trace');
      assert.ok(
        ancestors(otlp.spans, producer).includes(server),
        `the producer span (${producer.name}) descends from the server span`,
      );
      assert.equal(producer.attributes['messaging.system'], 'rabbitmq');
      assert.equal(producer.attributes['messaging.rabbitmq.routing_key'], queue);
      assert.equal(producer.attributes['messaging.message_id'], 'm1');

      const consumer = otlp.spans.find(isConsumer) as ReceivedSpan;
      assert.equal(consumer.traceId, server.traceId, 'the consumer continues the trace');
      assert.equal(consumer.parentSpanId, producer.spanId, 'from the message headers');
      assert.equal(consumer.attributes['messaging.system'], 'rabbitmq');
      assert.equal(consumer.attributes['messaging.operation'], 'process');
      assert.equal(consumer.attributes['messaging.message_id'], 'm1');
      assert.equal(consumer.attributes['messaging.rabbitmq.routing_key'], queue);
      // The broker URL is recorded without its password.
      assert.match(String(consumer.attributes['messaging.url']), /^amqp:\/\/guest:\*\*\*@/);
      for (const span of [producer, consumer]) {
        assert.equal(span.attributes['correlation.id'], server.attributes['correlation.id']);
      }
      assert.deepEqual(app.warnings(), []);
    });
  }

  it('metrics only: amqplib works and its instrumentation, spans only, is never loaded', async () => {
    app = await startApp({
      fixture: join(FIXTURE_APPS, 'amqplib', 'app.cjs'),
      preload: 'require',
      env: {
        AMQP_QUEUE: `dlotel-${randomBytes(4).toString('hex')}`,
        OTEL_TRACES_EXPORTER: 'none',
        DATALAB_TRACES_FILE: 'false',
      },
    });
    const res = await fetch(app.url('/publish'));
    assert.equal(res.status, 200);
    assert.ok(!(await loaded(app)).includes('amqplib'));
    assert.deepEqual(app.warnings(), []);
  });
});
