/**
 * The embedded default trace store: with no OTLP endpoint configured, spans are written as OTLP
 * JSON lines (the Collector file exporter's format: one ExportTraceServiceRequest per line) to
 * DATALAB_TRACES_DIR, so that `datalab-otel trace <id>` works on a single machine with nothing
 * else installed.
 *
 * Never blocks the event loop on disk: lines are appended by an asynchronous queue, one write at
 * a time; a full queue drops the batch (and says so) rather than growing without bound. Each
 * process writes its own file, rotated by size; the oldest files of the directory are deleted
 * while the total exceeds the cap.
 */
import { appendFileSync, promises as fs, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { JsonTraceSerializer as Serializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';

export interface FileExporterOptions {
  readonly dir: string;
  /** Total size of the directory's trace files, in bytes. */
  readonly maxTotalBytes: number;
  /** A file is rotated when it reaches this size (default: a fifth of the total). */
  readonly maxFileBytes?: number;
  /** Distinguishes this process's files from other services writing to the same directory. */
  readonly name: string;
  /** Batches waiting for the disk before new ones are dropped. */
  readonly maxPendingBatches?: number;
}

export const TRACE_FILE_PREFIX = 'traces-';
export const TRACE_FILE_SUFFIX = '.jsonl';

const decoder = new TextDecoder();

// Required on the first export, not at start-up: the transformer is ~35 modules.
let serializer: typeof Serializer | undefined;
function jsonSerializer(): typeof Serializer {
  serializer ??= (
    require('@opentelemetry/otlp-transformer') as typeof import('@opentelemetry/otlp-transformer')
  ).JsonTraceSerializer;
  return serializer;
}

/** Keeps file names to characters every filesystem accepts. */
export function safeFileName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64) || 'service';
}

export class FileSpanExporter implements SpanExporter {
  private readonly maxFileBytes: number;
  private readonly maxPending: number;
  private current: string | undefined;
  private currentBytes = 0;
  private sequence = 0;
  private queue: Promise<void> = Promise.resolve();
  private pending = 0;
  private ready: Promise<void> | undefined;
  private stopped = false;
  /** Lines accepted and not yet being written: what exportSync writes at exit. */
  private readonly unwritten = new Set<{ readonly line: string }>();

  constructor(private readonly options: FileExporterOptions) {
    this.maxFileBytes =
      options.maxFileBytes ?? Math.max(1024, Math.floor(options.maxTotalBytes / 5));
    this.maxPending = options.maxPendingBatches ?? 64;
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    if (this.stopped) {
      done({ code: ExportResultCode.FAILED, error: new Error('trace file exporter is shut down') });
      return;
    }
    if (this.pending >= this.maxPending) {
      done({ code: ExportResultCode.FAILED, error: new Error('trace file writes are backed up') });
      return;
    }
    let line: string;
    try {
      const bytes = jsonSerializer().serializeRequest(spans);
      if (!bytes) throw new Error('spans could not be serialised');
      line = `${decoder.decode(bytes)}\n`;
    } catch (error) {
      done({ code: ExportResultCode.FAILED, error: error as Error });
      return;
    }
    this.pending++;
    // An object per batch, so that two identical batches stay two entries.
    const entry = { line };
    this.unwritten.add(entry);
    this.queue = this.queue
      .then(() => this.append(entry))
      .then(
        () => done({ code: ExportResultCode.SUCCESS }),
        (error: Error) => done({ code: ExportResultCode.FAILED, error }),
      )
      .finally(() => {
        this.pending--;
      });
  }

  async forceFlush(): Promise<void> {
    await this.queue;
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    await this.queue;
  }

  /**
   * At process exit (exit-flush.ts), where nothing asynchronous runs any more: the lines still
   * waiting for the disk and `spans`, appended synchronously to the current file. The size cap
   * is checked again by the next process's first rotation.
   */
  exportSync(spans: ReadableSpan[]): void {
    let text = '';
    for (const entry of this.unwritten) text += entry.line;
    this.unwritten.clear();
    if (spans.length > 0) {
      const bytes = jsonSerializer().serializeRequest(spans);
      if (bytes) text += `${decoder.decode(bytes)}\n`;
    }
    this.stopped = true;
    if (text === '') return;
    mkdirSync(this.options.dir, { recursive: true });
    const size = Buffer.byteLength(text);
    if (this.current === undefined || this.currentBytes + size > this.maxFileBytes) {
      this.current = join(
        this.options.dir,
        `${TRACE_FILE_PREFIX}${safeFileName(this.options.name)}-${process.pid}-${Date.now()}-${this.sequence++}${TRACE_FILE_SUFFIX}`,
      );
      this.currentBytes = 0;
    }
    appendFileSync(this.current, text);
    this.currentBytes += size;
  }

  private async append(entry: { readonly line: string }): Promise<void> {
    const line = entry.line;
    this.ready ??= fs.mkdir(this.options.dir, { recursive: true }).then(() => undefined);
    await this.ready;
    const size = Buffer.byteLength(line);
    if (this.current === undefined || this.currentBytes + size > this.maxFileBytes) {
      this.current = join(
        this.options.dir,
        `${TRACE_FILE_PREFIX}${safeFileName(this.options.name)}-${process.pid}-${Date.now()}-${this.sequence++}${TRACE_FILE_SUFFIX}`,
      );
      this.currentBytes = 0;
      // Room for the whole new file, so the directory never exceeds the cap.
      await this.enforceCap(Math.max(size, this.maxFileBytes));
    }
    // From here the write is under way: exportSync at exit must not write the line again.
    if (!this.unwritten.delete(entry)) return;
    await fs.appendFile(this.current, line);
    this.currentBytes += size;
  }

  /** Deletes the oldest trace files until the new line fits under the total cap. */
  private async enforceCap(incoming: number): Promise<void> {
    const names = (await fs.readdir(this.options.dir)).filter(
      (n) => n.startsWith(TRACE_FILE_PREFIX) && n.endsWith(TRACE_FILE_SUFFIX),
    );
    const files = await Promise.all(
      names.map(async (n) => {
        const path = join(this.options.dir, n);
        const stat = await fs.stat(path).catch(() => undefined);
        return { path, size: stat?.size ?? 0, mtime: stat?.mtimeMs ?? 0 };
      }),
    );
    files.sort((a, b) => a.mtime - b.mtime || a.path.localeCompare(b.path));
    let total = files.reduce((n, f) => n + f.size, 0) + incoming;
    for (const f of files) {
      if (total <= this.options.maxTotalBytes) break;
      await fs.rm(f.path, { force: true });
      total -= f.size;
    }
  }
}
