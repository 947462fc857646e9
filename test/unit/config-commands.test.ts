import assert from 'node:assert/strict';
import { effectiveConfig, settingsList } from '../../src/cli/config-commands';
import { SETTINGS } from '../../src/config';

describe('datalab-otel config: the settings table', () => {
  it('shows every set variable of the table, secrets redacted as the row says', () => {
    const secret = 'abcdefghijklmnop-secret';
    const report = effectiveConfig(
      {
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: ' 7 ',
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: `api-key=${secret}`,
        OTEL_EXPORTER_OTLP_ENDPOINT: `https://user:${secret}@collector:4318`,
        DATALAB_MANAGEMENT_TOKEN: secret,
        NOT_A_SETTING: 'x',
      },
      __dirname,
    ).report as {
      variables: Record<string, string>;
      environment: Record<string, string>;
      traces: { batch: { maxExportBatchSize: number }; spanLimits: Record<string, unknown> };
    };
    assert.deepEqual(report.variables, {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'https://user:[REDACTED]@collector:4318/',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'api-key=[REDACTED]',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '7',
      DATALAB_MANAGEMENT_TOKEN: '[REDACTED]',
    });
    assert.equal(report.environment.OTEL_EXPORTER_OTLP_TRACES_HEADERS, 'api-key=[REDACTED]');
    assert.ok(!JSON.stringify(report).includes(secret));
    assert.equal(report.traces.batch.maxExportBatchSize, 7);
    // JSON has no Infinity: the unlimited value length says so instead of null.
    assert.equal(report.traces.spanLimits.attributeValueLengthLimit, 'no limit');
  });

  it('--list prints one line per variable, with its default', () => {
    const lines = settingsList().split('\n');
    assert.equal(lines.length, SETTINGS.length);
    for (const [i, s] of SETTINGS.entries()) {
      assert.ok(lines[i]?.startsWith(`${s.env} `), lines[i]);
      assert.ok(lines[i]?.endsWith(`Default: ${s.defaultText}.`), lines[i]);
    }
  });
});
