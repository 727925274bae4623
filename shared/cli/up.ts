/**
 * `tributary up`: a whole mesh on one machine. Starts a cloud node, an edge node and a simulated fleet as
 * separate processes (the same runtime as this one), each started once the one before it listens, and stops them
 * in reverse order on Ctrl-C. The children run in their own process group so that the terminal's Ctrl-C reaches
 * only this process, which then stops each child gracefully.
 *
 * The mesh runs secured, as a deployment would: before the nodes start, `up` gives the edge a fresh token on the
 * cloud (`tributary edges add`), makes an API token with scope admin for the user (`tributary tokens add`, written
 * to `<data-dir>/api-token`), and gives each simulated device its own password (`tributary devices add`; kept
 * across runs, only missing devices are added).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import process from 'node:process';
import { join } from 'node:path';
import { Logger } from '../logger.ts';
import { moduleCommand, moduleExtension } from '../runtime.ts';
import type { CommandSpec } from './args.ts';
import { formatHelp, parseArgs } from './args.ts';
import { reportUsageError, waitForSignal } from './node-command.ts';

export const spec: CommandSpec = {
  name: 'up',
  summary: 'Run a whole mesh on this machine: a cloud node, an edge node and simulated devices, each its own process.',
  flags: [
    { name: 'devices', type: 'number', default: 20, help: 'Simulated devices.' },
    { name: 'rate', type: 'number', default: 1, help: 'Messages per second per device.' },
    { name: 'data-dir', type: 'string', value: 'DIR', default: '.data', help: 'Base directory for the cloud log and the edge buffer.' },
    { name: 'http-port', type: 'number', default: 8080, help: "The cloud's HTTP API port." },
    { name: 'uplink-port', type: 'number', default: 1884, help: "The cloud's uplink port." },
    { name: 'mqtt-port', type: 'number', default: 1883, help: "The edge's MQTT port for devices." },
    { name: 'ws-port', type: 'number', default: 9001, help: "The edge's MQTT over WebSocket port." },
    { name: 'edge-http-port', type: 'number', default: 8081, help: "The edge's status endpoint port (tributary status reads it)." },
    { name: 'status-interval', type: 'number', value: 'MS', default: 5000, help: 'How often each node logs its status line.' },
    { name: 'log-format', type: 'string', value: 'FORMAT', help: 'json or pretty (default: pretty on a terminal, json otherwise).' },
  ],
  examples: ['tributary up', 'tributary up --devices 200 --rate 5'],
};

export async function main(argv: string[]): Promise<number> {
  let flags: Record<string, string | number | boolean | undefined>;
  try {
    const args = parseArgs(spec, argv);
    if (args.help) {
      process.stdout.write(formatHelp(spec));
      return 0;
    }
    flags = args.flags;
  } catch (err) {
    return reportUsageError(err);
  }
  const format = (flags['log-format'] as string | undefined) ?? (process.stderr.isTTY ? 'pretty' : 'json');
  const logger = new Logger({ format: format === 'pretty' ? 'pretty' : 'json' }).child({ component: 'up' });
  const dataDir = (flags['data-dir'] as string | undefined) ?? '.data';
  const httpPort = (flags['http-port'] as number | undefined) ?? 8080;
  const uplinkPort = (flags['uplink-port'] as number | undefined) ?? 1884;
  const mqttPort = (flags['mqtt-port'] as number | undefined) ?? 1883;
  const wsPort = (flags['ws-port'] as number | undefined) ?? 9001;
  const edgeHttpPort = (flags['edge-http-port'] as number | undefined) ?? 8081;
  const interval = String((flags['status-interval'] as number | undefined) ?? 5000);
  const common = ['--log-format', format, '--status-interval', interval];

  const edgeDir = join(dataDir, 'edge-1');
  const cloudDir = join(dataDir, 'cloud');
  const devices = (flags.devices as number | undefined) ?? 20;
  let credentials: Credentials;
  try {
    credentials = await provision({ dataDir, cloudDir, edgeDir, devices, logger });
  } catch (err) {
    logger.error(`cannot set up credentials: ${(err as Error).message}`);
    return 1;
  }

  const children: { name: string; child: ChildProcess }[] = [];
  let failed = false;
  let stopping = false;
  let childDied: (() => void) | undefined;
  const died = new Promise<void>((resolve) => (childDied = resolve));
  const start = async (name: string, args: string[], ready?: number) => {
    const child = run([...args, ...common]);
    children.push({ name, child });
    child.on('exit', (code, signal) => {
      if (!stopping) {
        failed = true;
        logger.error(`${name} exited unexpectedly; stopping the mesh`, { code, signal });
        childDied!();
      }
    });
    if (ready !== undefined) await waitForPort('127.0.0.1', ready, 30_000, () => child.exitCode !== null);
  };
  try {
    await start('cloud', ['cloud', '--data-dir', cloudDir, '--http-port', String(httpPort), '--uplink-port', String(uplinkPort)], httpPort);
    await start('edge', ['edge', '--data-dir', edgeDir, '--port', String(mqttPort), '--ws-port', String(wsPort), '--http-port', String(edgeHttpPort), '--cloud', `mqtt://127.0.0.1:${uplinkPort}`, '--uplink-token-file', credentials.edgeTokenFile, '--max-connections-per-ip', String(Math.max(256, devices + 16))], mqttPort);
    await start('simulate', ['simulate', '--edge', `mqtt://127.0.0.1:${mqttPort}`, '--devices', String(devices), '--rate', String(flags.rate ?? 1), '--credentials', credentials.simulatorFile]);
    logger.info('mesh running; press Ctrl-C to stop', {
      devices: `mqtt://127.0.0.1:${mqttPort}`,
      api: `http://127.0.0.1:${httpPort}`,
      apiAccess: `the token is in ${credentials.apiTokenFile}: curl -H "Authorization: Bearer $(cat ${credentials.apiTokenFile})" http://127.0.0.1:${httpPort}/v1/events`,
      stream: `http://127.0.0.1:${httpPort}/v1/stream?from=1`,
      edgeStatus: `http://127.0.0.1:${edgeHttpPort}/v1/status`,
      watch: `tributary status --edge http://127.0.0.1:${edgeHttpPort} --watch 2`,
    });
    await Promise.race([waitForSignal(logger), died]);
  } catch (err) {
    failed = true;
    logger.error((err as Error).message);
  }
  stopping = true;
  for (const { name, child } of children.reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    child.kill('SIGTERM');
    const exited = await Promise.race([new Promise((r) => child.once('exit', () => r(true))), delay(10_000).then(() => false)]);
    if (!exited) {
      logger.warn(`${name} did not stop in 10 s; killing it`);
      child.kill('SIGKILL');
    }
  }
  return failed ? 1 : 0;
}

function run(args: string[]): ChildProcess {
  const { command, args: prefix } = moduleCommand(new URL('./tributary' + moduleExtension(import.meta.url), import.meta.url));
  return spawn(command, [...prefix, ...args], { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
}

interface Credentials {
  edgeTokenFile: string;
  apiTokenFile: string;
  simulatorFile: string;
}

/** Makes the credentials the mesh runs with (see the module comment), with the `tributary` CLI itself. */
async function provision(o: { dataDir: string; cloudDir: string; edgeDir: string; devices: number; logger: Logger }): Promise<Credentials> {
  const edgeTokenFile = join(o.edgeDir, 'uplink-token');
  const apiTokenFile = join(o.dataDir, 'api-token');
  const simulatorFile = join(o.edgeDir, 'simulator-credentials.json');
  // A new token every run: the cloud and edge directories can be deleted independently, and a fresh token always matches.
  await cli(['edges', 'add', 'edge-1', '--data-dir', o.cloudDir, '--token-file', edgeTokenFile]);
  await cli(['tokens', 'remove', 'local-admin', '--data-dir', o.cloudDir], true);
  await cli(['tokens', 'add', 'local-admin', '--scopes', 'admin', '--data-dir', o.cloudDir, '--token-file', apiTokenFile]);

  // Device passwords are kept across runs (hashing them takes a moment); only devices the edge does not know are added.
  const known = new Set((JSON.parse(await cli(['devices', 'list', '--data-dir', o.edgeDir, '--json'])) as { devices: { deviceId: string }[] }).devices.map((d) => d.deviceId));
  const kept = existsSync(simulatorFile) ? (JSON.parse(readFileSync(simulatorFile, 'utf8')) as { devices: { deviceId: string; password: string }[] }).devices.filter((d) => known.has(d.deviceId)) : [];
  const have = new Set(kept.map((d) => d.deviceId));
  const missing = Array.from({ length: o.devices }, (_, i) => `sim-${String(i + 1).padStart(4, '0')}`).filter((id) => !have.has(id));
  const added: { deviceId: string; password: string }[] = [];
  for (let i = 0; i < missing.length; i += 100) {
    if (missing.length > 100) o.logger.info('adding simulated devices', { done: i, of: missing.length });
    const out = await cli(['devices', 'add', ...missing.slice(i, i + 100), '--data-dir', o.edgeDir, '--replace', '--json']);
    added.push(...(JSON.parse(out) as { devices: { deviceId: string; password: string }[] }).devices);
  }
  writeFileSync(simulatorFile, JSON.stringify({ devices: [...kept, ...added] }, null, 2) + '\n', { mode: 0o600 });
  o.logger.info('credentials ready', { edgeCredentialFile: edgeTokenFile, apiCredentialFile: apiTokenFile, devices: kept.length + added.length, addedDevices: added.length });
  return { edgeTokenFile, apiTokenFile, simulatorFile };
}

/** Runs a `tributary` subcommand and returns what it printed; throws with its error output when it fails (unless `mayFail`). */
function cli(args: string[], mayFail = false): Promise<string> {
  const { command, args: prefix } = moduleCommand(new URL('./tributary' + moduleExtension(import.meta.url), import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...prefix, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0 || mayFail) resolve(out);
      else reject(new Error(`"tributary ${args.slice(0, 2).join(' ')}" failed: ${err.trim() || `exit code ${code}`}`));
    });
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitForPort(host: string, port: number, timeoutMs: number, gaveUp: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gaveUp()) throw new Error(`process exited before listening on ${host}:${port}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, host, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    await delay(100);
  }
  throw new Error(`nothing listened on ${host}:${port} within ${timeoutMs} ms`);
}
