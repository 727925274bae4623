import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtime } from '../helpers/node-process.ts';
import { NodeProcess } from '../helpers/node-process.ts';
import { SseClient } from '../helpers/sse-client.ts';
import { waitFor } from '../helpers/wait.ts';
import type { Mesh } from './mesh.ts';
import { readCloudLog, seqsByDevice, startMesh } from './mesh.ts';

const DEVICES = 5;
const MESSAGES = 40;
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

for (const runtime of ['node', 'deno'] as Runtime[]) {
  describe(`the data path on ${runtime}, secured: device → edge → cloud → subscriber`, () => {
    let mesh: Mesh;
    let sim: NodeProcess | undefined;

    beforeAll(async () => {
      // Devices with passwords, the edge with its token, the subscriber with an API token: the default, secure set-up.
      mesh = await startMesh(runtime, { deviceCredentials: { devices: DEVICES } });
    }, 60_000);

    afterAll(async () => {
      await mesh?.stop();
    });

    it('delivers every QoS 1 message into the cloud log exactly once, in order per device, as a CloudEvent', async () => {
      sim = new NodeProcess(runtime, ['simulate', '--edge', mesh.edgeUrl, '--devices', String(DEVICES), '--messages', String(MESSAGES), '--rate', '50', '--qos', '1', '--status-interval', '0', '--credentials', mesh.simulatorCredentials!]);
      expect(await sim.exited).toBe(0);
      const total = DEVICES * MESSAGES;
      const events = await waitFor('every event in the cloud log', async () => {
        const all = await readCloudLog(mesh);
        return all.length >= total ? all : undefined;
      }, 30_000, 200);
      expect(events).toHaveLength(total);
      const byDevice = seqsByDevice(events);
      expect(byDevice.size).toBe(DEVICES);
      for (const seqs of byDevice.values()) expect(seqs).toEqual([...Array(MESSAGES).keys()]);
      for (const { event } of events) {
        expect(event.specversion).toBe('1.0');
        expect(event.id).toMatch(UUID_V7);
        expect(event.source).toBe(`/edges/edge-e2e/devices/${event.subject}`);
        expect(event.type).toMatch(/^io\.tributary\.telemetry\.(temperature|humidity|vibration|battery|gps)$/);
        expect(event.datacontenttype).toBe('application/json');
        expect(Date.parse(event.time!)).toBeGreaterThan(Date.now() - 120_000);
      }
      expect(new Set(events.map((e) => e.event.id)).size).toBe(total);
    });

    it('replays the log to an SSE subscriber from an offset, filtered by type prefix', async () => {
      const url = `${mesh.httpUrl}/v1/stream?from=1&type=io.tributary.telemetry.temperature`;
      const refused = await fetch(url);
      expect(refused.status).toBe(401);
      await refused.body?.cancel();
      const res = await fetch(url, { headers: mesh.authHeaders });
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      await res.body!.cancel();
      const client = new SseClient(url, mesh.authHeaders);
      const expected = (await readCloudLog(mesh)).filter((e) => e.event.type === 'io.tributary.telemetry.temperature');
      expect(expected.length).toBeGreaterThan(0);
      await client.until(`${expected.length} temperature events`, () => client.messages.length >= expected.length, 15_000);
      client.close();
      const received = client.events().map((event, i) => ({ id: client.ids()[i], type: event.type }));
      expect(received.map((r) => r.id)).toEqual(expected.map((e) => e.offset));
      expect(new Set(received.map((r) => r.type))).toEqual(new Set(['io.tributary.telemetry.temperature']));
    });

    it('keeps every secret out of the nodes\' and the simulator\'s output', async () => {
      const passwords = (JSON.parse(readFileSync(mesh.simulatorCredentials!, 'utf8')) as { devices: { password: string }[] }).devices.map((d) => d.password);
      const edgeToken = readFileSync(`${mesh.dir}/edge-token`, 'utf8').trim();
      const secrets = [mesh.apiToken, edgeToken, ...passwords];
      // Also the secret parts alone: a token's id may be logged, its secret never.
      secrets.push(...[mesh.apiToken, edgeToken].map((t) => t.split('_').at(-1)!));
      const output = [...mesh.edge.output, ...mesh.cloud.output, ...(sim?.output ?? [])].join('\n');
      expect(output.length).toBeGreaterThan(0);
      for (const secret of secrets) expect(output.includes(secret), 'a secret in the output').toBe(false);
    });

    it('answers /healthz', async () => {
      const res = await fetch(`${mesh.httpUrl}/healthz`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: 'ok', edges: 1 });
    });
  });
}
