/**
 * A headless Chromium that loads one page and prints its DOM once loaded (`--dump-dom`), for the
 * tests of what browser code reads from the distro's response headers. Each browser runs in its
 * own process group with a fresh profile; both are removed by the test that made them.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTool, IN_CI } from './prometheus-server';
import { skipBecause } from './skip';

/** Debian's `chromium` (or `chromium-browser`): CI installs it (.ci/run), elsewhere a skip. */
export function requireChromium(ctx: Mocha.Context): string {
  const path = findTool('chromium') ?? findTool('chromium-browser');
  if (path) return path;
  const reason = 'chromium is not on PATH (Debian: apt-get install chromium; .ci/run installs it)';
  if (IN_CI) throw new Error(`${reason}: required in CI`);
  skipBecause(ctx, reason);
}

/**
 * The DOM of `url` after its load event, with `budgetMs` of virtual time for what its scripts
 * fetch. Rejects after `timeoutMs`, the browser's process group killed.
 */
export function dumpDom(
  chromium: string,
  url: string,
  { budgetMs = 5000, timeoutMs = 30_000 } = {},
): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), 'datalab-otel-chromium-'));
  const child = spawn(
    chromium,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-extensions',
      `--user-data-dir=${profile}`,
      `--virtual-time-budget=${budgetMs}`,
      '--dump-dom',
      url,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    err += c;
  });
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }, timeoutMs);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      rmSync(profile, { recursive: true, force: true });
      if (code === 0 && out !== '') resolve(out);
      else reject(new Error(`chromium exited ${code ?? signal} for ${url}:\n${err.slice(-2000)}`));
    });
  });
}

/** The text of the page's `<pre id="out">`, where the fixture pages write what they read. */
export function outputOf(dom: string): string {
  const m = /<pre id="out">([\s\S]*?)<\/pre>/.exec(dom);
  if (!m) throw new Error(`no output element in:\n${dom.slice(0, 2000)}`);
  return (m[1] as string)
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}
