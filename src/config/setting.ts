/**
 * One row of the settings table: a variable, its default, how it is read, and one line saying
 * what it does. The parser, `datalab-otel config` and the test that keeps docs/configuration.md
 * in step all read the same rows.
 */
import type { Reader } from './reader';

/** The value of a setting already read (settings are read in table order). */
export type Get = <T>(setting: Setting<T>) => T;

/** A default fixed in the table, or computed from settings read before this one. */
export type Fallback<T> = T | ((get: Get) => T);

export interface Setting<T = unknown> {
  readonly env: string;
  /** The default as docs/configuration.md states it (backticks aside). */
  readonly defaultText: string;
  /** One line for `datalab-otel config --list`. */
  readonly doc: string;
  /**
   * `distro`: the distro reads it and hands the value to the SDK components it builds.
   * `exporter`: the OpenTelemetry OTLP exporters read it themselves when they are created; the
   * distro only checks the value, so that a bad one is reported like any other.
   */
  readonly readBy: 'distro' | 'exporter';
  /** How `datalab-otel config` shows a value it saw: as is, or with its secret parts redacted. */
  readonly shown: 'plain' | 'secret' | 'url' | 'headers';
  read(r: Reader, get: Get): T;
}

interface Options {
  readonly readBy?: Setting['readBy'];
  readonly shown?: Setting['shown'];
}

function resolve<T>(fallback: Fallback<T>, get: Get): T {
  return typeof fallback === 'function' ? (fallback as (get: Get) => T)(get) : fallback;
}

export function setting<T>(
  env: string,
  defaultText: string,
  doc: string,
  read: (r: Reader, get: Get) => T,
  options: Options = {},
): Setting<T> {
  return Object.freeze({
    env,
    defaultText,
    doc,
    readBy: options.readBy ?? 'distro',
    shown: options.shown ?? 'plain',
    read,
  });
}

/** A value the distro passes on untouched (or only tests for presence). */
export function text(
  env: string,
  defaultText: string,
  doc: string,
  options: Options = {},
): Setting<string | undefined> {
  return setting(env, defaultText, doc, (r) => r.raw(env), options);
}

export function int(
  env: string,
  fallback: Fallback<number>,
  range: readonly [min: number, max: number],
  doc: string,
  options: Options & { defaultText?: string } = {},
): Setting<number> {
  const defaultText = options.defaultText ?? (typeof fallback === 'number' ? String(fallback) : '');
  return setting(
    env,
    defaultText,
    doc,
    (r, get) => {
      const value = resolve(fallback, get);
      return r.int(
        env,
        value,
        range[0],
        range[1],
        value === Number.POSITIVE_INFINITY ? 'the default: no limit' : undefined,
      );
    },
    options,
  );
}

export function bool(env: string, fallback: boolean, doc: string): Setting<boolean> {
  return setting(env, String(fallback), doc, (r) => r.bool(env, fallback));
}

export function oneOf<T extends string>(
  env: string,
  allowed: readonly T[],
  fallback: Fallback<T>,
  doc: string,
  options: Options & { defaultText?: string } = {},
): Setting<T> {
  const defaultText = options.defaultText ?? (typeof fallback === 'string' ? fallback : '');
  return setting(
    env,
    defaultText,
    doc,
    (r, get) => r.oneOf(env, allowed, resolve(fallback, get)),
    options,
  );
}

export function list<T extends string>(
  env: string,
  allowed: readonly T[],
  fallback: Fallback<readonly T[]>,
  doc: string,
  options: { none?: boolean; defaultText?: string } = {},
): Setting<T[]> {
  const defaultText =
    options.defaultText ??
    (Array.isArray(fallback) ? (fallback.length === 0 ? 'none' : fallback.join(',')) : '');
  return setting(env, defaultText, doc, (r, get) =>
    r.list(env, allowed, resolve(fallback, get), { none: options.none }),
  );
}
