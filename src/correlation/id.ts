/**
 * What a correlation ID may be (SPEC §5): at most 128 characters from `[A-Za-z0-9._:-]`.
 * Anything else (CR/LF, control or non-ASCII characters, empty, too long, duplicated headers
 * joined with ", ") is replaced by a fresh ID and never echoed, logged or stored.
 */
export const MAX_CORRELATION_ID_LENGTH = 128;
export const CORRELATION_ATTRIBUTE = 'correlation.id';
export const CORRELATION_BAGGAGE_KEY = 'correlation.id';
export const DEFAULT_CORRELATION_HEADER = 'x-correlation-id';

export function isValidCorrelationId(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const n = value.length;
  if (n === 0 || n > MAX_CORRELATION_ID_LENGTH) return false;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    const ok =
      (c >= 48 && c <= 58) || // 0-9 and ':'
      (c >= 65 && c <= 90) || // A-Z
      (c >= 97 && c <= 122) || // a-z
      c === 45 || // -
      c === 46 || // .
      c === 95; // _
    if (!ok) return false;
  }
  return true;
}

/** A header name we may send: an HTTP token, lower-cased as Node stores header names. */
export function isValidHeaderName(value: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/.test(value);
}
