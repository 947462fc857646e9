/**
 * The module-loader hooks the preload installs: import-in-the-middle's (so that libraries the
 * application imports as ESM get patched), and the one that keeps a TypeScript entry point on
 * its require hook (ts-node) when `--import` is used.
 *
 * Where the running Node.js can, import-in-the-middle runs in-thread through
 * `module.registerHooks()`: no loader thread (start-up time and memory), nothing to wait for,
 * and no DEP0205 warning (Node 26 deprecates `module.register()`). Elsewhere it falls back to
 * `module.register()`, which those versions do not deprecate.
 */

import { readFileSync, realpathSync } from 'node:fs';
import { createRequire, findPackageJSON, register, registerHooks } from 'node:module';
import { extname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { atLeast, parseNodeVersion } from './node-version';
import { warn, warnOnceWhenConfigured } from './warnings';

/**
 * Where `module.registerHooks()` runs import-in-the-middle correctly: it must accept the nullish
 * CommonJS source the loader returns (nodejs/node#59929: 22.22.3, 24.11.1, 25.1.0, 26.0.0), and
 * on 24 the synchronous hooks only settled in 24.13. 23.x is end-of-life and never had the fix.
 */
export function syncHooksUsable(version: string): boolean {
  const [major] = parseNodeVersion(version);
  if (major >= 26) return true;
  if (major === 25) return atLeast(version, '25.1.0');
  if (major === 24) return atLeast(version, '24.13.0');
  if (major === 22) return atLeast(version, '22.22.3');
  return false;
}

/**
 * Which modules import-in-the-middle wraps: only those an instrumentation hooks, as with the
 * loader-thread include list (wrapping every ESM module costs start-up and can break unrelated
 * code). `names` grows as instrumentations call Hook(); builtins match with or without `node:`.
 */
export function hookedModuleMatcher(
  names: ReadonlySet<string>,
): (url: string, specifier: string) => boolean {
  return (url, specifier) => {
    if (names.has(specifier) || names.has(url)) return true;
    if (url.startsWith('node:')) return names.has(url.slice(5));
    if (url.startsWith('file:')) {
      let path: string | undefined | null = null; // computed once, only if a name is a path
      for (const name of names) {
        if (!name.startsWith('/')) continue;
        if (path === null) path = safePath(url);
        if (path === name) return true;
      }
    }
    return false;
  };
}

function safePath(url: string): string | undefined {
  try {
    return fileURLToPath(url);
  } catch {
    return undefined;
  }
}

/**
 * Installs import-in-the-middle's hooks for the modules instrumentations hook, in two steps
 * around the creation of the instrumentations: call this before (their Hook() calls must find the
 * channel), and the function it returns after. That one returns what to await before the
 * application's own imports run (the loader thread acknowledging the list), or undefined when
 * nothing needs waiting for.
 */
export function prepareEsmHooks(): () => (() => Promise<void>) | undefined {
  const iitm = require('import-in-the-middle') as typeof import('import-in-the-middle');
  // Every Hook() call (ours and any other in-process user of this copy) posts its module names
  // to this channel; both paths read them from there.
  const channel = iitm.createAddHookMessageChannel();
  const sync =
    syncHooksUsable(process.versions.node) &&
    (
      require('import-in-the-middle/register-hooks.mjs') as {
        supportsSyncHooks(): boolean;
      }
    ).supportsSyncHooks();
  if (!sync) {
    register('import-in-the-middle/hook.mjs', pathToFileURL(__filename), channel.registerOptions);
    return () => channel.waitForAllMessagesAcknowledged;
  }
  // In-thread hooks run for every require() too: registered after the instrumentations, the
  // SDK's own few hundred modules do not pay for them.
  return () => {
    registerInThread(channel.addHookMessagePort);
    return undefined;
  };
}

function registerInThread(port: MessagePort): void {
  const names = new Set<string>();
  const matches = hookedModuleMatcher(names);
  const { register: registerSync } = require('import-in-the-middle/register-hooks.mjs') as {
    register(options: { shouldInclude(url: string, specifier: string): boolean }): void;
  };
  const taken = registersFirst(() =>
    registerSync({
      // Read synchronously at each resolution: names of instrumentations created later (an
      // application calling Hook() itself) are on the list before their module is imported.
      shouldInclude: (url, specifier) => {
        for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
          for (const name of m.message as string[]) names.add(name);
        }
        return matches(url, specifier);
      },
    }),
  );
  // import-in-the-middle takes a module required with no parent URL for an entry point and gives
  // it the `commonjs` format when the resolver named none, builtins included: what `node -e`
  // code requires has no parent URL, and Node then reads `node:module` from disk (ENOENT). This
  // hook, registered last, runs first and sees that result.
  registerHooks({
    resolve: (specifier, context, nextResolve) => {
      const result = nextResolve(specifier, context);
      return result.format === 'commonjs' && result.url.startsWith('node:')
        ? { ...result, format: 'builtin' }
        : result;
    },
  });
  if (taken) {
    warn(
      'DLOTEL_ESM_HOOKS_CONFLICT',
      "another agent registered import-in-the-middle's in-thread hooks first, with its own list of modules: libraries it does not list are not patched when imported as ESM (require() is unaffected). Load @datalab/otel/register before the other agent",
    );
  }
}

