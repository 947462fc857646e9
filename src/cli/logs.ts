/** `--logs <file>`: the JSON log lines of a request, by correlation_id or trace_id, in time order. */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

export interface MatchedLogLine {
  readonly time: number;
  readonly text: string;
}

export async function matchingLogLines(
  files: readonly string[],
  correlationIds: ReadonlySet<string>,
  traceIds: ReadonlySet<string>,
): Promise<MatchedLogLine[]> {
  const needles = [...correlationIds, ...traceIds];
  const out: MatchedLogLine[] = [];
  for (const file of files) {
    const lines = createInterface({
      input: createReadStream(file),
      crlfDelay: Number.POSITIVE_INFINITY,
    });
    for await (const line of lines) {
      if (!line.startsWith('{') || !needles.some((n) => line.includes(n))) continue;
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        const corr = record.correlation_id;
        const trace = record.trace_id;
        if (
          (typeof corr === 'string' && correlationIds.has(corr)) ||
          (typeof trace === 'string' && traceIds.has(trace))
        ) {
          const time =
            typeof record.timestamp === 'number'
              ? record.timestamp * 1000
              : Date.parse(String(record.iso_timestamp ?? record.timestamp ?? '')) || 0;
          out.push({ time, text: line });
        }
      } catch {
        // Not JSON: not a log line of ours.
      }
    }
  }
  return out.sort((a, b) => a.time - b.time);
}
