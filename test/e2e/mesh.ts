/**
 * A mesh of real processes for end-to-end and fault tests: a cloud node and an edge node on temp data dirs, and
 * helpers to kill and restart either, run the device simulator, and read the cloud log over the HTTP API.
 *
 * Ports are chosen once, when the mesh starts, so that a node killed with SIGKILL comes back on the same ports and
 * the same data dir: devices and the edge's uplink redial the address they know. The edge runs from a config
 * file with a short reconnect backoff (50 ms doubling to 500 ms), so a test does not wait seconds for it to see a
 * cloud that came back. With `proxy`, the edge's uplink goes through a TcpProxy that the test cuts, delays or
 * partitions.
 *
 * The mesh runs secured as a user would run it: the cloud accepts only its edge's token and answers the API only
 * with a bearer token (`mesh.apiToken`, scope admin), both made before it starts. Devices connect anonymously
 * (`auth.allowAnonymous` in the edge config) unless `deviceCredentials` asks for a password per simulated device.
 */
import { writeFileSync } from 'node:fs';
import { ApiTokens } from '../../cloud/api-tokens.ts';
import { EdgeCredentials } from '../../cloud/edge-credentials.ts';
import { DeviceCredentials } from '../../edge/device-credentials.ts';
import type { CloudEvent } from '../../shared/cloud-event.ts';
import { freePort } from '../helpers/free-port.ts';
import type { Runtime } from '../helpers/node-process.ts';
import { NodeProcess } from '../helpers/node-process.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';
import type { TcpProxyOptions } from '../helpers/tcp-proxy.ts';
import { tempDir } from '../helpers/temp-dir.ts';

export interface MeshOptions {
  /** Default `edge-e2e`. */
  edgeId?: string;
  /** Route the edge's uplink through a TcpProxy (`mesh.proxy`); `true` for one that forwards without delay. */
  proxy?: boolean | Omit<TcpProxyOptions, 'target' | 'port'>;
  /** Settings merged into the edge's config file, e.g. `{ statusIntervalMs: 200, uplink: { inflight: 2 } }`. */
  edgeConfig?: Record<string, unknown>;
  /** Start the cloud node with the mesh (default true); false leaves its ports closed until `startCloud()`. */
  cloud?: boolean;
  /** Extra flags for the cloud node, e.g. `['--log-level', 'debug']`. */
  cloudArgs?: string[];
  /** Run one node on another runtime than the mesh's (e.g. an edge on Deno with a cloud on Node). */
  cloudRuntime?: Runtime;
  edgeRuntime?: Runtime;
  /** Give simulated devices `{prefix}0001` ... `{prefix}NNNN` (default prefix `sim-`) passwords, and turn anonymous devices off. */
  deviceCredentials?: { devices: number; prefix?: string };
}

export interface Mesh {
  readonly runtime: Runtime;
  /** The mesh's temp directory (data dirs, config files); a test may keep its own files here. */
  readonly dir: string;
  /** The running (or last) cloud and edge processes; restarts replace them. */
  cloud: NodeProcess;
  edge: NodeProcess;
  /** Where devices connect. */
  edgeUrl: string;
  /** The cloud's HTTP API. */
  httpUrl: string;
  /** The cloud's uplink listener. */
  cloudUplinkUrl: string;
  /** What the edge dials for its uplink: the proxy's URL with `proxy`, otherwise `cloudUplinkUrl`. */
  edgeUplinkUrl: string;
  proxy: TcpProxy | undefined;
  /** A cloud API token with scope admin. */
  apiToken: string;
  /** `{authorization: 'Bearer <apiToken>'}`, for fetch. */
  authHeaders: Record<string, string>;
  /** The simulator's credentials file (`deviceCredentials`), in the format `tributary devices add --json` prints. */
  simulatorCredentials: string | undefined;
  startCloud(): Promise<NodeProcess>;
  /** Sends `signal` (default SIGKILL) to the cloud and waits for it to exit; returns its exit code. */
  killCloud(signal?: NodeJS.Signals): Promise<number | null>;
  startEdge(): Promise<NodeProcess>;
  /** Sends `signal` (default SIGKILL) to the edge and waits for it to exit; returns its exit code. */
  killEdge(signal?: NodeJS.Signals): Promise<number | null>;
  stop(): Promise<void>;
}

