/**
 * The part of npm's semver that instrumentations' `supportedVersions` use: `||`, hyphen ranges,
 * comparators, `^`, `~` and x-ranges, with npm's rule for prereleases. The doctor decides with
 * it whether a library will be patched; @opentelemetry/instrumentation has the same checker but
 * does not export it, and the distro ships no semver package of its own.
 */

type Version = readonly [number, number, number, readonly string[]];

interface Comparator {
  readonly op: '<' | '<=' | '>' | '>=' | '=';
  readonly version: Version;
  /** Written in the range (not an implied bound): a prerelease of its version may match. */
  readonly explicit: boolean;
}

const VERSION = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;
const PARTIAL =
  /^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

export function parseVersion(text: string): Version | undefined {
  const m = VERSION.exec(text.trim());
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3]), m[4] ? m[4].split('.') : []];
}

function compareIdentifiers(a: string, b: string): number {
  const an = /^\d+$/.test(a);
  const bn = /^\d+$/.test(b);
  if (an && bn) return Math.sign(Number(a) - Number(b));
  if (an) return -1;
  if (bn) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function compareVersions(a: Version, b: Version): number {
  for (let i = 0; i < 3; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return Math.sign(d);
  }
  const [pa, pb] = [a[3], b[3]];
  // A release sorts after its prereleases.
  if (pa.length === 0 && pb.length === 0) return 0;
  if (pa.length === 0) return 1;
  if (pb.length === 0) return -1;
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    if (pa[i] === undefined) return -1;
    if (pb[i] === undefined) return 1;
    const d = compareIdentifiers(pa[i] as string, pb[i] as string);
    if (d !== 0) return d;
  }
  return 0;
}

/** `1.2` → [1, 2, undefined]; `x` parts are undefined. */
type Partial = [number | undefined, number | undefined, number | undefined, readonly string[]];

function parsePartial(text: string): Partial | undefined {
  if (text === '' || text === '*') return [undefined, undefined, undefined, []];
  const m = PARTIAL.exec(text);
  if (!m) return undefined;
  const n = (s: string | undefined) =>
    s === undefined || /^[xX*]$/.test(s) ? undefined : Number(s);
  const major = n(m[1]);
  const minor = major === undefined ? undefined : n(m[2]);
  const patch = minor === undefined ? undefined : n(m[3]);
  return [major, minor, patch, patch !== undefined && m[4] ? m[4].split('.') : []];
}

/** The lowest prerelease of a version: an exclusive upper bound that also shuts out prereleases. */
const floor = (major: number, minor: number, patch: number): Version => [
  major,
  minor,
  patch,
  ['0'],
];
const exact = (p: Partial): Version => [p[0] ?? 0, p[1] ?? 0, p[2] ?? 0, p[3]];

function comparators(token: string): Comparator[] | undefined {
  const m = /^(<=|>=|<|>|=|\^|~>?)?\s*(.*)$/.exec(token);
  const op = m?.[1] ?? '';
  const p = parsePartial(m?.[2] ?? '');
  if (p === undefined) return undefined;
  const [major, minor, patch] = p;
  const lower = (v: Version, explicit = true): Comparator => ({ op: '>=', version: v, explicit });
  const upper = (v: Version): Comparator => ({ op: '<', version: v, explicit: false });
  if (major === undefined) return op === '<' || op === '>' ? [upper(floor(0, 0, 0))] : [];
  switch (op) {
    case '^': {
      const to =
        major > 0 || minor === undefined
          ? floor(major + 1, 0, 0)
          : minor > 0 || patch === undefined
            ? floor(0, minor + 1, 0)
            : floor(0, 0, patch + 1);
      return [lower(exact(p)), upper(to)];
    }
    case '~':
    case '~>':
      return [
        lower(exact(p)),
        upper(minor === undefined ? floor(major + 1, 0, 0) : floor(major, minor + 1, 0)),
      ];
    case '>':
      if (patch !== undefined) return [{ op: '>', version: exact(p), explicit: true }];
      return [
        lower(minor === undefined ? [major + 1, 0, 0, []] : [major, minor + 1, 0, []], false),
      ];
    case '>=':
      return [lower(exact(p))];
    case '<':
      return [
        {
          op: '<',
          version: patch === undefined ? floor(major, minor ?? 0, 0) : exact(p),
          explicit: true,
        },
      ];
    case '<=':
      if (patch !== undefined) return [{ op: '<=', version: exact(p), explicit: true }];
      return [upper(minor === undefined ? floor(major + 1, 0, 0) : floor(major, minor + 1, 0))];
    default:
      if (patch !== undefined) return [{ op: '=', version: exact(p), explicit: true }];
      return [
        lower(exact(p)),
        upper(minor === undefined ? floor(major + 1, 0, 0) : floor(major, minor + 1, 0)),
      ];
  }
}

/** One `||` alternative, as comparators; undefined when it does not parse. */
function comparatorSet(text: string): Comparator[] | undefined {
  const hyphen = /^(\S+)\s+-\s+(\S+)$/.exec(text);
  if (hyphen) {
    const from = comparators(`>=${hyphen[1]}`);
    const to = comparators(`<=${hyphen[2]}`);
    return from && to ? [...from, ...to] : undefined;
  }
  // `>= 1.2` and `>=1.2` alike.
  const tokens = text
    .replace(/(<=|>=|<|>|=|\^|~>?)\s+/g, '$1')
    .split(/\s+/)
    .filter(Boolean);
  const out: Comparator[] = [];
  for (const token of tokens) {
    const c = comparators(token);
    if (c === undefined) return undefined;
    out.push(...c);
  }
  return out;
}

function test(c: Comparator, v: Version): boolean {
  const d = compareVersions(v, c.version);
  switch (c.op) {
    case '<':
      return d < 0;
    case '<=':
      return d <= 0;
    case '>':
      return d > 0;
    case '>=':
      return d >= 0;
    default:
      return d === 0;
  }
}

/** Whether `version` satisfies `range` (npm semantics); an unparsable one satisfies nothing. */
export function satisfies(version: string, range: string, includePrerelease = false): boolean {
  const v = parseVersion(version);
  if (v === undefined) return false;
  for (const alternative of range.split('||')) {
    const set = comparatorSet(alternative.trim());
    if (set === undefined || !set.every((c) => test(c, v))) continue;
    if (v[3].length === 0 || includePrerelease) return true;
    // npm: a prerelease matches only a comparator that names a prerelease of the same version.
    if (
      set.some(
        (c) =>
          c.explicit &&
          c.version[3].length > 0 &&
          c.version[0] === v[0] &&
          c.version[1] === v[1] &&
          c.version[2] === v[2],
      )
    ) {
      return true;
    }
  }
  return false;
}
