/**
 * Runs `tributary <command>` as a child process on Node (the compiled dist/) or Deno (the .ts source), and reads
 * its structured log lines so a test can wait for "started" records and learn the ports it bound.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { repoRoot } from './repo-root.ts';

export type Runtime = 'node' | 'deno';

const root = repoRoot;

export function commandFor(runtime: Runtime): { command: string; args: string[] } {
  if (runtime === 'deno') return { command: `${root}node_modules/.bin/deno`, args: ['run', '-A', '--quiet', `${root}shared/cli/tributary.ts`] };
  const entry = `${root}dist/shared/cli/tributary.js`;
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run "npm run build" first (npm test does)`);
  return { command: process.execPath, args: [entry] };
}

/** A command line to run instead of `tributary` (a baseline broker, say). */
export interface Command {
  command: string;
  args: string[];
}

export interface SpawnOptions {
  /** Pin the process to this CPU core (with `taskset`), as the benchmarks do. */
  cpu?: number;
  /** Run at this niceness (with `nice`): a process that shares a core with the load generator yields to it. */
  nice?: number;
}

export class NodeProcess {
  readonly child: ChildProcess;
  readonly records: Record<string, unknown>[] = [];
  readonly output: string[] = [];
  readonly exited: Promise<number | null>;
  #waiters: { match: (r: Record<string, unknown>) => boolean; resolve: (r: Record<string, unknown>) => void }[] = [];

  /** Runs `tributary <args>` on `runtime`, or a given command line as is. */
  constructor(runtime: Runtime | Command, args: string[], options: SpawnOptions = {}) {
    const { command, args: prefix } = typeof runtime === 'string' ? commandFor(runtime) : runtime;
    const argv = typeof runtime === 'string' ? [...prefix, ...args, '--log-format', 'json'] : [...prefix, ...args];
    let pinned = [command, ...argv];
    if (options.nice !== undefined) pinned = ['nice', '-n', String(options.nice), ...pinned];
    if (options.cpu !== undefined) pinned = ['taskset', '-c', String(options.cpu), ...pinned];
    this.child = spawn(pinned[0], pinned.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    const onData = (chunk: Buffer) => {
      partial += chunk.toString();
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const line of lines) this.#line(line);
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  #line(line: string): void {
    this.output.push(line);
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line);
    } catch {
      return;
    }
    this.records.push(record);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.match(record)) return true;
      w.resolve(record);
      return false;
    });
  }

  /** The first log record with message `msg` (past or future). */
  waitForLog(msg: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const found = this.records.find((r) => r.msg === msg);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${msg}" log within ${timeoutMs} ms; output:\n${this.output.slice(-30).join('\n')}`)), timeoutMs);
      void this.exited.then((code) => reject(new Error(`process exited (${code}) before logging "${msg}"; output:\n${this.output.slice(-30).join('\n')}`)));
      this.#waiters.push({
        match: (r) => r.msg === msg,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
    });
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** The port of a URL logged by a node (`mqtt://127.0.0.1:1883` → 1883). */
export function portOf(url: unknown): number {
  return Number(new URL(String(url)).port);
}
