import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  formatWarning,
  quote,
  setWarningSink,
  WARNING_CODES,
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
