/**
 * A mesh of real processes for end-to-end tests: a cloud node and an edge node on temp data dirs and free
 * ports, and helpers to read the cloud log over the HTTP API.
 */
import type { CloudEvent } from '../../shared/cloud-event.ts';
import { freePort } from '../helpers/free-port.ts';
import type { Runtime } from '../helpers/node-process.ts';
import { NodeProcess } from '../helpers/node-process.ts';
import { tempDir } from '../helpers/temp-dir.ts';

export interface Mesh {
  cloud: NodeProcess;
  edge: NodeProcess;
  edgeUrl: string;
  httpUrl: string;
  startEdge(): Promise<NodeProcess>;
  stop(): Promise<void>;
}

export async function startMesh(runtime: Runtime, edgeId = 'edge-e2e'): Promise<Mesh> {
  const dir = tempDir('tributary-e2e-');
  const cloud = new NodeProcess(runtime, ['cloud', '--data-dir', `${dir.path}/cloud`, '--uplink-port', '0', '--http-port', '0', '--status-interval', '0']);
  const started = await cloud.waitForLog('cloud node started');
  const uplink = String(started.uplink);
  const httpUrl = String(started.http);
  const mqttPort = await freePort();
  const edgeArgs = ['edge', '--edge-id', edgeId, '--data-dir', `${dir.path}/edge`, '--port', String(mqttPort), '--ws-port', '0', '--cloud', uplink, '--status-interval', '0'];
  const mesh: Mesh = {
    cloud,
    edge: undefined as unknown as NodeProcess,
    edgeUrl: `mqtt://127.0.0.1:${mqttPort}`,
    httpUrl,
    async startEdge() {
      const edge = new NodeProcess(runtime, edgeArgs);
      await edge.waitForLog('edge node started');
      mesh.edge = edge;
      return edge;
    },
    async stop() {
      await mesh.edge?.stop();
      await cloud.stop();
      dir.remove();
    },
  };
  await mesh.startEdge();
  return mesh;
}

/** Every event in the cloud log, read page by page over the HTTP API. */
export async function readCloudLog(httpUrl: string): Promise<{ offset: number; event: CloudEvent }[]> {
  const out: { offset: number; event: CloudEvent }[] = [];
  let from = 1;
  for (;;) {
    const res = await fetch(`${httpUrl}/v1/events?from=${from}&limit=10000`);
    if (!res.ok) throw new Error(`GET /v1/events: ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { events: { offset: number; event: CloudEvent }[]; next: number; lastOffset: number };
    out.push(...page.events);
    if (page.events.length === 0 || page.next > page.lastOffset) return out;
    from = page.next;
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
