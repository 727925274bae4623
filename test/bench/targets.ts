/**
 * The systems a benchmark measures, each a real process pinned to a CPU core: the plain Aedes baseline, the
 * edge and cloud nodes (on Node or Deno), and Mosquitto alone or as an edge broker bridging to a cloud broker.
 * Each is started fresh on its own temp data dir, so runs do not inherit each other's state.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { freePort } from '../helpers/free-port.ts';
import type { Runtime } from '../helpers/node-process.ts';
import { NodeProcess, portOf } from '../helpers/node-process.ts';
import { repoRoot } from '../helpers/repo-root.ts';

const root = repoRoot;

/**
 * Where the systems under test run, and where the load generator runs. A cloud (Tributary's or Mosquitto's)
 * shares the load generator's core at a lower priority, so the instrument's timing stays true: at the rates
 * measured the generator uses a fraction of its core, and the cloud gets the rest.
 */
export const CORES = { system: 0, load: 1, cloud: 1 } as const;
export const CLOUD_NICE = 10;

export interface Target {
  name: string;
  runtime: Runtime | 'c';
  port: number;
  pid: number;
  /** Resident set size of the process, KiB. */
  rssKiB(): number;
  stop(): Promise<void>;
}

export function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!match) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]);
}

/** Bytes of all files under `dir`. */
export function diskBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const path = `${dir}/${name}`;
    const info = statSync(path);
    total += info.isDirectory() ? diskBytes(path) : info.size;
  }
  return total;
}

function target(name: string, runtime: Target['runtime'], port: number, proc: NodeProcess): Target {
  const pid = proc.child.pid!;
  return { name, runtime, port, pid, rssKiB: () => rssKiB(pid), stop: async () => void (await proc.stop()) };
}

/** The plain Aedes broker of `aedes-broker.ts`. */
export async function startAedes(runtime: Runtime, cpu: number = CORES.system): Promise<Target> {
  const port = await freePort();
  const command =
    runtime === 'deno'
      ? { command: `${root}node_modules/.bin/deno`, args: ['run', '-A', '--quiet', `${root}test/bench/aedes-broker.ts`] }
      : { command: process.execPath, args: [`${root}dist/test/bench/aedes-broker.js`] };
  const proc = new NodeProcess(command, ['--port', String(port)], { cpu });
  await proc.waitForLog('broker started');
  return target(`aedes-${runtime}`, runtime, port, proc);
}

export interface EdgeTarget extends Target {
  dataDir: string;
  /** Base URL of the edge's status endpoint (`/v1/status`). */
  statusUrl: string;
}

export interface EdgeStart {
  runtime: Runtime;
  dataDir: string;
  durability: 'crash-safe' | 'power-safe';
  /** The cloud's uplink URL; a closed port keeps the uplink idle (ingest only). */
  cloudUrl: string;
  cpu?: number;
  edgeId?: string;
  /** An edge config file (YAML or JSON) for what has no flag, e.g. lane rules. */
  configFile?: string;
}

export async function startEdge(options: EdgeStart): Promise<EdgeTarget> {
  const port = await freePort();
  const args = ['edge', '--edge-id', options.edgeId ?? 'bench-edge', '--data-dir', options.dataDir, '--port', String(port), '--ws-port', '0', '--http-port', '0', '--allow-anonymous', '--publish-rate', '0', '--max-connections-per-ip', '0'];
  if (options.configFile) args.push('--config', options.configFile);
  args.push('--cloud', options.cloudUrl, '--durability', options.durability, '--status-interval', '0');
  const proc = new NodeProcess(options.runtime, args, { cpu: options.cpu ?? CORES.system });
  const started = await proc.waitForLog('edge node started');
  return { ...target(`edge-${options.durability}-${options.runtime}`, options.runtime, port, proc), dataDir: options.dataDir, statusUrl: String(started.http) };
}

export interface CloudTarget extends Target {
  httpUrl: string;
  uplinkUrl: string;
}

export async function startCloud(runtime: Runtime, dataDir: string, uplinkPort = 0, cpu: number = CORES.cloud): Promise<CloudTarget> {
  const args = ['cloud', '--data-dir', dataDir, '--uplink-port', String(uplinkPort), '--http-port', '0', '--status-interval', '0', '--allow-anonymous'];
  const proc = new NodeProcess(runtime, args, { cpu, nice: cpu === CORES.load ? CLOUD_NICE : undefined });
  const started = await proc.waitForLog('cloud node started');
  const uplinkUrl = String(started.uplink);
  return { ...target(`cloud-${runtime}`, runtime, portOf(uplinkUrl), proc), httpUrl: String(started.http), uplinkUrl };
}

/** Mosquitto's version, or null when it is not installed. */
export function mosquittoVersion(): string | null {
  if (!existsSync('/usr/sbin/mosquitto')) return null;
  try {
    const out = execFileSync('/usr/sbin/mosquitto', ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return /version (\S+)/.exec(out)?.[1] ?? 'unknown';
  } catch (err) {
    // `mosquitto -h` exits 3 after printing its usage.
    const out = String((err as { stdout?: string }).stdout ?? '');
    return /version (\S+)/.exec(out)?.[1] ?? 'unknown';
  }
}

export interface MosquittoStart {
  dir: string;
  cpu?: number;
  /** Bridge `telemetry/#` out at QoS 1 to this port (the edge half of the bridge pair). */
  bridgeTo?: number;
  name?: string;
}

/**
 * Mosquitto with the settings a gateway operator would use for a fair comparison: no limit on queued
 * messages (the default of 1000 would drop QoS 1 messages under load), in-memory only (Mosquitto persists to
 * disk only on a timer, so unlike the edge it is not crash-safe per message).
 */
export async function startMosquitto(options: MosquittoStart): Promise<Target> {
  const port = await freePort();
  const name = options.name ?? (options.bridgeTo ? 'mosquitto-edge' : 'mosquitto');
  const lines = [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'user root',
    'persistence false',
    'max_queued_messages 0',
    'max_inflight_messages 1000',
    'log_type error',
    'log_type warning',
  ];
  if (options.bridgeTo) {
    lines.push(`connection ${name}-bridge`, `address 127.0.0.1:${options.bridgeTo}`, 'topic telemetry/# out 1', 'bridge_protocol_version mqttv311', 'cleansession true', 'try_private false');
  }
  const file = `${options.dir}/${name}.conf`;
  writeFileSync(file, `${lines.join('\n')}\n`);
  const cpu = options.cpu ?? CORES.system;
  const proc = new NodeProcess({ command: '/usr/sbin/mosquitto', args: ['-c', file] }, [], { cpu, nice: cpu === CORES.load ? CLOUD_NICE : undefined });
  await waitForPort(port, proc);
  return target(name, 'c', port, proc);
}

async function waitForPort(port: number, proc: NodeProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) throw new Error(`process exited (${proc.child.exitCode}) before listening on ${port}:\n${proc.output.join('\n')}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms:\n${proc.output.join('\n')}`);
}
