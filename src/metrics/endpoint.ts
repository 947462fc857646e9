/**
 * Pure functions that turn a request into the `method` and `endpoint` label values.
 * They run once per request, so they avoid regexes on the common path and allocate only
 * when a segment actually changes.
 */

/** The endpoint value counted once the cap on distinct endpoints is reached. */
export const OVERFLOW_ENDPOINT = '__overflow__';

/**
 * The endpoint value of a request a framework router handled and matched to no route (a 404, a
 * scanner's probe): one series for all of them, so unrouted paths never spend the cap that real
 * routes need. Plain node:http, which has no router, keeps the normalised path.
 */
export const UNMATCHED_ENDPOINT = '__unmatched__';

/** Paths longer than this are not worth a series of their own (scanners, garbage). */
export const MAX_ENDPOINT_LENGTH = 256;

/** RFC 9110's methods and PATCH: the `method` label's values besides `_OTHER`. */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
]);

/** Upper-case HTTP method; anything outside RFC 9110 + PATCH becomes `_OTHER` (OTel's rule). */
export function normalizeMethod(method: string | undefined): string {
  if (method === undefined) return '_OTHER';
  if (KNOWN_METHODS.has(method)) return method;
  const upper = method.toUpperCase();
  return KNOWN_METHODS.has(upper) ? upper : '_OTHER';
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LONG_HEX = /^[0-9a-f]{16,}$/i;

function isDigits(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** Numbers, UUIDs and long hex strings (object ids, hashes) identify a resource, not a route. */
export function isIdSegment(segment: string): boolean {
  if (isDigits(segment)) return true;
  if (segment.length === 36 && UUID.test(segment)) return true;
  return segment.length >= 16 && LONG_HEX.test(segment);
}

/**
 * `/users/42/orders/7f9c…?page=2` → `/users/:id/orders/:id`. Used when no framework matched a
 * route template. The query string and fragment are dropped; an empty path becomes `/`.
 */
export function normalizePath(url: string | undefined): string {
  if (!url) return '/';
  let end = url.length;
  const q = url.indexOf('?');
  if (q !== -1) end = q;
  const h = url.indexOf('#');
  if (h !== -1 && h < end) end = h;
  let path = end === url.length ? url : url.slice(0, end);
  // Absolute-form request targets (`GET http://host/path`) carry a scheme and host.
  if (path.charCodeAt(0) !== 47 /* / */) {
    const scheme = path.indexOf('://');
    if (scheme !== -1) {
      const slash = path.indexOf('/', scheme + 3);
      path = slash === -1 ? '/' : path.slice(slash);
    }
  }
  if (path === '' || path === '/') return '/';
  const segments = path.split('/');
  let changed = false;
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i] as string;
    if (s !== '' && isIdSegment(s)) {
      segments[i] = ':id';
      changed = true;
    }
  }
  return changed ? segments.join('/') : path;
}

/**
 * Admits at most `cap` distinct normalised paths; every later one is counted as
 * OVERFLOW_ENDPOINT, so a scanner cannot explode the series count. Route templates a framework
 * matched are finite (they are in the application's code) and always admitted, so a scan that
 * used up the cap does not hide the real routes seen after it.
 */
export class EndpointRegistry {
  private readonly seen = new Set<string>();
  private overflowed = false;

  constructor(
    private readonly cap: number,
    private readonly onFirstOverflow: (endpoint: string) => void = () => {},
  ) {}

  admit(endpoint: string, isRouteTemplate = false): string {
    if (this.seen.has(endpoint)) return endpoint;
    if (endpoint.length > MAX_ENDPOINT_LENGTH) return OVERFLOW_ENDPOINT;
    if (isRouteTemplate) return endpoint;
    if (this.seen.size >= this.cap) {
      if (!this.overflowed) {
        this.overflowed = true;
        this.onFirstOverflow(endpoint);
      }
      return OVERFLOW_ENDPOINT;
    }
    this.seen.add(endpoint);
    return endpoint;
  }

  get size(): number {
    return this.seen.size;
  }
}
