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
  describe(`the data path on ${runtime}: device → edge → cloud → subscriber`, () => {
    let mesh: Mesh;

    beforeAll(async () => {
      mesh = await startMesh(runtime);
    }, 60_000);

    afterAll(async () => {
      await mesh?.stop();
    });

    it('delivers every QoS 1 message into the cloud log exactly once, in order per device, as a CloudEvent', async () => {
      const sim = new NodeProcess(runtime, ['simulate', '--edge', mesh.edgeUrl, '--devices', String(DEVICES), '--messages', String(MESSAGES), '--rate', '50', '--qos', '1', '--status-interval', '0']);
      expect(await sim.exited).toBe(0);
      const total = DEVICES * MESSAGES;
      const events = await waitFor('every event in the cloud log', async () => {
        const all = await readCloudLog(mesh.httpUrl);
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
      const res = await fetch(`${mesh.httpUrl}/v1/stream?from=1&type=io.tributary.telemetry.temperature`);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      await res.body!.cancel();
      const client = new SseClient(`${mesh.httpUrl}/v1/stream?from=1&type=io.tributary.telemetry.temperature`);
      const expected = (await readCloudLog(mesh.httpUrl)).filter((e) => e.event.type === 'io.tributary.telemetry.temperature');
      expect(expected.length).toBeGreaterThan(0);
      await client.until(`${expected.length} temperature events`, () => client.messages.length >= expected.length, 15_000);
      client.close();
      const received = client.events().map((event, i) => ({ id: client.ids()[i], type: event.type }));
      expect(received.map((r) => r.id)).toEqual(expected.map((e) => e.offset));
      expect(new Set(received.map((r) => r.type))).toEqual(new Set(['io.tributary.telemetry.temperature']));
    });

    it('answers /healthz', async () => {
      const res = await fetch(`${mesh.httpUrl}/healthz`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: 'ok', edges: 1 });
    });
  });
}
