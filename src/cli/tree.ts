/**
 * A trace as an indented tree: service, span name, start offset and duration, status, and the
 * attributes an on-call engineer looks at first. Pure, so it is unit-tested.
 */
import type { FlatSpan } from './otlp-json';

const KEY_ATTRIBUTES = [
  'http.request.method',
  'http.route',
  'url.path',
  'http.response.status_code',
  'db.system.name',
  'db.operation.name',
  'db.query.text',
  'server.address',
];

function ms(ns: bigint): string {
  return (Number(ns) / 1e6).toFixed(1);
}

function describe(span: FlatSpan): string {
  const parts: string[] = [];
  for (const key of KEY_ATTRIBUTES) {
    const v = span.attributes[key];
    if (v !== undefined && v !== '') {
      const text = String(v).replace(/\s+/g, ' ');
      parts.push(`${key}=${text.length > 80 ? `${text.slice(0, 77)}...` : text}`);
    }
  }
  return parts.join(' ');
}

/** Renders every trace among `spans`, one tree each, oldest trace first. */
export function renderTraces(spans: readonly FlatSpan[]): string {
  const byTrace = new Map<string, FlatSpan[]>();
  for (const s of spans) byTrace.set(s.traceId, [...(byTrace.get(s.traceId) ?? []), s]);
  const traces = [...byTrace.values()].sort((a, b) => compare(minStart(a), minStart(b)));
  return traces.map(renderTrace).join('\n');
}

function minStart(spans: readonly FlatSpan[]): bigint {
  // biome-ignore lint/complexity/useMathMinMax: Math.min does not take bigints.
  return spans.reduce((m, s) => (s.start < m ? s.start : m), spans[0]?.start ?? 0n);
}

function compare(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function renderTrace(spans: readonly FlatSpan[]): string {
  const first = spans[0];
  if (!first) return '';
  const t0 = minStart(spans);
  // biome-ignore lint/complexity/useMathMinMax: Math.max does not take bigints.
  const end = spans.reduce((m, s) => (s.end > m ? s.end : m), t0);
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, FlatSpan[]>();
  for (const s of spans) {
    // A parent that is not in the data (not exported yet, another backend) makes a root.
    const parent = s.parentSpanId && ids.has(s.parentSpanId) ? s.parentSpanId : '';
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  for (const list of children.values()) list.sort((a, b) => compare(a.start, b.start));
  const services = new Set(spans.map((s) => s.service));
  const errors = spans.filter((s) => s.error).length;
  const lines = [
    `trace ${first.traceId}  ${spans.length} spans  ${services.size} service${services.size === 1 ? '' : 's'} (${[...services].join(', ')})  ${ms(end - t0)} ms${errors ? `  ${errors} error${errors === 1 ? '' : 's'}` : ''}`,
  ];
  const walk = (parent: string, depth: number) => {
    for (const s of children.get(parent) ?? []) {
      const status = s.error ? `  ERROR${s.statusMessage ? ` ${s.statusMessage}` : ''}` : '';
      const attrs = describe(s);
      lines.push(
        `${'  '.repeat(depth + 1)}${s.service}  ${s.name}  +${ms(s.start - t0)} ms  ${ms(s.end - s.start)} ms${status}${attrs ? `  ${attrs}` : ''}`,
      );
      walk(s.spanId, depth + 1);
    }
  };
  walk('', 0);
  return lines.join('\n');
}
