/**
 * The one module that reads runtime globals (`Deno`, `process`), so the rest of the code runs unchanged on
 * Node.js and Deno.
 */
import process from 'node:process';
import { fileURLToPath } from 'node:url';

declare const Deno: { version: { deno: string }; execPath(): string } | undefined;

export type RuntimeKey = 'node' | 'deno';

export function runtimeKey(): RuntimeKey {
  return typeof Deno !== 'undefined' ? 'deno' : 'node';
}

export function runtimeVersion(): string {
  return runtimeKey() === 'deno' ? `deno ${Deno!.version.deno}` : `node ${process.versions.node}`;
}

/**
 * The command that runs a module of this project on the current runtime: Node runs the compiled `.js`, Deno
 * runs the `.ts` source (the module URL tells which one this process is using).
 */
export function moduleCommand(moduleUrl: URL): { command: string; args: string[] } {
  const path = fileURLToPath(moduleUrl);
  if (runtimeKey() === 'deno') {
    return { command: Deno!.execPath(), args: ['run', '-A', '--quiet', path] };
  }
  return { command: process.execPath, args: [path] };
}

/** `.ts` when this source runs as TypeScript (Deno, Vitest), `.js` when it runs compiled. */
export function moduleExtension(moduleUrl: string): '.ts' | '.js' {
  return moduleUrl.endsWith('.ts') ? '.ts' : '.js';
}

export const env: Readonly<Record<string, string | undefined>> = process.env;
