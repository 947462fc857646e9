/**
 * The `memory` check (seed): used memory above 90% is unhealthy, above 80% degraded.
 *
 * Container-aware: inside a cgroup with a memory limit, the OOM killer acts on the cgroup's
 * usage against its limit, not on the host's free memory, so that is what is measured. Usage is
 * the working set (usage minus inactive file cache, which the kernel reclaims before killing:
 * what kubelet reports as container_memory_working_set_bytes). Without a limit (or with one
 * above the host's memory), the host is measured as the seed did with psutil: total minus
 * available.
 *
 * Everything is read through an injected file reader so that the cgroup v1/v2 layouts can be
 * unit-tested with made-up readings.
 */
import { readFileSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import type { CheckOutcome } from './types';

export const MEMORY_UNHEALTHY_ABOVE_PERCENT = 90;
export const MEMORY_DEGRADED_ABOVE_PERCENT = 80;

export type FileReader = (path: string) => string | undefined;

export function readFileOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export interface CgroupMemory {
  readonly version: 1 | 2;
  /** The cgroup directory whose limit applies (the tightest one on the way to the root). */
  readonly dir: string;
  readonly limitBytes: number;
  readonly usageBytes: number;
  readonly inactiveFileBytes: number;
}

export interface MemoryReading {
  readonly usedBytes: number;
  readonly limitBytes: number;
  readonly source: 'cgroup' | 'host';
}

/** cgroup v1 writes "no limit" as a huge page-rounded number (9223372036854771712). */
const V1_UNLIMITED = 2 ** 60;

interface Mount {
  readonly root: string;
  readonly mountPoint: string;
}

/** /proc/self/cgroup → the v2 path (`0::/x`) and the v1 memory controller's path. */
export function parseProcCgroup(text: string): { v2?: string; v1?: string } {
  const out: { v2?: string; v1?: string } = {};
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first === -1 || second === -1) continue;
    const id = line.slice(0, first);
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1).trim();
    if (id === '0' && controllers === '') out.v2 = path;
    else if (controllers.split(',').includes('memory')) out.v1 = path;
  }
  return out;
}

function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_m, octal: string) =>
    String.fromCharCode(Number.parseInt(octal, 8)),
  );
}

/** /proc/self/mountinfo → where the cgroup2 hierarchy and the v1 memory hierarchy are mounted. */
export function parseMountinfo(text: string): { v2?: Mount; v1?: Mount } {
  const out: { v2?: Mount; v1?: Mount } = {};
  for (const line of text.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash === -1) continue;
    const fields = line.slice(0, dash).split(' ');
    const [fsType, , superOptions = ''] = line
      .slice(dash + 3)
      .trim()
      .split(' ');
    const root = fields[3];
    const mountPoint = fields[4];
    if (root === undefined || mountPoint === undefined) continue;
    const mount = { root: unescapeMountPath(root), mountPoint: unescapeMountPath(mountPoint) };
    if (fsType === 'cgroup2') out.v2 ??= mount;
    else if (fsType === 'cgroup' && superOptions.split(',').includes('memory')) out.v1 ??= mount;
  }
  return out;
}

/**
 * The directory of `cgroupPath` under `mount`. In a container the mount's root is usually the
 * container's own cgroup (v1) or the namespace root shows as `/` (v2 with cgroupns); a path
 * outside the mount's root means the mount point itself is the closest view we have.
 */
function cgroupDir(mount: Mount, cgroupPath: string): string {
  const base = mount.mountPoint.replace(/\/+$/, '');
  const root = mount.root === '/' ? '' : mount.root.replace(/\/+$/, '');
  let rel: string;
  if (root === '') rel = cgroupPath;
  else if (cgroupPath === root) rel = '';
  else if (cgroupPath.startsWith(`${root}/`)) rel = cgroupPath.slice(root.length);
  else rel = '';
  rel = rel.replace(/\/+$/, '');
  return rel === '' || rel === '/' ? base : `${base}${rel}`;
}

function parseBytes(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (trimmed === 'max') return Number.POSITIVE_INFINITY;
  if (!/^\d+$/.test(trimmed)) return undefined;
  return Number(trimmed);
}

function statField(text: string | undefined, names: readonly string[]): number {
  if (text === undefined) return 0;
  for (const name of names) {
    const match = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
    if (match?.[1] !== undefined) return Number(match[1]);
  }
  return 0;
}

const FILES = {
  2: { limit: 'memory.max', usage: 'memory.current', inactive: ['inactive_file'] },
  1: {
    limit: 'memory.limit_in_bytes',
    usage: 'memory.usage_in_bytes',
    inactive: ['total_inactive_file', 'inactive_file'],
  },
} as const;

