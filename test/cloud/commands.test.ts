import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import { CloudNode } from '../../cloud/cloud-node.ts';
import { cloudConfigSchema } from '../../cloud/config.ts';
import type { Command } from '../../shared/command-wire.ts';
import { ControlTopic, controlTopic, decodeCloudMessage, encodeCommandUpdates, encodeDeviceReport } from '../../shared/command-wire.ts';
import { encode } from '../../shared/codec.ts';
import { parseConfig } from '../../shared/config.ts';
import { Logger } from '../../shared/logger.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const logger = new Logger({ level: 'silent' });
const MAX_TTL = 3600;

interface View {
  id: string;
  device: string;
  edge: string;
  name?: string;
  data: unknown;
  state: string;
  createdAt: string;
  expiresAt: string;
}

describe('cloud commands', () => {
  const cleanups: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function startCloud(path = tempDir('tributary-commands-').path): Promise<{ node: CloudNode; path: string }> {
    const config = parseConfig(cloudConfigSchema, { auth: { allowAnonymous: true },
      dataDir: path,
      store: { durability: 'crash-safe' },
      uplink: { port: 0 },
      http: { port: 0 },
      statusIntervalMs: 0,
      commands: { defaultTtlSeconds: 600, maxTtlSeconds: MAX_TTL },
    });
    const node = new CloudNode(config, logger);
    await node.start();
    cleanups.push(() => node.stop());
    return { node, path };
  }

  function post(node: CloudNode, device: string, body: unknown, raw?: string): Promise<Response> {
    return Promise.resolve(node.app!.request(`/v1/devices/${device}/commands`, { method: 'POST', body: raw ?? JSON.stringify(body), headers: { 'content-type': 'application/json' } }));
  }

  async function connectEdge(node: CloudNode, edgeId: string): Promise<{ client: MqttClient; commands: Command[]; hellos: number }> {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.ports.uplink}`, { clientId: edgeId, protocolVersion: 4, clean: true, reconnectPeriod: 0 });
    cleanups.push(() => client.endAsync(true));
    const edge = { client, commands: [] as Command[], hellos: 0 };
    client.on('message', (_topic, payload) => {
      const message = decodeCloudMessage(payload);
      if ('hello' in message) edge.hellos++;
      else edge.commands.push(message.command);
    });
    return edge;
  }

  async function get(node: CloudNode, path: string): Promise<unknown> {
    return (await node.app!.request(path)).json();
  }

  async function state(node: CloudNode, id: string): Promise<string> {
    return ((await get(node, `/v1/commands/${id}`)) as { command: View }).command.state;
  }

  describe('POST /v1/devices/{deviceId}/commands', () => {
    it.each([
      ['a body that is not JSON', undefined, '{"data": ', 'body', /not valid JSON/],
      ['an empty body', undefined, '', 'body', /request body is empty/],
      ['a body that is an array', [1], undefined, 'body', /must be a JSON object/],
      ['an unknown member', { data: 1, edge: 'edge-1', priority: 'high' }, undefined, 'priority', /unknown member "priority"/],
      ['no data', { name: 'reboot', edge: 'edge-1' }, undefined, 'data', /needs "data"/],
      ['a ttl of 0', { data: 1, edge: 'edge-1', ttlSeconds: 0 }, undefined, 'ttlSeconds', /from 1 to 3600 \(got 0\)/],
      ['a ttl past the maximum', { data: 1, edge: 'edge-1', ttlSeconds: MAX_TTL + 1 }, undefined, 'ttlSeconds', /from 1 to 3600 \(got 3601\)/],
      ['a fractional ttl', { data: 1, edge: 'edge-1', ttlSeconds: 1.5 }, undefined, 'ttlSeconds', /whole number/],
      ['a ttl given as text', { data: 1, edge: 'edge-1', ttlSeconds: '60' }, undefined, 'ttlSeconds', /got "60"/],
      ['an empty name', { data: 1, edge: 'edge-1', name: '' }, undefined, 'name', /"name" must be a string of 1-128 characters/],
      ['a bad edge id', { data: 1, edge: 'edge/1' }, undefined, 'edge', /"edge" must be an edge id/],
      ['a device no edge has reported, without "edge"', { data: 1 }, undefined, 'edge', /device "dev-1" is not known to any edge yet .* name the edge that serves it with "edge"/],
    ])('refuses %s with 400 naming the parameter', async (_what, body, raw, parameter, message) => {
      const { node } = await startCloud();
      const res = await post(node, 'dev-1', body, raw);
      expect(res.status).toBe(400);
      const error = ((await res.json()) as { error: { code: string; message: string; parameter: string } }).error;
      expect(error.code).toBe('ERR_BAD_PARAMETER');
      expect(error.parameter).toBe(parameter);
      expect(error.message).toMatch(message);
      expect(await get(node, '/v1/devices/dev-1/commands')).toEqual({ commands: [] });
    });

    it('refuses a device id that cannot be a topic level, and a body over 256 KiB', async () => {
      const { node } = await startCloud();
      const res = await post(node, 'a%2Bb', { data: 1, edge: 'edge-1' });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { parameter: 'device', message: expect.stringMatching(/"a\+b" is not a device id/) } });
      const big = await post(node, 'dev-1', { data: 'x'.repeat(300 * 1024), edge: 'edge-1' });
      expect(big.status).toBe(413);
      expect(await big.json()).toMatchObject({ error: { parameter: 'body' } });
    });

    it('accepts a command with 202 once it is stored, and lists it by device and by id', async () => {
      const { node } = await startCloud();
      const res = await post(node, 'dev-1', { data: { on: true }, name: 'lamp', ttlSeconds: 120, edge: 'edge-1' });
      expect(res.status).toBe(202);
      const { command } = (await res.json()) as { command: View };
      expect(command).toMatchObject({ device: 'dev-1', edge: 'edge-1', name: 'lamp', data: { on: true }, state: 'pending' });
      expect(Date.parse(command.expiresAt) - Date.parse(command.createdAt)).toBe(120_000);
      expect(res.headers.get('location')).toBe(`/v1/commands/${command.id}`);
      expect(await get(node, `/v1/commands/${command.id}`)).toEqual({ command });
      expect(await get(node, '/v1/devices/dev-1/commands')).toEqual({ commands: [command] });
      const bad = await node.app!.request('/v1/commands/not-a-command');
      expect(bad.status).toBe(400);
      const missing = await node.app!.request('/v1/commands/01890a5d-ac96-774b-bcce-b302099a8057');
      expect(missing.status).toBe(404);
      expect(await missing.json()).toMatchObject({ error: { code: 'ERR_NOT_FOUND' } });
    });
  });

  describe('delivery to edges', () => {
    it('sends pending commands when the edge subscribes, and moves them on only with its acknowledgements', async () => {
      const { node } = await startCloud();
      const first = ((await (await post(node, 'dev-1', { data: 1, edge: 'edge-t' })).json()) as { command: View }).command;
      const edge = await connectEdge(node, 'edge-t');
      await edge.client.subscribeAsync(controlTopic('edge-t', ControlTopic.Commands), { qos: 1 });
      await waitFor('the pending command', () => edge.commands.length === 1);
      expect(edge.hellos).toBe(1);
      expect(edge.commands[0]).toMatchObject({ id: first.id, device: 'dev-1', edge: 'edge-t', data: 1 });
      // Received is not stored: the state waits for the edge's own acknowledgement.
      expect(await state(node, first.id)).toBe('pending');

      const second = ((await (await post(node, 'dev-2', { data: 2, edge: 'edge-t' })).json()) as { command: View }).command;
      await waitFor('the new command, sent while the edge is connected', () => edge.commands.length === 2);
      expect(edge.commands[1].id).toBe(second.id);

      const acks = controlTopic('edge-t', ControlTopic.CommandAcks);
      const at = new Date().toISOString();
      await edge.client.publishAsync(acks, Buffer.from(encodeCommandUpdates([{ id: first.id, state: 'sent', at }, { id: second.id, state: 'sent', at }])), { qos: 1 });
      expect(await state(node, first.id)).toBe('sent');
      await edge.client.publishAsync(acks, Buffer.from(encodeCommandUpdates([{ id: first.id, state: 'replied', at }])), { qos: 1 });
      expect(await state(node, first.id)).toBe('replied');
      // A late report never moves a state back.
      await edge.client.publishAsync(acks, Buffer.from(encodeCommandUpdates([{ id: first.id, state: 'delivered', at }, { id: second.id, state: 'expired', at }])), { qos: 1 });
      expect(await state(node, first.id)).toBe('replied');
      expect(await state(node, second.id)).toBe('expired');
      expect(node.metrics.total('tributary_cloud_commands_sent_total')).toBe(2);
    });

    it('learns which edge serves a device from the edge, durably', async () => {
      const { node, path } = await startCloud();
      const edge = await connectEdge(node, 'edge-d');
      await edge.client.publishAsync(controlTopic('edge-d', ControlTopic.Devices), Buffer.from(encodeDeviceReport({ devices: ['dev-9'], full: true })), { qos: 1 });
      await node.stop();
      const restarted = (await startCloud(path)).node;
      const res = await post(restarted, 'dev-9', { data: null });
      expect(res.status).toBe(202);
      expect(((await res.json()) as { command: View }).command.edge).toBe('edge-d');
    });

    it('drops, counts and acknowledges a malformed control message; refuses one on another edge\'s topic', async () => {
      const { node } = await startCloud();
      const edge = await connectEdge(node, 'edge-m');
      await edge.client.publishAsync(controlTopic('edge-m', ControlTopic.CommandAcks), Buffer.from(encode({ v: 1, updates: 'all of them' })), { qos: 1 });
      expect(node.metrics.total('tributary_cloud_command_messages_rejected_total')).toBe(1);
      expect(edge.client.connected).toBe(true);

      // Another edge's commands are not for this client (SUBACK 0x80 [MQTT-3.9.3]).
      await expect(edge.client.subscribeAsync(controlTopic('+', ControlTopic.Commands), { qos: 1 })).rejects.toThrow(/Subscribe error/);
      const closed = new Promise<void>((resolve) => edge.client.once('close', () => resolve()));
      edge.client.publish(controlTopic('edge-other', ControlTopic.Devices), Buffer.from(encodeDeviceReport({ devices: ['x'], full: true })), { qos: 1 });
      await closed;
      expect(node.metrics.total('tributary_cloud_command_messages_rejected_total')).toBe(3);
    });
  });

  describe('expiry', () => {
    it('expires a command its edge never fetched, logs an expired event, and never sends it', async () => {
      const { node, path } = await startCloud();
      const { command } = (await (await post(node, 'dev-x', { data: 'late', name: 'too-late', ttlSeconds: 1, edge: 'edge-x' })).json()) as { command: View };
      await waitFor('the expiry', async () => (await state(node, command.id)) === 'expired', 10_000, 50);
      const events = await node.log.read(1, 100);
      expect(events).toHaveLength(1);
      expect(events[0].event).toMatchObject({ type: 'io.tributary.command.expired', subject: 'dev-x', commandid: command.id, source: '/cloud/commands' });
      expect(events[0].event.data).toMatchObject({ id: command.id, edge: 'edge-x', name: 'too-late', expiredIn: 'cloud' });

      // The expiry is durable, and an edge that connects afterwards gets nothing.
      await node.stop();
      const restarted = (await startCloud(path)).node;
      expect(await state(restarted, command.id)).toBe('expired');
      const edge = await connectEdge(restarted, 'edge-x');
      await edge.client.subscribeAsync(controlTopic('edge-x', ControlTopic.Commands), { qos: 1 });
      const probe = (await (await post(restarted, 'dev-x', { data: 'fresh', edge: 'edge-x' })).json()) as { command: View };
      await waitFor('the fresh command', () => edge.commands.length === 1);
      expect(edge.commands.map((c) => c.id)).toEqual([probe.command.id]);
      expect(restarted.log.lastOffset).toBe(1);
    });
  });
});
