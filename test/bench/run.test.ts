import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/repo-root.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { GOALS, renderReport } from './report.ts';

const entry = `${repoRoot}dist/test/bench/run.js`;

function bench(args: string[]) {
  return spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', timeout: 60_000 });
}

describe('npm run bench', () => {
  it('explains itself with --help', () => {
    const r = bench(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: npm run bench -- [flags]');
    expect(r.stdout).toContain('--quick');
  });

  it('names the bad scenario and the choices', () => {
    const r = bench(['--only', 'ingest,warp']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--only: unknown scenario "warp"; choose from ingest, end-to-end, max-rate, drain, outage, fan-out, footprint');
  });

  it('prints one JSON line per result and writes the Markdown report', () => {
    const dir = tempDir();
    try {
      const file = `${dir.path}/bench.md`;
      const r = bench(['--only', 'fan-out', '--no-deno', '--markdown', file]);
      expect(r.status).toBe(0);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { bench: string });
      expect(lines.map((l) => l.bench)).toEqual(['fan-out', 'run']);
      const md = readFileSync(file, 'utf8');
      expect(md).toMatch(/\| CPU \| .+ \(\d+ cores\) \|/);
      expect(md).toContain(`| Node.js | ${process.version} |`);
      expect(md).toContain('| Dispatch with 10,000 subscriptions | ≥ 0.5 × one subscription | not measured yet (no subscriptions API) | – |');
    } finally {
      dir.remove();
    }
  });
});

describe('npm run bench -- --report', () => {
  it('renders the report from saved JSON lines without measuring', () => {
    const dir = tempDir();
    try {
      const saved = `${dir.path}/results.jsonl`;
      const machine = { cpu: 'Saved CPU', cores: 2, memoryGiB: 24, os: 'Linux', node: 'v20.0.0', deno: null, mosquitto: null };
      const lines = [
        { bench: 'ingest', runtime: 'node', qos: 1, target: 'edge crash-safe', rate: 80_000, ratio: 1.2 },
        { bench: 'run', mode: 'full', date: '2026-01-02', durationSeconds: 700, command: 'npm run bench', machine },
      ];
      writeFileSync(saved, `progress noise\n${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
      const r = bench(['--report', saved, '--markdown', `${dir.path}/out.md`]);
      expect(r.status).toBe(0);
      const md = readFileSync(`${dir.path}/out.md`, 'utf8');
      expect(md).toContain('(full run, 700 s) on 2026-01-02');
      expect(md).toContain('| CPU | Saved CPU (2 cores) |');
      expect(md).toContain('| Edge ingest, QoS 1, crash-safe (Node) | ≥ 0.75 × plain Aedes | 1.2 × (80,000/s) | yes |');

      writeFileSync(saved, `${JSON.stringify(lines[0])}\n`);
      const bad = bench(['--report', saved, '--markdown', '-']);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toContain('has no "run" line');
    } finally {
      dir.remove();
    }
  });
});

describe('the benchmark report', () => {
  const machine = { cpu: 'Test CPU', cores: 2, memoryGiB: 24, os: 'Linux', node: 'v20', deno: '2.9', mosquitto: '2.0' };
  const render = (results: Parameters<typeof renderReport>[0]['results']) =>
    renderReport({ machine, mode: 'quick', date: '2026-01-01', durationSeconds: 1, command: 'npm run bench', results });

  it('marks each target met or not from the measured values', () => {
    const md = render([
      { bench: 'ingest', runtime: 'node', qos: 1, target: 'edge crash-safe', rate: 70_000, ratio: 0.8 },
      { bench: 'ingest', runtime: 'node', qos: 1, target: 'edge power-safe', rate: 50_000, ratio: 0.6 },
    ]);
    expect(md).toContain('| Edge ingest, QoS 1, crash-safe (Node) | ≥ 0.75 × plain Aedes | 0.8 × (70,000/s) | yes |');
    expect(md).toContain('| Edge ingest, QoS 1, power-safe (Node) | ≥ 0.65 × plain Aedes | 0.6 × (50,000/s) | **no** |');
    expect(md).toContain('| Drain of the backlog | ≥ 50,000 events/s | not measured in this run | – |');
  });

  it('has a goal for every target the benchmark issue sets', () => {
    expect(GOALS.map((g) => g.goal)).toEqual([
      '≥ 0.75 × plain Aedes',
      '≥ 0.65 × plain Aedes',
      '< 15 ms',
      '< 50 ms',
      '≥ 50,000 events/s',
      '< 250 ms',
      '≥ 0.5 × one subscription',
      'within 10%',
      '≤ 10 KiB',
    ]);
  });
});
