/**
 * What every benchmark scenario gets: the run's settings, a place for temp data, progress on stderr, and
 * `emit` for results — one JSON line each on stdout, collected for the Markdown report.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { Runtime } from '../helpers/node-process.ts';

export interface BenchResult {
  /** The scenario: ingest, end-to-end, max-rate, drain, fan-out, footprint. */
  bench: string;
  [field: string]: unknown;
}

export interface SuiteOptions {
  quick: boolean;
  /** Repetitions of each alternated measurement (the median is reported). */
  runs: number;
  /** Seconds each measurement runs. */
  seconds: number;
  runtimes: Runtime[];
  mosquitto: string | null;
}

export class Suite {
  readonly options: SuiteOptions;
  readonly results: BenchResult[] = [];
  readonly #dirs: string[] = [];
  readonly #out: (line: string) => void;
  readonly #err: (line: string) => void;

  constructor(options: SuiteOptions, out: (line: string) => void, err: (line: string) => void) {
    this.options = options;
    this.#out = out;
    this.#err = err;
  }

  emit(result: BenchResult): void {
    this.results.push(result);
    this.#out(JSON.stringify(result));
  }

  progress(message: string): void {
    this.#err(`[bench] ${message}`);
  }

  /** A fresh temp directory, removed by `cleanup()`. */
  tempDir(prefix: string): string {
    const dir = mkdtempSync(`${tmpdir()}/tributary-bench-${prefix}-`);
    this.#dirs.push(dir);
    return dir;
  }

  cleanup(): void {
    for (const dir of this.#dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