/** The tightest finite limit from the process's cgroup up to the hierarchy's root. */
function tightestLimit(
  read: FileReader,
  version: 1 | 2,
  mount: Mount,
  cgroupPath: string,
): CgroupMemory | undefined {
  const files = FILES[version];
  const top = mount.mountPoint.replace(/\/+$/, '');
  let dir = cgroupDir(mount, cgroupPath);
  let best: CgroupMemory | undefined;
  for (;;) {
    const limit = parseBytes(read(`${dir}/${files.limit}`));
    const usage = parseBytes(read(`${dir}/${files.usage}`));
    const finite =
      limit !== undefined &&
      Number.isFinite(limit) &&
      (version === 2 || limit < V1_UNLIMITED) &&
      limit > 0;
    if (finite && usage !== undefined && (best === undefined || limit < best.limitBytes)) {
      best = {
        version,
        dir,
        limitBytes: limit,
        usageBytes: usage,
        inactiveFileBytes: statField(read(`${dir}/memory.stat`), files.inactive),
      };
    }
    if (dir === top || dir.length <= top.length) break;
    const parent = dir.slice(0, dir.lastIndexOf('/'));
    dir = parent.length < top.length ? top : parent;
  }
  return best;
}

/** The cgroup memory limit that applies to this process, if any (v2 preferred over v1). */
export function readCgroupMemory(read: FileReader): CgroupMemory | undefined {
  const procCgroup = read('/proc/self/cgroup');
  const mountinfo = read('/proc/self/mountinfo');
  if (procCgroup === undefined || mountinfo === undefined) return undefined;
  const paths = parseProcCgroup(procCgroup);
  const mounts = parseMountinfo(mountinfo);
  if (paths.v2 !== undefined && mounts.v2) {
    const v2 = tightestLimit(read, 2, mounts.v2, paths.v2);
    if (v2) return v2;
  }
  if (paths.v1 !== undefined && mounts.v1) return tightestLimit(read, 1, mounts.v1, paths.v1);
  return undefined;
}

/** /proc/meminfo MemTotal and MemAvailable, else what libuv reports. */
export function readHostMemory(read: FileReader): { totalBytes: number; availableBytes: number } {
  const text = read('/proc/meminfo');
  const kb = (name: string) => {
    const match = text === undefined ? null : new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return match?.[1] === undefined ? undefined : Number(match[1]) * 1024;
  };
  const total = kb('MemTotal');
  const available = kb('MemAvailable');
  if (total !== undefined && available !== undefined) {
    return { totalBytes: total, availableBytes: available };
  }
  return { totalBytes: totalmem(), availableBytes: freemem() };
}

export interface MemorySources {
  readonly read?: FileReader;
  /** process.constrainedMemory(): the limit libuv found, used when the files are unreadable. */
  readonly constrained?: number;
  /** The process's resident set size, the usage estimate when only the limit is known. */
  readonly rss?: number;
}

export function readMemory(sources: MemorySources = {}): MemoryReading {
  const read = sources.read ?? readFileOrUndefined;
  const host = readHostMemory(read);
  const cgroup = readCgroupMemory(read);
  if (cgroup && cgroup.limitBytes < host.totalBytes) {
    return {
      usedBytes: Math.max(0, cgroup.usageBytes - cgroup.inactiveFileBytes),
      limitBytes: cgroup.limitBytes,
      source: 'cgroup',
    };
  }
  // No readable cgroup files (some sandboxes hide /sys/fs/cgroup) but libuv knows a limit:
  // this process's RSS against it is the best available estimate.
  const constrained = sources.constrained;
  if (
    cgroup === undefined &&
    constrained !== undefined &&
    constrained > 0 &&
    constrained < host.totalBytes &&
    sources.rss !== undefined
  ) {
    return { usedBytes: sources.rss, limitBytes: constrained, source: 'cgroup' };
  }
  return {
    usedBytes: Math.max(0, host.totalBytes - host.availableBytes),
    limitBytes: host.totalBytes,
    source: 'host',
  };
}

export function classifyMemory(reading: MemoryReading): CheckOutcome {
  if (!(reading.limitBytes > 0)) {
    return { status: 'unhealthy', message: 'Memory check failed: no memory total reported' };
  }
  const usedPercent = (reading.usedBytes / reading.limitBytes) * 100;
  const shown = usedPercent.toFixed(1);
  const fields = {
    used_percent: Math.round(usedPercent * 100) / 100,
    used_bytes: reading.usedBytes,
    limit_bytes: reading.limitBytes,
    source: reading.source,
  };
  if (usedPercent > MEMORY_UNHEALTHY_ABOVE_PERCENT) {
    return { status: 'unhealthy', message: `Critical: ${shown}% memory usage`, ...fields };
  }
  if (usedPercent > MEMORY_DEGRADED_ABOVE_PERCENT) {
    return { status: 'degraded', message: `Warning: ${shown}% memory usage`, ...fields };
  }
  return { status: 'healthy', message: `Memory usage OK: ${shown}%`, ...fields };
}

function constrainedMemory(): number | undefined {
  const fn = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory;
  try {
    const value = fn?.call(process);
    // 0 or 2^64 (and anything at or above it) means "no limit".
    return value !== undefined && value > 0 && value < 2 ** 63 ? value : undefined;
  } catch {
    return undefined;
  }
}

export function memoryCheck(): () => CheckOutcome {
  return () => {
    try {
      return classifyMemory(
        readMemory({ constrained: constrainedMemory(), rss: process.memoryUsage.rss() }),
      );
    } catch (err) {
      return {
        status: 'unhealthy',
        message: `Memory check failed: ${err instanceof Error ? err.message : String(err)}`,
      };
    }
  };
}
