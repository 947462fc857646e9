import assert from 'node:assert/strict';
import { parsePrometheusText } from '../support/prometheus-text';

describe('test support: Prometheus text parser', () => {
  it('parses names, escaped labels and values', () => {
    const samples = parsePrometheusText(
      [
        '# HELP x_total A counter.',
        '# TYPE x_total counter',
        'x_total{a="1",b="q\\"uote",c="line\\nbreak"} 3',
        'up 1',
        'h_bucket{le="+Inf"} 2.5',
      ].join('\n'),
    );
    assert.deepEqual(samples, [
      { name: 'x_total', labels: { a: '1', b: 'q"uote', c: 'line\nbreak' }, value: 3 },
      { name: 'up', labels: {}, value: 1 },
      { name: 'h_bucket', labels: { le: '+Inf' }, value: 2.5 },
    ]);
  });
  it('rejects garbage instead of skipping it', () => {
    assert.throws(() => parsePrometheusText('not a metric line {'));
  });
});
