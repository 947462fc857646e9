import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  flushDeferredWarnings,
  formatWarning,
  quote,
  setWarningSink,
  useStructuredWarnings,
  WARNING_CODES,
  warn,
  warnOnceWhenConfigured,
  warnRateLimited,
} from '../../src/warnings';
import { ROOT } from '../support/app';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('warning codes', () => {
  const codes = Object.keys(WARNING_CODES).sort();

  it('docs/warnings.md documents exactly the codes the distro defines', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'warnings.md'), 'utf8');
    const documented = [...doc.matchAll(/^## (DLOTEL_[A-Z_]+)\s*$/gm)].map((m) => m[1]).sort();
    assert.deepEqual(documented, codes);
  });

  /** What the distro really prints for a warning once the configuration is known. */
  function printedRecord(code: keyof typeof WARNING_CODES): Record<string, unknown> {
    const previous = setWarningSink(() => {});
    const written: string[] = [];
    const write = process.stderr.write;
    try {
      useStructuredWarnings('svc', 'json');
      process.stderr.write = ((chunk: string) => {
        written.push(chunk);
        return true;
      }) as typeof process.stderr.write;
      warn(code, 'm');
    } finally {
      process.stderr.write = write;
      setWarningSink(previous);
    }
    assert.equal(written.length, 1);
    assert.ok(written[0]?.endsWith('\n') && !written[0].slice(0, -1).includes('\n'), 'one line');
    return JSON.parse(written[0] as string) as Record<string, unknown>;
  }

  it('each documented example is the JSON line the distro prints for that code', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'warnings.md'), 'utf8');
    const sections = doc.split(/^## /m).slice(1);
    assert.equal(sections.length, codes.length);
    for (const section of sections) {
      const code = section.slice(0, section.indexOf('\n')).trim() as keyof typeof WARNING_CODES;
      const blocks = [...section.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)];
      assert.equal(blocks.length, 1, `${code}: one example`);
      const [, lang, body] = blocks[0] as RegExpMatchArray;
      assert.equal(lang, 'json', `${code}: a json block`);
      const lines = (body as string).trimEnd().split('\n');
      assert.equal(lines.length, 1, `${code}: one line, as printed`);
      const example = JSON.parse(lines[0] as string) as Record<string, unknown>;
      const printed = printedRecord(code);
      // Same fields in the same order, same fixed values; message, service and time vary.
      assert.deepEqual(Object.keys(example), Object.keys(printed), code);
      for (const field of ['level', 'code', 'logger']) {
        assert.equal(example[field], printed[field], `${code}: ${field}`);
      }
      assert.equal(typeof example.message, 'string');
      assert.equal(typeof example.service, 'string');
      assert.equal(
        example.iso_timestamp,
        new Date((example.timestamp as number) * 1000).toISOString(),
        `${code}: timestamp and iso_timestamp agree`,
      );
    }
  });

  it('the introduction shows the printed form too, not the plain line', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'warnings.md'), 'utf8');
    const intro = doc.slice(0, doc.search(/^## /m));
    const block = /^```json\n(.*)\n```$/m.exec(intro);
    assert.ok(block, 'a json example before the first code');
    const example = JSON.parse(block[1] as string) as Record<string, unknown>;
    assert.deepEqual(
      Object.keys(example),
      Object.keys(printedRecord(example.code as keyof typeof WARNING_CODES)),
    );
    for (const fence of doc.matchAll(/^```\w*\n([\s\S]*?)^```$/gm)) {
      assert.ok(!(fence[1] as string).includes('@datalab/otel warning'), fence[1]);
    }
  });

  it('every defined code is emitted somewhere in src/', () => {
    const text = sources(join(ROOT, 'src'))
      .filter((f) => !f.endsWith('warnings.ts'))
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
    for (const code of codes) assert.ok(text.includes(`'${code}'`), `${code} is never emitted`);
  });

  it('formats one greppable line', () => {
    assert.equal(
      formatWarning('DLOTEL_START_FAILED', 'x'),
      '@datalab/otel warning DLOTEL_START_FAILED: x',
    );
    assert.equal(quote('a\nb'), '"a\\nb"');
  });

  it('rate-limits repeating failures per key', () => {
    const lines: string[] = [];
    const previous = setWarningSink((code, message) => lines.push(`${code}: ${message}`));
    try {
      const t0 = 1_000_000;
      assert.ok(warnRateLimited('DLOTEL_EXPORT_FAILED', 'unit', 'down', 60_000, t0));
      assert.ok(!warnRateLimited('DLOTEL_EXPORT_FAILED', 'unit', 'down', 60_000, t0 + 59_000));
      assert.ok(warnRateLimited('DLOTEL_EXPORT_FAILED', 'unit', 'down', 60_000, t0 + 61_000));
      assert.equal(lines.length, 2);
    } finally {
      setWarningSink(previous);
    }
  });
});

describe('warnings raised before the configuration is read', () => {
  it('are held until the format is known, then printed once', () => {
    const seen: string[] = [];
    const previous = setWarningSink((code, message) => seen.push(`${code} ${message}`));
    try {
      warnOnceWhenConfigured('DLOTEL_TYPESCRIPT_UNSUPPORTED', 'test-entry', 'held');
      warnOnceWhenConfigured('DLOTEL_TYPESCRIPT_UNSUPPORTED', 'test-entry', 'held');
      assert.deepEqual(seen, []);
      flushDeferredWarnings();
      assert.deepEqual(seen, ['DLOTEL_TYPESCRIPT_UNSUPPORTED held']);
      flushDeferredWarnings();
      assert.equal(seen.length, 1);
    } finally {
      setWarningSink(previous);
    }
  });
});
