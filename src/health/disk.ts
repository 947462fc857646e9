/**
 * The `disk_space` check (seed): free space on the filesystem holding DATALAB_HEALTH_DISK_PATH.
 * Less than 5% free is unhealthy, less than 15% degraded.
 */
import { statfs } from 'node:fs/promises';
import type { CheckOutcome } from './types';

export const DISK_UNHEALTHY_BELOW_PERCENT = 5;
export const DISK_DEGRADED_BELOW_PERCENT = 15;

export interface DiskReading {
  readonly totalBytes: number;
  /** Space an unprivileged process can still write (f_bavail), as `df` "Available" shows. */
  readonly freeBytes: number;
}

export async function readDisk(path: string): Promise<DiskReading> {
  const stats = await statfs(path);
  return { totalBytes: stats.blocks * stats.bsize, freeBytes: stats.bavail * stats.bsize };
}

export function classifyDisk(reading: DiskReading, path: string): CheckOutcome {
  if (!(reading.totalBytes > 0)) {
    return {
      status: 'unhealthy',
      message: `Disk space check failed: the filesystem at ${path} reports no capacity`,
      path,
    };
  }
  const freePercent = (reading.freeBytes / reading.totalBytes) * 100;
  const shown = freePercent.toFixed(1);
  const fields = {
    free_percent: Math.round(freePercent * 100) / 100,
    free_bytes: reading.freeBytes,
    total_bytes: reading.totalBytes,
    path,
  };
  if (freePercent < DISK_UNHEALTHY_BELOW_PERCENT) {
    return {
      status: 'unhealthy',
      message: `Critical: Only ${shown}% disk space remaining`,
      ...fields,
    };
  }
  if (freePercent < DISK_DEGRADED_BELOW_PERCENT) {
    return {
      status: 'degraded',
      message: `Warning: Only ${shown}% disk space remaining`,
      ...fields,
    };
  }
  return { status: 'healthy', message: `Disk space OK: ${shown}% free`, ...fields };
}

export function diskSpaceCheck(path: string): () => Promise<CheckOutcome> {
  return async () => {
    try {
      return classifyDisk(await readDisk(path), path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return {
        status: 'unhealthy',
        message: `Disk space check failed: ${code ?? (err as Error).message} (${path})`,
        path,
      };
    }
  };
}
