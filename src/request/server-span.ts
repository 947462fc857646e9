/**
 * The server span of an inbound node:http request, as instrumentation-http makes it: the same
 * name, kind, attributes, status and exception events, built in one object when the request
 * enters and a few property writes when it ends (test/e2e/golden-spans.test.ts compares both
 * against the upstream instrumentation). instrumentation-http parses every request URL with
 * `new URL()`, captures headers through closures, builds two attribute objects per request and
 * re-reads the context at the end; the common case here (a path without a query, a plain Host
 * header, no proxy headers) does none of that, and the uncommon ones take the same steps as
 * upstream.
 */
import type { IncomingMessage } from 'node:http';
import { type Attributes, type Span, SpanStatusCode } from '@opentelemetry/api';
import { KNOWN_METHODS as HTTP_METHODS } from '../metrics/endpoint';

/**
 * The methods instrumentation-http knows: the metrics' list and QUERY (the `method` label keeps
 * its own list: a new value there is a contract change). Others are `_OTHER`.
 */
const KNOWN_METHODS: ReadonlySet<string> = new Set([...HTTP_METHODS, 'QUERY']);

export function spanMethod(method: string | undefined | null): string {
  if (method == null) return 'GET';
  if (KNOWN_METHODS.has(method)) return method;
  const upper = method.toUpperCase();
  return KNOWN_METHODS.has(upper) ? upper : '_OTHER';
}

/** Query parameters instrumentation-http redacts by default. */
const REDACTED_PARAMS = [
  'sig',
  'Signature',
  'AWSAccessKeyId',
  'X-Goog-Signature',
  'X-Amz-Signature',
  'X-Amz-Credential',
  'X-Amz-Security-Token',
];

/** A path WHATWG URL parsing returns unchanged: only RFC 3986 unreserved characters and `/`,
 * no dot segment. Anything else goes through `new URL()` as upstream does. */
function isPlainPath(path: string): boolean {
  if (path.charCodeAt(0) !== 47 /* / */) return false;
  let previous = 47;
  for (let i = 1; i < path.length; i++) {
    const c = path.charCodeAt(i);
    const ok =
      (c >= 97 && c <= 122) || // a-z
      (c >= 65 && c <= 90) || // A-Z
      (c >= 48 && c <= 57) || // 0-9
      c === 45 || // -
      c === 95 || // _
      c === 126 || // ~
      c === 47 ||
      (c === 46 && previous !== 47); // a dot, but not one that may start a dot segment
    if (!ok) return false;
    previous = c;
  }
  // A trailing `.` after `/` is handled above; `/a/.` never gets here.
  return true;
}

/** Host header characters that WHATWG URL keeps as they are in a hostname (lower-case). */
function isPlainHost(host: string): boolean {
  if (host.length === 0) return false;
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    const ok = (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 58; // a-z 0-9 - . :
    if (!ok) return false;
  }
  return true;
}

interface ParsedUrl {
  pathname?: string;
  search?: string;
}

function parseUrl(component: string, request: IncomingMessage): ParsedUrl {
  const url = request.url ?? '/';
  const host = request.headers.host;
  // The fast path: what `new URL(url, base)` would give, without building it.
  if (url.indexOf('?') === -1 && isPlainPath(url) && (host === undefined || isPlainHost(host))) {
    return { pathname: url, search: '' };
  }
  try {
    const parsed = new URL(url, `${component}://${host ? host : 'localhost'}`);
    return { pathname: parsed.pathname, search: parsed.search };
  } catch {
    return {};
  }
}

function redactQuery(search: string): string {
  const params = new URLSearchParams(search);
  for (const param of REDACTED_PARAMS) if (params.has(param)) params.set(param, 'REDACTED');
  return params.toString();
}

interface HostPort {
  host: string;
  port?: string;
}

/** instrumentation-http's reading of a Host (or forwarded host) value, unchanged. */
export function parseHostHeader(hostHeader: string, proto?: string): HostPort {
  const parts = hostHeader.split(':');
  if (parts.length === 1) {
    if (proto === 'http') return { host: parts[0] as string, port: '80' };
    if (proto === 'https') return { host: parts[0] as string, port: '443' };
    return { host: parts[0] as string };
  }
  if (parts.length === 2) return { host: parts[0] as string, port: parts[1] };
  if ((parts[0] as string).startsWith('[')) {
    if ((parts[parts.length - 1] as string).endsWith(']')) {
      if (proto === 'http') return { host: hostHeader, port: '80' };
      if (proto === 'https') return { host: hostHeader, port: '443' };
    } else if ((parts[parts.length - 2] as string).endsWith(']')) {
      return { host: parts.slice(0, -1).join(':'), port: parts[parts.length - 1] };
    }
  }
  return { host: hostHeader };
}

