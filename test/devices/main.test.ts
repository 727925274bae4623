import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import process from 'node:process';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Aedes } from 'aedes';
import { main, spec } from '../../devices/main.ts';
import { tempDir } from '../helpers/temp-dir.ts';

/** Runs `main` with stdout and stderr captured. */
async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
  try {
    const code = await main(argv);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('tributary simulate', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir('tributary-simulate-');
  });
  afterEach(() => dir.remove());

  it('prints its help, naming every flag, and exits 0', async () => {
    const { code, stdout } = await run(['--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: tributary simulate');
    for (const flag of spec.flags) expect(stdout).toContain(`--${flag.name}`);
  });

  it.each([
    [['--devices', 'many'], /--devices takes a number/],
    [['--qos', '2'], /flag --qos: .*0\|1/],
    [['--edge', 'http://x'], /flag --edge: must be an MQTT URL/],
    [['--bogus'], /unknown flag --bogus/],
    [['extra'], /unexpected argument "extra"/],
  ])('rejects %j with one clear message and exit status 2', async (argv, message) => {
    const { code, stderr } = await run(argv);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it('names a misspelt key of the config file', async () => {
    const file = join(dir.path, 'sim.yaml');
    writeFileSync(file, 'devices: 3\nrat: 5\n');
    const { code, stderr } = await run(['--config', file]);
    expect(code).toBe(2);
    expect(stderr).toContain(file);
    expect(stderr).toMatch(/rat/);
  });

  it('reports an ack file it cannot open with exit status 2', async () => {
    const { code, stderr } = await run(['--ack-file', join(dir.path, 'missing', 'acks.txt'), '--log-level', 'silent']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/cannot open the ack file/);
  });

  it('with --messages, exits 0 once every message is acknowledged, and records each ack once in --ack-file', async () => {
    const aedes = await Aedes.createBroker();
    const server = createServer(aedes.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as AddressInfo).port;
    const config = join(dir.path, 'sim.yaml');
    // The file names a wrong edge; the flag overrides it.
    writeFileSync(config, 'edge:\n  url: mqtt://127.0.0.1:1\ndevices: 4\nrate: 100\nlog:\n  level: silent\n');
    const acks = join(dir.path, 'acks.txt');
    writeFileSync(acks, 'earlier-run 0\n');
    try {
      const { code } = await run(['--config', config, '--edge', `mqtt://127.0.0.1:${port}`, '--messages', '25', '--ack-file', acks, '--prefix', 'm-']);
      expect(code).toBe(0);
    } finally {
      server.close();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    }
    const lines = readFileSync(acks, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('earlier-run 0');
    const recorded = lines.slice(1);
    const expected = ['m-0001', 'm-0002', 'm-0003', 'm-0004'].flatMap((id) => Array.from({ length: 25 }, (_, seq) => `${id} ${seq}`));
    expect(recorded.sort()).toEqual(expected.sort());
  });

  it('logs status lines with the counters and rates', async () => {
    const aedes = await Aedes.createBroker();
    const server = createServer(aedes.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as AddressInfo).port;
    try {
      const { code, stderr } = await run(['--edge', `mqtt://127.0.0.1:${port}`, '--devices', '2', '--rate', '20', '--messages', '40', '--status-interval', '200']);
      expect(code).toBe(0);
      const records = stderr.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
      const status = records.filter((r) => r.msg === 'status');
      expect(status.length).toBeGreaterThan(0);
      expect(status[0]).toMatchObject({ component: 'simulate', level: 'info' });
      for (const key of ['connected', 'sent', 'acked', 'sentPerSec', 'ackedPerSec', 'errors']) expect(status[0]).toHaveProperty(key);
      expect(records.at(-1)).toMatchObject({ msg: 'stopped', sent: 80, acked: 80, done: true });
    } finally {
      server.close();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    }
  });
});
