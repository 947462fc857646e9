/**
 * OTLP/JSON traces (the Collector file exporter's lines, the distro's local trace files, Jaeger
 * API v3 and Tempo answers) flattened into spans the CLI can index, print and re-emit.
 */
export interface OtlpAnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
  arrayValue?: { values?: OtlpAnyValue[] };
  kvlistValue?: { values?: OtlpKeyValue[] };
  bytesValue?: string;
}
export interface OtlpKeyValue {
  key: string;
  value?: OtlpAnyValue;
}
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number | string;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes?: OtlpKeyValue[];
  status?: { code?: number | string; message?: string };
  [key: string]: unknown;
}
export interface OtlpScopeSpans {
  scope?: { name?: string; version?: string };
  spans?: OtlpSpan[];
  [key: string]: unknown;
}
export interface OtlpResourceSpans {
  resource?: { attributes?: OtlpKeyValue[] };
  scopeSpans?: OtlpScopeSpans[];
  [key: string]: unknown;
}
export interface OtlpTracesData {
  resourceSpans?: OtlpResourceSpans[];
}

export interface FlatSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  readonly kind: number;
  readonly start: bigint;
  readonly end: bigint;
  readonly error: boolean;
  readonly statusMessage: string;
  readonly service: string;
  readonly attributes: Readonly<Record<string, unknown>>;
  /** Where it came from, to re-emit it as OTLP JSON. */
  readonly source: {
    resource: OtlpResourceSpans['resource'];
    scope: OtlpScopeSpans['scope'];
    span: OtlpSpan;
  };
}

export function anyValue(v: OtlpAnyValue | undefined): unknown {
  if (!v) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(anyValue);
  if (v.kvlistValue) return attributesOf(v.kvlistValue.values);
  if (v.bytesValue !== undefined) return v.bytesValue;
  return undefined;
}

export function attributesOf(kvs: OtlpKeyValue[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of kvs ?? []) out[kv.key] = anyValue(kv.value);
  return out;
}

/** OTLP/JSON ids are hex; some backends (Tempo v1) send base64. Normalise to lower-case hex. */
export function normalizeId(id: string | undefined, bytes: number): string {
  if (!id) return '';
  if (/^[0-9a-fA-F]+$/.test(id) && id.length === bytes * 2) return id.toLowerCase();
  const decoded = Buffer.from(id, 'base64');
  return decoded.length === bytes ? decoded.toString('hex') : id.toLowerCase();
}

const KINDS: Record<string, number> = {
  SPAN_KIND_UNSPECIFIED: 0,
  SPAN_KIND_INTERNAL: 1,
  SPAN_KIND_SERVER: 2,
  SPAN_KIND_CLIENT: 3,
  SPAN_KIND_PRODUCER: 4,
  SPAN_KIND_CONSUMER: 5,
};

export function flatten(data: OtlpTracesData): FlatSpan[] {
  const out: FlatSpan[] = [];
  for (const rs of data.resourceSpans ?? []) {
    const resource = attributesOf(rs.resource?.attributes);
    const service = String(resource['service.name'] ?? 'unknown_service');
    for (const ss of rs.scopeSpans ?? []) {
      for (const span of ss.spans ?? []) {
        const code = span.status?.code;
        out.push({
          traceId: normalizeId(span.traceId, 16),
          spanId: normalizeId(span.spanId, 8),
          parentSpanId: normalizeId(span.parentSpanId, 8),
          name: span.name,
          kind: typeof span.kind === 'string' ? (KINDS[span.kind] ?? 0) : (span.kind ?? 0),
          start: BigInt(span.startTimeUnixNano ?? 0),
          end: BigInt(span.endTimeUnixNano ?? 0),
          error: code === 2 || code === 'STATUS_CODE_ERROR',
          statusMessage: span.status?.message ?? '',
          service,
          attributes: attributesOf(span.attributes),
          source: { resource: rs.resource, scope: ss.scope, span },
        });
      }
    }
  }
  return out;
}

/** The spans back as one OTLP/JSON TracesData, grouped by resource and scope as they came. */
export function toOtlpJson(spans: readonly FlatSpan[]): OtlpTracesData {
  const byResource = new Map<unknown, Map<unknown, OtlpSpan[]>>();
  for (const s of spans) {
    let scopes = byResource.get(s.source.resource);
    if (!scopes) {
      scopes = new Map();
      byResource.set(s.source.resource, scopes);
    }
    const list = scopes.get(s.source.scope) ?? [];
    // Ids as OTLP JSON wants them (hex), whatever encoding the source used.
    list.push({
      ...s.source.span,
      traceId: s.traceId,
      spanId: s.spanId,
      ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
    });
    scopes.set(s.source.scope, list);
  }
  return {
    resourceSpans: [...byResource].map(([resource, scopes]) => ({
      resource: resource as OtlpResourceSpans['resource'],
      scopeSpans: [...scopes].map(([scope, list]) => ({
        scope: scope as OtlpScopeSpans['scope'],
        spans: list,
      })),
    })),
  };
}