type ForwardedEntry = { host?: string; proto?: string; for?: string };
let parseForwarded: ((header: string) => ForwardedEntry[]) | undefined;

/** RFC 7239 `Forwarded`, parsed by the library instrumentation-http uses (rare: loaded on first use). */
function forwardedEntries(header: string): ForwardedEntry[] {
  try {
    parseForwarded ??= (require('forwarded-parse') as { parse(h: string): ForwardedEntry[] }).parse;
    return parseForwarded(header);
  } catch {
    return [];
  }
}

function firstString(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : Array.isArray(value) ? value[0] : undefined;
}

function serverAddress(request: IncomingMessage, component: string): HostPort | undefined {
  const headers = request.headers;
  const forwarded = headers.forwarded;
  if (forwarded) {
    for (const entry of forwardedEntries(forwarded)) {
      if (entry.host) return parseHostHeader(entry.host, entry.proto);
    }
  }
  const xHost = headers['x-forwarded-host'] as string | string[] | undefined;
  if (
    typeof xHost === 'string' ||
    (Array.isArray(xHost) && typeof xHost[0] === 'string' && xHost[0].length > 0)
  ) {
    const host = typeof xHost === 'string' ? xHost : (xHost[0] as string);
    return parseHostHeader(host, firstString(headers['x-forwarded-proto']));
  }
  const host = headers.host;
  if (typeof host === 'string' && host.length > 0) return parseHostHeader(host, component);
  return undefined;
}

function removePort(input: string): string {
  try {
    const { hostname } = new URL(`http://${input}`);
    return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  } catch {
    return input;
  }
}

function clientAddress(request: IncomingMessage): string | undefined {
  const headers = request.headers;
  const forwarded = headers.forwarded;
  if (forwarded) {
    for (const entry of forwardedEntries(forwarded)) if (entry.for) return removePort(entry.for);
  }
  const xff = headers['x-forwarded-for'];
  if (xff) {
    const first = firstString(xff);
    if (typeof first === 'string') return removePort((first.split(',')[0] as string).trim());
  }
  return request.socket.remoteAddress || undefined;
}

/**
 * The attributes instrumentation-http gives a server span when the request enters (semantic
 * conventions 1.27 names), in one object: keys with no value are left out rather than set to
 * undefined, which the SDK would drop anyway.
 */
export function serverSpanAttributes(request: IncomingMessage, component: string): Attributes {
  const method = request.method;
  const normalized = spanMethod(method);
  const socket = request.socket;
  const attributes: Attributes = {
    'http.request.method': normalized,
    'url.scheme': component,
  };
  const server = serverAddress(request, component);
  if (server?.host !== undefined) attributes['server.address'] = server.host;
  if (socket.remoteAddress !== undefined) attributes['network.peer.address'] = socket.remoteAddress;
  if (socket.remotePort !== undefined) attributes['network.peer.port'] = socket.remotePort;
  attributes['network.protocol.version'] = request.httpVersion;
  const userAgent = request.headers['user-agent'];
  if (userAgent !== undefined) attributes['user_agent.original'] = userAgent;
  const url = parseUrl(component, request);
  if (url.pathname != null) attributes['url.path'] = url.pathname;
  if (url.search) attributes['url.query'] = redactQuery(url.search.slice(1));
  const client = clientAddress(request);
  if (client != null) attributes['client.address'] = client;
  if (server?.port != null) attributes['server.port'] = Number(server.port);
  if (method !== normalized) attributes['http.request.method_original'] = method;
  return attributes;
}

/**
 * Ends a server span the way instrumentation-http does when the response closes, with the
 * distro's reading of an unanswered response (`status`: 499, 408 or 500 when nothing was sent,
 * see metrics/outcome.ts) in place of the default 200 upstream would report.
 */
export function endServerSpan(
  span: Span,
  method: string | undefined,
  route: string | undefined,
  status: number,
): void {
  span.setAttribute('http.response.status_code', status);
  if (route !== undefined) span.setAttribute('http.route', route);
  if (!(status >= 100 && status < 500)) span.setStatus({ code: SpanStatusCode.ERROR });
  if (status >= 500 && status < 600) span.setAttribute('error.type', String(status));
  if (route) span.updateName(`${method || 'GET'} ${route}`);
  span.end();
}

/** An error thrown by the handler or emitted by the response, as upstream records it. */
export function failServerSpan(span: Span, error: unknown): void {
  const err = error instanceof Error ? error : new Error(String(error));
  span.setAttribute('error.type', err.name);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  span.recordException(err);
  span.end();
}
