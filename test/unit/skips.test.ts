import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ROOT } from '../support/app';

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** A spec that skips in every place mocha allows: a test, a "before each" and a "before all". */
const SKIPPING_SPEC = (skipModule: string) => `
const { skipBecause } = require(${JSON.stringify(skipModule)});
describe('outer', () => {
  it('runs', () => {});
  it('skips itself', function () { skipBecause(this, 'reason in the test'); });
  describe('each', () => {
    beforeEach(function () {
      if (this.currentTest.title === 'second') skipBecause(this, 'reason in before each');
    });
    it('first', () => {});
    it('second', () => {});
  });
  describe('all', () => {
    before(function () { skipBecause(this, 'reason in before all'); });
    it('one', () => {});
    describe('nested', () => { it('two', () => {}); });
  });
});
`;

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

  it('the summary names the reason of every skipped test, skips in hooks included', async function () {
    this.timeout(30_000);
    const dir = mkdtempSync(join(tmpdir(), 'datalab-otel-skips-'));
    try {
      const spec = join(dir, 'skipping.spec.cjs');
      writeFileSync(spec, SKIPPING_SPEC(join(ROOT, 'dist', 'test', 'support', 'skip.js')));
      const stdout = await new Promise<string>((done, fail) => {
        execFile(
          process.execPath,
          [
            join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js'),
            '--no-config',
            '--reporter',
            join(ROOT, 'dist', 'test', 'support', 'reporter.js'),
            spec,
          ],
          { cwd: dir, timeout: 20_000 },
          (err, out, errOut) =>
            err ? fail(new Error(`${err.message}\n${out}\n${errOut}`)) : done(String(out)),
        );
      });
      const summary = stdout.split('\n').filter((line) => line.startsWith('skipped: '));
      assert.deepEqual(summary.sort(), [
        'skipped: outer all nested two: reason in before all',
        'skipped: outer all one: reason in before all',
        'skipped: outer each second: reason in before each',
        'skipped: outer skips itself: reason in the test',
      ]);
      assert.match(stdout, /^2 passed, 0 failed, 4 skipped$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
