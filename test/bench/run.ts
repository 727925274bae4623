/**
 * `npm run bench [-- --quick] [-- --only ingest,drain]`: the benchmark suite. Prints one JSON line per result on
 * stdout, progress on stderr, and writes the Markdown report (docs/benchmarks.md by default).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem, type } from 'node:os';
import type { CommandSpec } from '../../shared/cli/args.ts';
import { formatHelp, parseArgs } from '../../shared/cli/args.ts';
import { UsageError } from '../../shared/errors.ts';
import type { Runtime } from '../helpers/node-process.ts';
import { renderReport } from './report.ts';
import type { Machine, RunSummary } from './report.ts';
import { drain } from './scenarios/drain.ts';
import { endToEnd, maxRate } from './scenarios/end-to-end.ts';
import { fanOut } from './scenarios/fan-out.ts';
import { footprint } from './scenarios/footprint.ts';
import { ingest } from './scenarios/ingest.ts';
import { outage } from './scenarios/outage.ts';
import { Suite } from './suite.ts';
import type { BenchResult } from './suite.ts';
import { CORES, mosquittoVersion } from './targets.ts';
import { repoRoot } from '../helpers/repo-root.ts';

const root = repoRoot;
const SCENARIOS = ['ingest', 'end-to-end', 'max-rate', 'drain', 'outage', 'fan-out', 'footprint'] as const;

const spec: CommandSpec = {
  name: 'bench',
  summary: 'Run the benchmark suite: edge ingest, end-to-end latency, drain, a cloud outage, fan-out and footprint, with plain Aedes and Mosquitto as baselines.',
  description:
    'Results go to stdout as one JSON line each, progress to stderr, and a Markdown report to --markdown.\nThe systems under test run on CPU core 0 and the load generator on core 1 (with taskset).',
  flags: [
    { name: 'quick', type: 'boolean', help: 'A small version of every scenario (under 2 minutes).' },
    { name: 'only', type: 'string', value: 'LIST', help: `Comma-separated scenarios to run: ${SCENARIOS.join(', ')}.` },
    { name: 'runs', type: 'number', value: 'N', help: 'Alternated rounds per ingest measurement (default 5; 1 with --quick).' },
    { name: 'seconds', type: 'number', value: 'S', help: 'Length of each measurement (default 5; 1.5 with --quick).' },
    { name: 'deno', type: 'boolean', default: true, help: 'Also run the headline measurements on Deno (--no-deno to skip).' },
    { name: 'markdown', type: 'string', value: 'FILE', default: 'docs/benchmarks.md', help: 'Where to write the report ("-" for nowhere).' },
    { name: 'report', type: 'string', value: 'JSONL', help: "Measure nothing: render the report from a run's saved JSON lines." },
  ],
  examples: [
    'npm run bench',
    'npm run bench -- --quick',
    'npm run bench -- --only ingest --runs 3 --no-deno',
    'npm run bench > results.jsonl && npm run bench -- --report results.jsonl --markdown report.md',
  ],
};

function machine(mosquitto: string | null, deno: boolean): Machine {
  let denoVersion: string | null = null;
  if (deno) {
    const out = execFileSync(`${root}node_modules/.bin/deno`, ['--version'], { encoding: 'utf8' });
    denoVersion = /deno (\S+)/.exec(out)?.[1] ?? 'unknown';
  }
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: `${type()} ${release()}`,
    node: process.version,
    deno: denoVersion,
    mosquitto,
  };
}

/** The load generator runs on its own core; the systems under test are pinned to the other by `targets.ts`. */
function pinSelf(): boolean {
  try {
    execFileSync('taskset', ['-pc', String(CORES.load), String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function readResults(file: string): BenchResult[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as BenchResult);
}

function writeReport(markdown: string, results: readonly BenchResult[], progress: (m: string) => void): void {
  if (markdown === '-') return;
  const run = results.find((r): r is RunSummary => r.bench === 'run')!;
  const text = renderReport({ ...run, results: results.filter((r) => r.bench !== 'run') });
  writeFileSync(markdown.startsWith('/') ? markdown : `${root}${markdown}`, text);
  progress(`report written to ${markdown}`);
}

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs(spec, argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n\n${formatHelp(spec, 'npm run bench --')}`);
      return 2;
    }
    throw err;
  }
  if (args.help) {
    process.stdout.write(formatHelp(spec, 'npm run bench --'));
    return 0;
  }
  if (typeof args.flags.report === 'string') {
    const results = readResults(args.flags.report);
    if (!results.some((r) => r.bench === 'run')) {
      process.stderr.write(`bench: --report: ${args.flags.report} has no "run" line (the last line a finished run prints)\n`);
      return 2;
    }
    writeReport(String(args.flags.markdown ?? 'docs/benchmarks.md'), results, (m) => process.stderr.write(`[bench] ${m}\n`));
    return 0;
  }
  const quick = args.flags.quick === true;
  const only = typeof args.flags.only === 'string' ? args.flags.only.split(',').map((s) => s.trim()) : [...SCENARIOS];
  const unknown = only.filter((s) => !(SCENARIOS as readonly string[]).includes(s));
  if (unknown.length) {
    process.stderr.write(`bench: --only: unknown scenario "${unknown[0]}"; choose from ${SCENARIOS.join(', ')}\n`);
    return 2;
  }
  if (!existsSync(`${root}dist/shared/cli/tributary.js`)) {
    process.stderr.write('bench: dist/ is missing: run "npm run build" first (npm run bench does)\n');
    return 2;
  }
  const deno = args.flags.deno !== false;
  const mosquitto = mosquittoVersion();
  const runtimes: Runtime[] = deno ? ['node', 'deno'] : ['node'];
  const suite = new Suite(
    {
      quick,
      runs: Number(args.flags.runs ?? (quick ? 1 : 5)),
      seconds: Number(args.flags.seconds ?? (quick ? 1.5 : 5)),
      runtimes,
      mosquitto,
    },
    (line) => process.stdout.write(`${line}\n`),
    (line) => process.stderr.write(`${line}\n`),
  );
  if (!pinSelf()) suite.progress('taskset is not available: processes are not pinned to cores, so results are noisier');
  if (!mosquitto) suite.progress('mosquitto is not installed (apt-get install mosquitto): its baselines are skipped');
  const started = Date.now();
  const run = (name: (typeof SCENARIOS)[number]) => only.includes(name);
  try {
    if (run('ingest')) {
      await ingest(suite, 'node', [1, 0]);
      if (deno) await ingest(suite, 'deno', [1]);
    }
    if (run('end-to-end')) {
      await endToEnd(suite, 'node', quick ? [5000] : [1000, 5000, 10_000], true);
      if (deno) await endToEnd(suite, 'deno', [5000], false);
    }
    if (run('max-rate')) await maxRate(suite, 'node', true);
    if (run('drain')) await drain(suite, 'node', quick ? 100_000 : 1_000_000);
    if (run('outage')) await outage(suite, 'node', quick ? 3 : 120);
    if (run('fan-out')) fanOut(suite);
    if (run('footprint')) {
      await footprint(suite, 'node', quick ? [2000] : [10_000]);
      if (deno) await footprint(suite, 'deno', quick ? [2000] : [10_000]);
    }
  } finally {
    suite.cleanup();
  }
  // The run itself is the last line, so saved JSON lines can be rendered again (--report) without re-measuring.
  const summary: RunSummary = {
    bench: 'run',
    mode: quick ? 'quick' : 'full',
    date: new Date().toISOString().slice(0, 10),
    durationSeconds: Math.round((Date.now() - started) / 1000),
    command: `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
    machine: machine(mosquitto, deno),
  };
  suite.emit(summary);
  writeReport(String(args.flags.markdown ?? 'docs/benchmarks.md'), suite.results, (m) => suite.progress(m));
  suite.progress(`done in ${Math.round((Date.now() - started) / 1000)} s`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
