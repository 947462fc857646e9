import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from '../support/app';

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('skipped tests', () => {
  it('every skip goes through skipBecause(), so it prints a reason and the summary repeats it', () => {
    // A bare skip (on the mocha context, on it/describe, or the x-prefixed forms) gives no reason.
    const bare = /\b(?:this|ctx)\.skip\(|\b(?:it|describe|context)\.skip\(|\bx(?:it|describe)\(/;
    const offenders: string[] = [];
    for (const file of sources(join(ROOT, 'test'))) {
      if (file.endsWith(join('support', 'skip.ts'))) continue;
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (bare.test(line)) offenders.push(`${relative(ROOT, file)}:${i + 1}: ${line.trim()}`);
        });
    }
    assert.deepEqual(offenders, []);
  });
});
