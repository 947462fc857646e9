/**
 * Reading one environment variable: trimmed, validated, and on a value it cannot use, one
 * DLOTEL_CONFIG_INVALID warning naming the variable, the value (quoted and cut) and what is used
 * instead. Nothing here prints: warnings are collected for the caller.
 */
import { quote, type WarningCode } from '../warnings';

export interface ConfigWarning {
  readonly code: WarningCode;
  readonly message: string;
}

export type Env = Readonly<Record<string, string | undefined>>;

export class Reader {
  readonly warnings: ConfigWarning[] = [];
  constructor(
    private readonly env: Env,
    /** Relative paths in the configuration are resolved against this directory. */
    readonly cwd: string,
  ) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    if (value === undefined) return undefined;
    const trimmed = value.trim();
    return trimmed === '' ? undefined : trimmed;
  }

  warn(message: string, code: WarningCode = 'DLOTEL_CONFIG_INVALID'): void {
    this.warnings.push({ code, message });
  }

  invalid(name: string, value: string, why: string, fallback: string): void {
    this.warn(`${name}=${quote(value)} ${why}; using ${fallback}`);
  }

  int(name: string, fallback: number, min: number, max: number, fallbackText?: string): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) {
      this.invalid(
        name,
        value,
        `is not a whole number from ${min} to ${max}`,
        fallbackText ?? `the default ${fallback}`,
      );
      return fallback;
    }
    return n;
  }

  bool(name: string, fallback: boolean): boolean {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const lower = value.toLowerCase();
    if (lower === 'true') return true;
    if (lower === 'false') return false;
    this.invalid(name, value, 'is not true or false', `the default ${fallback}`);
    return fallback;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const lower = value.toLowerCase();
    if ((allowed as readonly string[]).includes(lower)) return lower as T;
    this.invalid(name, value, `is not one of ${allowed.join(', ')}`, `the default ${fallback}`);
    return fallback;
  }

  /**
   * A comma list of names. Unknown entries are dropped with a warning and the known ones kept;
   * when none is left, the default is used, so one typo does not silently switch a whole signal
   * off. `none` alone means an empty list.
   */
  list<T extends string>(
    name: string,
    allowed: readonly T[],
    fallback: readonly T[],
    extra: { none?: boolean } = {},
  ): T[] {
    const value = this.raw(name);
    if (value === undefined) return [...fallback];
    const items = value
      .split(',')
      .map((part) => part.trim().toLowerCase())
      .filter((item) => item !== '');
    if (extra.none && items.length === 1 && items[0] === 'none') return [];
    const out: T[] = [];
    const unknown: string[] = [];
    for (const item of items) {
      if ((allowed as readonly string[]).includes(item)) {
        if (!out.includes(item as T)) out.push(item as T);
      } else unknown.push(item);
    }
    if (unknown.length === 0) return out;
    const known = `${allowed.join(', ')}${extra.none ? ', or none alone' : ''}`;
    if (out.length === 0) {
      this.invalid(
        name,
        value,
        `names nothing known (${known})`,
        fallback.length === 0 ? 'the default: none' : `the default ${fallback.join(',')}`,
      );
      return [...fallback];
    }
    this.warn(
      `${name}=${quote(value)} names ${unknown.map((u) => quote(u)).join(', ')}, not one of ${known}; using ${out.join(',')}`,
    );
    return out;
  }

  /**
   * OTEL_NODE_ENABLED_INSTRUMENTATIONS and OTEL_NODE_DISABLED_INSTRUMENTATIONS, read as
   * auto-instrumentations-node reads them: comma-separated short names, each applied on its own.
   * Unlike the other lists there is no falling back: an enabled list naming nothing known
   * enables nothing, as upstream does. The unknown names get one warning per variable, with
   * the valid names. `none` alone is an empty list, without a warning.
   */
  instrumentations<T extends string>(name: string, allowed: readonly T[]): T[] | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    const items = value
      .split(',')
      .map((part) => part.trim().toLowerCase())
      .filter((item) => item !== '');
    if (items.length === 1 && items[0] === 'none') return [];
    const out: T[] = [];
    const unknown: string[] = [];
    for (const item of items) {
      if ((allowed as readonly string[]).includes(item)) {
        if (!out.includes(item as T)) out.push(item as T);
      } else if (!unknown.includes(item)) unknown.push(item);
    }
    if (unknown.length > 0) {
      // A hostile value stays one short line: the first few names, each cut.
      const shown = unknown.slice(0, 5).map((u) => quote(u, 40));
      if (unknown.length > 5) shown.push(`and ${unknown.length - 5} more`);
      this.warn(
        `${name} names ${shown.join(', ')}, which no instrumentation is called; ${
          out.length === 0 ? 'no name in it applies' : `${out.join(',')} still apply`
        }. Valid names: ${allowed.join(', ')}`,
        'DLOTEL_UNKNOWN_INSTRUMENTATION',
      );
    }
    return out;
  }
}

/**
 * OTEL_RESOURCE_ATTRIBUTES: `key1=value1,key2=value2`, values percent-encoded (OTel spec).
 * Returns the pairs that parse; the first bad pair is reported.
 */
export function parseResourceAttributes(value: string): {
  attributes: Record<string, string>;
  error?: string;
} {
  const attributes: Record<string, string> = {};
  let error: string | undefined;
  for (const pair of value.split(',')) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    const key = eq === -1 ? '' : pair.slice(0, eq).trim();
    if (key === '') {
      error ??= `has an entry without key=value: ${quote(pair)}`;
      continue;
    }
    const rawValue = pair.slice(eq + 1).trim();
    try {
      attributes[key] = decodeURIComponent(rawValue);
    } catch {
      error ??= `has a value that is not valid percent-encoding for key ${quote(key)}`;
    }
  }
  return error === undefined ? { attributes } : { attributes, error };
}

/** "5,1,x" → error; "0.1, 0.5,1" → [0.1, 0.5, 1]. Buckets must be finite and strictly ascending. */
export function parseBuckets(value: string): number[] | undefined {
  const parts = value.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) return undefined;
  const numbers = parts.map(Number);
  for (let i = 0; i < numbers.length; i++) {
    const n = numbers[i] as number;
    if (!Number.isFinite(n) || n < 0) return undefined;
    if (i > 0 && n <= (numbers[i - 1] as number)) return undefined;
  }
  return numbers;
}