/** Starts a cloud (unless `options.cloud` is false) and an edge node. A string names the edge (the old form). */
export async function startMesh(runtime: Runtime, options: string | MeshOptions = {}): Promise<Mesh> {
  const o: MeshOptions = typeof options === 'string' ? { edgeId: options } : options;
  const edgeId = o.edgeId ?? 'edge-e2e';
  const dir = tempDir('tributary-e2e-');
  const [uplinkPort, httpPort, mqttPort] = [await freePort(), await freePort(), await freePort()];
  const cloudUplinkUrl = `mqtt://127.0.0.1:${uplinkPort}`;
  const proxy = o.proxy ? await TcpProxy.start({ ...(o.proxy === true ? {} : o.proxy), target: { port: uplinkPort } }) : undefined;
  const edgeUplinkUrl = proxy?.url ?? cloudUplinkUrl;

  // Credentials, as an operator makes them: the edge's token on the cloud, an API token, devices' passwords.
  const edgeTokenFile = `${dir.path}/edge-token`;
  const edges = await EdgeCredentials.open(`${dir.path}/cloud/edges.json`);
  writeFileSync(edgeTokenFile, (await edges.add(edgeId)).token + '\n', { mode: 0o600 });
  const apiToken = (await (await ApiTokens.open(`${dir.path}/cloud/tokens.json`)).add('e2e', ['admin'])).token;
  let simulatorCredentials: string | undefined;
  if (o.deviceCredentials) {
    const devices = await DeviceCredentials.open(`${dir.path}/edge/devices.json`);
    const list: { deviceId: string; password: string }[] = [];
    for (let i = 1; i <= o.deviceCredentials.devices; i++) {
      const deviceId = `${o.deviceCredentials.prefix ?? 'sim-'}${String(i).padStart(4, '0')}`;
      list.push({ deviceId, password: (await devices.add(deviceId)).password });
    }
    simulatorCredentials = `${dir.path}/simulator-credentials.json`;
    writeFileSync(simulatorCredentials, JSON.stringify({ devices: list }), { mode: 0o600 });
  }

  const edgeConfigFile = `${dir.path}/edge.json`;
  const edgeConfig = merge(
    {
      edgeId,
      dataDir: `${dir.path}/edge`,
      mqtt: { host: '127.0.0.1', port: mqttPort, wsPort: 0 },
      http: { port: 0 },
      auth: { allowAnonymous: !o.deviceCredentials },
      uplink: { url: edgeUplinkUrl, reconnectInitialMs: 50, reconnectMaxMs: 500, tokenFile: edgeTokenFile },
      statusIntervalMs: 0,
    },
    o.edgeConfig ?? {},
  );
  writeFileSync(edgeConfigFile, JSON.stringify(edgeConfig, null, 2));
  const cloudArgs = ['cloud', '--data-dir', `${dir.path}/cloud`, '--uplink-port', String(uplinkPort), '--http-port', String(httpPort), '--status-interval', '0', ...(o.cloudArgs ?? [])];

  const mesh: Mesh = {
    runtime,
    dir: dir.path,
    cloud: undefined as unknown as NodeProcess,
    edge: undefined as unknown as NodeProcess,
    edgeUrl: `mqtt://127.0.0.1:${mqttPort}`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    cloudUplinkUrl,
    edgeUplinkUrl,
    proxy,
    apiToken,
    authHeaders: { authorization: `Bearer ${apiToken}` },
    simulatorCredentials,
    async startCloud() {
      const cloud = new NodeProcess(o.cloudRuntime ?? runtime, cloudArgs);
      mesh.cloud = cloud;
      await cloud.waitForLog('cloud node started');
      return cloud;
    },
    killCloud(signal = 'SIGKILL') {
      return mesh.cloud.stop(signal);
    },
    async startEdge() {
      const edge = new NodeProcess(o.edgeRuntime ?? runtime, ['edge', '--config', edgeConfigFile]);
      mesh.edge = edge;
      await edge.waitForLog('edge node started');
      return edge;
    },
    killEdge(signal = 'SIGKILL') {
      return mesh.edge.stop(signal);
    },
    async stop() {
      await mesh.edge?.stop();
      await mesh.cloud?.stop();
      await proxy?.close();
      dir.remove();
    },
  };
  try {
    if (o.cloud !== false) await mesh.startCloud();
    await mesh.startEdge();
  } catch (err) {
    await mesh.stop();
    throw err;
  }
  return mesh;
}