/**
 * Runs import-in-the-middle's register() and tells whether another user of the same copy had
 * registered first: then ours is ignored (the hooks are a per-copy singleton) and it says so
 * only in an uncoded process warning, which this replaces with a coded one.
 */
function registersFirst(registerSync: () => void): boolean {
  let taken = false;
  const emitWarning = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const text = typeof warning === 'string' ? warning : warning?.message;
    if (
      typeof text === 'string' &&
      text.includes('synchronous hooks have already been registered')
    ) {
      taken = true;
      return;
    }
    (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    registerSync();
  } finally {
    process.emitWarning = emitWarning;
  }
  return taken;
}

const TS_EXTENSIONS = new Set(['.ts', '.cts']);

/**
 * `node --import X -r ts-node/register app.ts`: any `--import` makes Node run the entry point
 * through its ESM loader, which ignores require hooks and fails on the TypeScript (type-stripping
 * errors, or ERR_UNKNOWN_FILE_EXTENSION where Node strips no types). A CommonJS entry point is
 * handed back to the CommonJS loader (a `commonjs` load result with no source), where the
 * application's require hook compiles it, exactly as without the preload.
 *
 * Only when the entry point is `.ts`/`.cts`, a require hook for that extension is installed and
 * the file is CommonJS: Node's own type stripping, tsx and ESM loaders are left alone.
 */
export function keepTypeScriptEntryOnRequireHook(mainScript: string | undefined): void {
  if (!mainScript) return;
  const ext = extname(mainScript);
  if (!TS_EXTENSIONS.has(ext)) return;
  const extensions = createRequire(__filename).extensions;
  if (!Object.hasOwn(extensions, ext)) return;
  // Node loads the entry point by its real path (a symlinked bin, a deployment link).
  const mainUrl = pathToFileURL(realPath(mainScript)).href;
  if (!isCommonJsScope(mainUrl, ext)) return;
  if (syncHooksUsable(process.versions.node)) {
    registerHooks({
      load: (url, context, nextLoad) =>
        url === mainUrl
          ? { format: 'commonjs', source: null as unknown as string, shortCircuit: true }
          : nextLoad(url, context),
    });
    return;
  }
  // Before nodejs/node#59929 a synchronous hook cannot return a source-less CommonJS result; the
  // loader thread can (and these versions do not deprecate module.register()).
  try {
    register(`data:text/javascript,${encodeURIComponent(ENTRY_LOADER)}`, {
      data: { mainUrl },
    });
  } catch (err) {
    // Runs before the configuration is read: printed in its format once it is.
    warnOnceWhenConfigured(
      'DLOTEL_TYPESCRIPT_UNSUPPORTED',
      'entry',
      `the TypeScript entry point could not be kept on its require hook (${
        err instanceof Error ? err.message : String(err)
      }); use --require @datalab/otel/register`,
    );
  }
}

const ENTRY_LOADER = `let main;
export function initialize(data) { main = data.mainUrl; }
export async function load(url, context, nextLoad) {
  if (url === main) return { format: 'commonjs', source: null, shortCircuit: true };
  return nextLoad(url, context);
}`;

function realPath(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

/** `.cts` always; `.ts` unless the nearest package.json says `"type": "module"`. */
function isCommonJsScope(mainUrl: string, ext: string): boolean {
  if (ext === '.cts') return true;
  try {
    const file = findPackageJSON(mainUrl);
    if (file === undefined) return true;
    return (JSON.parse(readFileSync(file, 'utf8')) as { type?: unknown }).type !== 'module';
  } catch {
    return true;
  }
}
