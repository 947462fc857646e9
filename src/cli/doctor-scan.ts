/**
 * What `datalab-otel doctor` reads from the machine: the packages the application in a directory
 * has (declared in its package.json, and every package those bring, the way Node resolves them),
 * and the module names and version ranges each instrumentation hooks, read from the
 * instrumentation itself so that the answer moves with the instrumentation packages.
 * The decisions are in doctor.ts, free of I/O.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { InstrumentationModuleDefinition } from '@opentelemetry/instrumentation';
import { ClientRegistry, DbClientsInstrumentation } from '../db/clients';
import type { InstalledPackage, ModuleSupport } from './doctor';

interface Manifest {
  name?: string;
  version?: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

function readManifest(dir: string): Manifest | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
}

/**
 * The directory `name` loads from when required from `fromDir`: Node's lookup paths, without
 * the package's `exports` (which often hides its package.json).
 */
function packageDir(name: string, fromDir: string): string | undefined {
  const paths = createRequire(join(fromDir, '__datalab_otel_doctor__.js')).resolve.paths(name);
  for (const base of paths ?? []) {
    const dir = join(base, name);
    if (existsSync(join(dir, 'package.json'))) {
      try {
        return realpathSync(dir);
      } catch {
        return dir;
      }
    }
  }
  return undefined;
}

const DECLARED = [
  'dependencies',
  'optionalDependencies',
  'peerDependencies',
  'devDependencies',
] as const;

/**
 * Every package the application in `cwd` can load: its declared dependencies and, through them,
 * every package they bring (an ORM's driver, a client's core package), one entry per installed
 * copy; plus the `extra` names that resolve from `cwd` although nothing declares them.
 */
export function scanPackages(
  cwd: string,
  extra: Iterable<string> = [],
): { app: { name?: string; version?: string } | undefined; packages: InstalledPackage[] } {
  const root = readManifest(cwd);
  const byDir = new Map<
    string,
    { name: string; version: string; declared?: string; dependents: Set<string> }
  >();
  const queue: { name: string; from: string; dependent?: string; declared?: string }[] = [];
  for (const field of DECLARED) {
    for (const name of Object.keys(root?.[field] ?? {})) {
      queue.push({ name, from: cwd, declared: field });
    }
  }
  const visit = (item: (typeof queue)[number]) => {
    const dir = packageDir(item.name, item.from);
    if (dir === undefined) return;
    let entry = byDir.get(dir);
    if (entry === undefined) {
      const manifest = readManifest(dir);
      entry = {
        name: item.name,
        version: manifest?.version ?? '0.0.0',
        declared: item.declared,
        dependents: new Set(),
      };
      byDir.set(dir, entry);
      for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies'] as const) {
        for (const dep of Object.keys(manifest?.[field] ?? {})) {
          queue.push({ name: dep, from: dir, dependent: item.name });
        }
      }
    }
    if (item.dependent !== undefined) entry.dependents.add(item.dependent);
    if (item.declared !== undefined && entry.declared === undefined) entry.declared = item.declared;
  };
  for (let i = 0; i < queue.length; i++) visit(queue[i] as (typeof queue)[number]);
  for (const name of extra) {
    const dir = packageDir(name, cwd);
    if (dir !== undefined && !byDir.has(dir)) visit({ name, from: cwd });
  }
  return {
    app: root === undefined ? undefined : { name: root.name, version: root.version },
    packages: [...byDir.entries()].map(([dir, e]) => ({
      name: e.name,
      version: e.version,
      dir,
      declared: e.declared,
      dependents: [...e.dependents].sort(),
    })),
  };
}

/** A definition's ranges, the module's and its files' (each is checked on its own when loaded). */
function supportOf(definitions: readonly InstrumentationModuleDefinition[]): ModuleSupport[] {
  const out = new Map<string, Set<string>>();
  for (const d of definitions) {
    const ranges = out.get(d.name) ?? new Set<string>();
    for (const r of d.supportedVersions) ranges.add(r);
    for (const f of d.files ?? []) for (const r of f.supportedVersions) ranges.add(r);
    out.set(d.name, ranges);
  }
  return [...out].map(([name, ranges]) => ({ name, supportedVersions: [...ranges] }));
}

type Constructor = new (
  options: object,
) => { getModuleDefinitions?(): InstrumentationModuleDefinition[] };

/**
 * The modules an instrumentation package hooks and the versions it patches, from an instance
 * created disabled (it registers no hook). `pkg` is a package name or, for the distro's own, a
 * path relative to src/. Undefined when the package cannot be loaded.
 */
export function moduleSupportOf(pkg: string): ModuleSupport[] | undefined {
  try {
    const mod = require(pkg.startsWith('./') ? join(__dirname, '..', pkg) : pkg) as Record<
      string,
      unknown
    >;
    for (const value of Object.values(mod)) {
      if (typeof value !== 'function') continue;
      const proto = (value as { prototype?: { getModuleDefinitions?: unknown } }).prototype;
      if (typeof proto?.getModuleDefinitions !== 'function') continue;
      // The distro's own instrumentations read their options object whole.
      const instance = new (value as Constructor)({ enabled: false, redactKeys: [] });
      return supportOf(instance.getModuleDefinitions?.() ?? []);
    }
  } catch {
    // Reported as "versions unknown" by the caller.
  }
  return undefined;
}

/** The versions the distro's own database client hooks (metrics, pools, health) patch. */
export function dbClientSupport(): ModuleSupport[] {
  const hooks = new DbClientsInstrumentation(new ClientRegistry(), () => {});
  hooks.disable();
  return supportOf(hooks.getModuleDefinitions());
}