/** `patch` laid over `base`, objects merged key by key (arrays and other values replace). */
function merge(base: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    const under = out[key];
    const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
    out[key] = isObject(under) && isObject(value) ? merge(under, value) : value;
  }
  return out;
}

export interface SimulatorOptions {
  devices: number;
  messages: number;
  /** Messages per second per device. */
  rate: number;
  /** Where the simulator appends `deviceId seq` for every acknowledged publish. */
  ackFile?: string;
  seed?: number;
  /** Time between a device's reconnect attempts. Default 200 ms (the simulator's own default is 1 s). */
  reconnectPeriodMs?: number;
  /** Default the mesh's runtime. */
  runtime?: Runtime;
  /** Where the devices connect; default the edge (`mesh.edgeUrl`), e.g. a proxy in front of it. */
  url?: string;
}

/** Runs `tributary simulate` against the mesh's edge: QoS 1, persistent sessions, until every message is acked. */
export function startSimulator(mesh: Mesh, o: SimulatorOptions): NodeProcess {
  const configFile = `${mesh.dir}/fleet-${Date.now()}-${Math.floor(Math.random() * 1e6)}.json`;
  writeFileSync(configFile, JSON.stringify({ reconnectPeriodMs: o.reconnectPeriodMs ?? 200 }));
  const args = ['simulate', '--config', configFile, '--edge', o.url ?? mesh.edgeUrl, '--devices', String(o.devices), '--messages', String(o.messages), '--rate', String(o.rate), '--qos', '1', '--status-interval', '0'];
  if (o.ackFile) args.push('--ack-file', o.ackFile);
  if (mesh.simulatorCredentials) args.push('--credentials', mesh.simulatorCredentials);
  if (o.seed !== undefined) args.push('--seed', String(o.seed));
  return new NodeProcess(o.runtime ?? mesh.runtime, args);
}

/** Every event in the cloud log, read page by page over the HTTP API (with the mesh's token; or a URL and a token). */
export async function readCloudLog(target: Pick<Mesh, 'httpUrl' | 'apiToken'> | string, token?: string): Promise<{ offset: number; event: CloudEvent }[]> {
  const httpUrl = typeof target === 'string' ? target : target.httpUrl;
  const bearer = typeof target === 'string' ? token : target.apiToken;
  const headers: Record<string, string> = bearer === undefined ? {} : { authorization: `Bearer ${bearer}` };
  const out: { offset: number; event: CloudEvent }[] = [];
  let from = 1;
  for (;;) {
    const res = await fetch(`${httpUrl}/v1/events?from=${from}&limit=10000`, { headers });
    if (!res.ok) throw new Error(`GET /v1/events: ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { events: { offset: number; event: CloudEvent }[]; next: number; lastOffset: number };
    out.push(...page.events);
    if (page.events.length === 0 || page.next > page.lastOffset) return out;
    from = page.next;
  }
}

/** The cloud log's last offset (`/healthz`), or undefined while the cloud does not answer. */
export async function cloudLastOffset(httpUrl: string): Promise<number | undefined> {
  try {
    const res = await fetch(`${httpUrl}/healthz`);
    if (!res.ok) return undefined;
    return ((await res.json()) as { lastOffset: number }).lastOffset;
  } catch {
    return undefined;
  }
}

/** Groups telemetry events by device (subject) into their payload `seq` values, in log order. */
export function seqsByDevice(events: { event: CloudEvent }[]): Map<string, number[]> {
  const byDevice = new Map<string, number[]>();
  for (const { event } of events) {
    const list = byDevice.get(event.subject!) ?? [];
    list.push((event.data as { seq: number }).seq);
    byDevice.set(event.subject!, list);
  }
  return byDevice;
}
