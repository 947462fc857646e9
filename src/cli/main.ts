#!/usr/bin/env node
/**
 * datalab-otel: trace lookup by correlation or trace ID, the effective configuration, and a
 * doctor. `datalab-otel --help` for usage.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config';
import { CORRELATION_ATTRIBUTE } from '../correlation/id';
import { doctor, effectiveConfig, exitCode, renderFindings, settingsList } from './config-commands';
import { matchingLogLines } from './logs';
import { toOtlpJson } from './otlp-json';
import {
  type LookupResult,
  lookupInFiles,
  lookupInJaeger,
  lookupInTempo,
  traceFiles,
} from './sources';
import { renderTraces } from './tree';

const USAGE = `usage:
  datalab-otel trace <correlation-or-trace-id> [--file <path|dir>]... [--jaeger <url>] [--tempo <url>]
                     [--service <name>] [--since <hours>] [--logs <file>]... [--json]
  datalab-otel config [--list]
  datalab-otel doctor [--json]

trace   finds the trace(s) of an ID and prints them as trees (service, span, offset, duration,
        status, key attributes). Sources: --file (OTLP JSON lines: the Collector file exporter,
        the distro's local trace files; directories and rotated files included), --jaeger
        (API v3), --tempo. Without a source: the local trace files (DATALAB_TRACES_DIR,
        default ./.datalab/traces). --logs adds the JSON log lines of the request. --json prints
        the spans as OTLP JSON. Exit code 1 when nothing is found.
config  prints the configuration the preload would use here, secrets redacted. --list prints
        every variable it reads, with its default and what it does.
doctor  checks the Node.js version, the configuration, exporter endpoints and the management
        port, and says, for the application in this directory, what will be instrumented and
        how, and what will not and why. --json for machines. Exit code 1 only when a check
        fails (an old Node.js, an invalid setting, an unreachable endpoint, a taken port).`;

async function trace(id: string, values: Record<string, unknown>): Promise<number> {
  const files = (values.file as string[] | undefined) ?? [];
  const jaeger = values.jaeger as string | undefined;
  const tempo = values.tempo as string | undefined;
  const lookbackHours = Number(values.since ?? 24);
  if (!Number.isFinite(lookbackHours) || lookbackHours <= 0) {
    process.stderr.write(
      `datalab-otel trace: --since takes a number of hours, not ${JSON.stringify(values.since)}\n`,
    );
    return 2;
  }
  const results: LookupResult[] = [];
  const sources: string[] = [];
  if (files.length > 0 || (!jaeger && !tempo)) {
    const paths = files.length > 0 ? files : [loadConfig().traceFile.dir];
    sources.push(...paths);
    const found = await traceFiles(paths).catch((err: Error) => {
      if (files.length > 0) throw err;
      return [] as string[];
    });
    results.push(await lookupInFiles(id, found));
  }
  if (jaeger) {
    sources.push(jaeger);
    results.push(
      await lookupInJaeger(id, jaeger, {
        service: values.service as string | undefined,
        lookbackHours,
      }),
    );
  }
  if (tempo) {
    sources.push(tempo);
    results.push(await lookupInTempo(id, tempo, { lookbackHours }));
  }
  const spans = results.flatMap((r) => r.spans);
  const skipped = results.reduce((n, r) => n + r.skippedLines, 0);
  if (skipped > 0) {
    process.stderr.write(
      `warning: skipped ${skipped} unreadable line${skipped === 1 ? '' : 's'} (truncated or corrupt)\n`,
    );
  }
  if (spans.length === 0) {
    process.stderr.write(`no trace found for ${JSON.stringify(id)} in ${sources.join(', ')}\n`);
    return 1;
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(toOtlpJson(spans))}\n`);
    return 0;
  }
  process.stdout.write(`${renderTraces(spans)}\n`);
  const logFiles = (values.logs as string[] | undefined) ?? [];
  if (logFiles.length > 0) {
    const traceIds = new Set(spans.map((s) => s.traceId));
    const correlationIds = new Set<string>([id]);
    for (const s of spans) {
      const c = s.attributes[CORRELATION_ATTRIBUTE];
      if (typeof c === 'string') correlationIds.add(c);
    }
    const lines = await matchingLogLines(await traceFiles(logFiles), correlationIds, traceIds);
    process.stdout.write(`\nlog lines (${lines.length}):\n`);
    for (const l of lines) process.stdout.write(`  ${l.text}\n`);
  }
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        file: { type: 'string', multiple: true },
        logs: { type: 'string', multiple: true },
        jaeger: { type: 'string' },
        tempo: { type: 'string' },
        service: { type: 'string' },
        since: { type: 'string' },
        json: { type: 'boolean' },
        list: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`datalab-otel: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const [command, arg] = parsed.positionals;
  if (parsed.values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined && !parsed.values.help ? 2 : 0;
  }
  try {
    switch (command) {
      case 'trace':
        if (!arg) {
          process.stderr.write(`datalab-otel trace: an ID is required\n${USAGE}\n`);
          return 2;
        }
        return await trace(arg, parsed.values);
      case 'config': {
        if (parsed.values.list) {
          process.stdout.write(`${settingsList()}\n`);
          return 0;
        }
        const { report, warnings } = effectiveConfig(process.env, process.cwd());
        for (const w of warnings) process.stderr.write(`warning ${w}\n`);
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return 0;
      }
      case 'doctor': {
        const findings = await doctor(process.env, process.cwd());
        const code = exitCode(findings);
        process.stdout.write(
          parsed.values.json
            ? `${JSON.stringify({ findings, exitCode: code }, null, 2)}\n`
            : `${renderFindings(findings)}\n`,
        );
        return code;
      }
      default:
        process.stderr.write(
          `datalab-otel: unknown command ${JSON.stringify(command)}\n${USAGE}\n`,
        );
        return 2;
    }
  } catch (err) {
    process.stderr.write(`datalab-otel ${command}: ${(err as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
