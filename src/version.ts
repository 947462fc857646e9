import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// Compiled to dist/src/version.js; the package root is two levels up in both layouts we ship.
const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
  name: string;
  version: string;
};

export const DISTRO_NAME: string = pkg.name;
export const DISTRO_VERSION: string = pkg.version;
