import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import type { DeviceCommand } from '../../shared/command-wire.ts';
import { decodeDeviceCommand } from '../../shared/command-wire.ts';
import type { Runtime } from '../helpers/node-process.ts';
import { waitFor } from '../helpers/wait.ts';
import type { Mesh } from './mesh.ts';
import { readCloudLog, startMesh } from './mesh.ts';

const DEVICE = 'dev-cmd';

interface View {
  id: string;
  edge: string;
  state: string;
}

/** A real MQTT device: a persistent session that subscribes to its commands on every connect and replies to each. */
function startDevice(url: string): { client: MqttClient; received: DeviceCommand[] } {
  const received: DeviceCommand[] = [];
  const client = mqtt.connect(url, { clientId: DEVICE, protocolVersion: 4, clean: false, reconnectPeriod: 100, connectTimeout: 2000 });
  // An edge that restarted has lost the session [MQTT-3.2.2-3]: subscribe again on every connect.
  client.on('connect', () => client.subscribe(`commands/${DEVICE}`, { qos: 1 }));
  client.on('message', (topic, payload) => {
    if (topic !== `commands/${DEVICE}`) return;
    const command = decodeDeviceCommand(payload);
    received.push(command);
    client.publish(`commands/${DEVICE}/replies/${command.id}`, JSON.stringify({ ok: true, received: command.name }), { qos: 1 });
  });
  client.on('error', () => undefined);
  return { client, received };
}

for (const runtime of ['node', 'deno'] as Runtime[]) {
  describe(`commands on ${runtime}: cloud → edge → device, and the reply back`, () => {
    let mesh: Mesh;
    let device: ReturnType<typeof startDevice> | undefined;

    beforeAll(async () => {
      mesh = await startMesh(runtime, 'edge-cmd');
    }, 60_000);

    afterAll(async () => {
      await device?.client.endAsync(true);
      await mesh?.stop();
    });

    async function post(body: Record<string, unknown>): Promise<Response> {
      return fetch(`${mesh.httpUrl}/v1/devices/${DEVICE}/commands`, { method: 'POST', headers: { 'content-type': 'application/json', ...mesh.authHeaders }, body: JSON.stringify(body) });
    }

    async function create(body: Record<string, unknown>): Promise<View> {
      const res = await post(body);
      expect(res.status).toBe(202);
      return ((await res.json()) as { command: View }).command;
    }

    async function state(id: string): Promise<string> {
      return ((await (await fetch(`${mesh.httpUrl}/v1/commands/${id}`, { headers: mesh.authHeaders })).json()) as { command: View }).command.state;
    }

    it('reaches a device after the edge comes back, unless its time to live passed meanwhile', async () => {
      device = startDevice(mesh.edgeUrl);
      // The edge reports the device once it connects; until then the cloud cannot tell where to send its commands.
      const warmup = await waitFor('the cloud to learn the device\'s edge', async () => {
        const res = await post({ name: 'warm-up', data: null });
        return res.status === 202 ? ((await res.json()) as { command: View }).command : undefined;
      }, 15_000, 100);
      expect(warmup.edge).toBe('edge-cmd');
      await waitFor('the warm-up reply', async () => (await state(warmup.id)) === 'replied', 15_000, 100);

      await mesh.killEdge();
      const later = await create({ name: 'after-restart', data: { brightness: 80 }, ttlSeconds: 300 });
      const tooLate = await create({ name: 'too-late', data: { brightness: 0 }, ttlSeconds: 1 });
      expect(await state(later.id)).toBe('pending');
      await waitFor('the short command to expire in the cloud', async () => (await state(tooLate.id)) === 'expired', 15_000, 100);

      await mesh.startEdge();
      await waitFor('the reply after the restart', async () => (await state(later.id)) === 'replied', 30_000, 100);
      expect(device.received.map((c) => c.name)).toContain('after-restart');
      expect(device.received.find((c) => c.name === 'after-restart')!.data).toEqual({ brightness: 80 });

      // A command the edge holds while the device is away expires at the edge.
      await device.client.endAsync();
      const away = await create({ name: 'while-away', data: 1, ttlSeconds: 1 });
      await waitFor('the edge to expire it', async () => (await state(away.id)) === 'expired', 15_000, 100);
      device = startDevice(mesh.edgeUrl);
      const probe = await create({ name: 'probe', data: 2, ttlSeconds: 300 });
      await waitFor('the probe reply', async () => (await state(probe.id)) === 'replied', 15_000, 100);

      expect(device.received.map((c) => c.name)).toEqual(['probe']);
      const log = (await readCloudLog(mesh)).map((e) => e.event);
      const ofCommand = (id: string) => log.filter((e) => e.commandid === id).map((e) => e.type);
      const reply = log.find((e) => e.type === 'io.tributary.command.reply' && e.commandid === later.id);
      expect(reply).toMatchObject({ source: `/edges/edge-cmd/devices/${DEVICE}`, subject: DEVICE, data: { ok: true, received: 'after-restart' } });
      expect(ofCommand(later.id)).toContain('io.tributary.command.delivered');
      expect(ofCommand(tooLate.id)).toEqual(['io.tributary.command.expired']);
      expect(ofCommand(away.id)).toEqual(['io.tributary.command.expired']);
      expect(log.find((e) => e.commandid === away.id)).toMatchObject({ source: `/edges/edge-cmd/devices/${DEVICE}`, data: { expiredIn: 'edge' } });
      // Neither expired command reached the device, before or after.
      const names = [...device.received.map((c) => c.name)];
      expect(names).not.toContain('too-late');
      expect(names).not.toContain('while-away');
    }, 90_000);
  });
}
