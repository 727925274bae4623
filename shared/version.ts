/**
 * This build's Tributary version, from the package's `package.json`. The file is found by walking up from this
 * module, because it sits one folder higher when the compiled `dist/shared/` runs than when the `.ts` source does.
 */
import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** The version in `package.json`, or `unknown` when the file cannot be found (a bundled copy, say). */
export function tributaryVersion(): string {
  cached ??= readVersion();
  return cached;
}

function readVersion(): string {
  for (const relative of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(relative, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'tributary' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // Not there (or not readable): try the next folder up.
    }
  }
  return 'unknown';
}
