import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import type { IClientOptions } from 'mqtt';
import { Fleet } from '../../devices/fleet.ts';
import { edgeConfigSchema } from '../../edge/config.ts';
import { EdgeNode } from '../../edge/edge-node.ts';
import type { CloudEvent } from '../../shared/cloud-event.ts';
import type { Command, CommandUpdate, DeviceCommand } from '../../shared/command-wire.ts';
import {
  ControlTopic,
  controlTopic,
  decodeCommandUpdates,
  decodeDeviceCommand,
  decodeDeviceReport,
  encodeCommandMessage,
  encodeHello,
  parseControlTopic,
} from '../../shared/command-wire.ts';
import { decode } from '../../shared/codec.ts';
import { parseConfig } from '../../shared/config.ts';
import { EventIdGenerator } from '../../shared/event-id.ts';
import { Logger } from '../../shared/logger.ts';
import type { RunningMqttServer } from '../../shared/mqtt-server.ts';
import { startMqttServer } from '../../shared/mqtt-server.ts';
import { decodeBatch, edgeOfUplinkTopic } from '../../shared/uplink-wire.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const logger = new Logger({ level: 'silent' });
const EDGE = 'edge-c';
const ids = new EventIdGenerator();

/**
 * A stand-in for the cloud's uplink listener: acknowledges everything and records what the edge sends. With
 * `hello` off it is a cloud without commands: it never says hello on the commands topic.
 */
async function fakeCloud(hello = true) {
  const events: CloudEvent[] = [];
  const updates: CommandUpdate[] = [];
  const devices: string[] = [];
  let subscribed = 0;
  const server: RunningMqttServer = await startMqttServer({
    host: '127.0.0.1',
    port: 0,
    wsPort: null,
    logger,
    hooks: {
      authorizePublish: (client, packet, callback) => {
        if (!client) return callback(null);
        const payload = packet.payload as Uint8Array;
        if (edgeOfUplinkTopic(packet.topic)) events.push(...decodeBatch(payload).events.map((e) => decode<CloudEvent>(e)));
        else if (parseControlTopic(packet.topic)?.kind === 'command-acks') updates.push(...decodeCommandUpdates(payload));
        else if (parseControlTopic(packet.topic)?.kind === 'devices') devices.push(...decodeDeviceReport(payload).devices);
        callback(null);
      },
    },
  });
  const publish = (payload: Uint8Array) =>
    server.aedes.publish({ cmd: 'publish', topic: controlTopic(EDGE, ControlTopic.Commands), payload: Buffer.from(payload), qos: 1, retain: false, dup: false }, () => undefined);
  server.aedes.on('subscribe', (subs) => {
    if (!subs.some((s) => s.topic === controlTopic(EDGE, ControlTopic.Commands))) return;
    subscribed++;
    if (hello) publish(encodeHello());
  });
  return {
    server,
    events,
    updates,
    devices,
    get subscribed() {
      return subscribed;
    },
    send(command: Command): void {
      publish(encodeCommandMessage(command));
    },
    statesOf(id: string): string[] {
      return updates.filter((u) => u.id === id).map((u) => u.state);
    },
    eventsOf(id: string): CloudEvent[] {
      return events.filter((e) => e.commandid === id);
    },
  };
}

function command(device: string, ttlMs = 60_000, name = 'blink'): Command {
  const now = Date.now();
  return { id: ids.next(), device, edge: EDGE, name, data: { times: 3 }, createdAt: new Date(now).toISOString(), expiresAt: new Date(now + ttlMs).toISOString() };
}

describe('edge commands', () => {
  const cleanups: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(hello = true) {
    const cloud = await fakeCloud(hello);
    cleanups.push(() => cloud.server.close());
    const dir = tempDir('tributary-edge-commands-');
    cleanups.push(() => dir.remove());
    const config = parseConfig(edgeConfigSchema, { auth: { allowAnonymous: true },
      edgeId: EDGE,
      dataDir: dir.path,
      mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
      http: { port: null },
      buffer: { durability: 'crash-safe' },
      uplink: { url: `mqtt://127.0.0.1:${cloud.server.port}`, reconnectInitialMs: 50, reconnectMaxMs: 200 },
      statusIntervalMs: 0,
    });
    let edge = new EdgeNode(config, logger);
    await edge.start();
    const handle = {
      cloud,
      get edge() {
        return edge;
      },
      async restart() {
        await edge.stop();
        edge = new EdgeNode(config, logger);
        await edge.start();
      },
      async device(clientId: string, options: IClientOptions = {}) {
        const received: DeviceCommand[] = [];
        const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${edge.ports.mqtt}`, { clientId, protocolVersion: 4, clean: false, reconnectPeriod: 0, ...options });
        client.on('message', (topic, payload) => {
          if (topic === `commands/${clientId}`) received.push(decodeDeviceCommand(payload));
        });
        cleanups.push(() => client.endAsync(true));
        return { client, received };
      },
    };
    cleanups.push(() => edge.stop());
    await waitFor('the edge to subscribe to its commands', () => cloud.subscribed > 0);
    return handle;
  }

  it('stores a command, delivers it once to the subscribed device, and turns the PUBACK and the reply into events', async () => {
    const { cloud, device } = await setup();
    const dev = await device('dev-1');
    await dev.client.subscribeAsync('commands/dev-1', { qos: 1 });
    const c = command('dev-1');
    cloud.send(c);
    await waitFor('the delivery', () => dev.received.length === 1);
    expect(dev.received[0]).toEqual({ id: c.id, name: 'blink', data: { times: 3 }, expiresAt: c.expiresAt });
    await waitFor('the delivered report', () => cloud.statesOf(c.id).includes('delivered'));
    expect(cloud.statesOf(c.id)).toEqual(['sent', 'delivered']);

    // The cloud sends the command again (it missed the acknowledgement): the edge says where it is, and does not deliver it twice.
    cloud.send(c);
    await waitFor('the repeated report', () => cloud.statesOf(c.id).length === 3);
    expect(cloud.statesOf(c.id)[2]).toBe('delivered');

    await dev.client.publishAsync(`commands/dev-1/replies/${c.id}`, JSON.stringify({ ok: true, level: 7 }), { qos: 1 });
    await waitFor('the replied report', () => cloud.statesOf(c.id).includes('replied'));
    await waitFor('both events in the cloud', () => cloud.eventsOf(c.id).length === 2);
    const [delivered, reply] = cloud.eventsOf(c.id);
    expect(delivered).toMatchObject({ type: 'io.tributary.command.delivered', source: `/edges/${EDGE}/devices/dev-1`, subject: 'dev-1', data: { id: c.id, name: 'blink', clientId: 'dev-1' } });
    expect(reply).toMatchObject({ type: 'io.tributary.command.reply', source: `/edges/${EDGE}/devices/dev-1`, subject: 'dev-1', datacontenttype: 'application/json', data: { ok: true, level: 7 } });
    expect(dev.received).toHaveLength(1);
  });

  it('keeps a command for a device that is away, and delivers it when the device subscribes, also on a clean session', async () => {
    const { cloud, device, edge } = await setup();
    const c = command('dev-2');
    cloud.send(c);
    await waitFor('the edge to store it', () => cloud.statesOf(c.id).includes('sent'));
    expect(edge.metrics.total('tributary_edge_commands_pending')).toBe(1);
    const dev = await device('dev-2', { clean: true });
    await dev.client.subscribeAsync('commands/dev-2', { qos: 1 });
    await waitFor('the delivery', () => dev.received.length === 1);
    await waitFor('the delivered report', () => cloud.statesOf(c.id).includes('delivered'));
    expect(edge.metrics.total('tributary_edge_commands_pending')).toBe(0);
    await waitFor('the devices report', () => cloud.devices.includes('dev-2'));
  });

  it('delivers commands one at a time, oldest first, each after the previous one is acknowledged', async () => {
    const { cloud, device } = await setup();
    const first = command('dev-3', 60_000, 'one');
    const second = command('dev-3', 60_000, 'two');
    cloud.send(second);
    cloud.send(first);
    await waitFor('both stored', () => cloud.statesOf(first.id).includes('sent') && cloud.statesOf(second.id).includes('sent'));
    const dev = await device('dev-3');
    await dev.client.subscribeAsync('commands/dev-3', { qos: 1 });
    await waitFor('both deliveries', () => dev.received.length === 2);
    expect(dev.received.map((d) => d.name)).toEqual(['one', 'two']);
  });

  it('expires a command that was not delivered in time: an expired event, and never a publish to the device', async () => {
    const { cloud, device, edge } = await setup();
    // A device that takes the publish but never acknowledges it, then goes away with its session.
    const slow = await device('dev-4');
    slow.client.handleMessage = (_packet, _callback) => undefined;
    await slow.client.subscribeAsync('commands/dev-4', { qos: 1 });
    const c = command('dev-4', 800);
    cloud.send(c);
    await waitFor('the first publish', () => slow.received.length === 1);
    await slow.client.endAsync(true);
    const late = command('dev-4', 800, 'late');
    cloud.send(late);
    await waitFor('both expiries reported', () => cloud.statesOf(c.id).includes('expired') && cloud.statesOf(late.id).includes('expired'), 10_000);
    await waitFor('the expired events', () => cloud.eventsOf(c.id).length === 1 && cloud.eventsOf(late.id).length === 1);
    expect(cloud.eventsOf(late.id)[0]).toMatchObject({ type: 'io.tributary.command.expired', subject: 'dev-4', data: { id: late.id, name: 'late', expiredIn: 'edge' } });
    expect(edge.metrics.total('tributary_edge_commands_expired_total')).toBe(2);

    // The session comes back: Aedes would re-send the unacknowledged publish from its queue, but it has expired.
    const back = await device('dev-4');
    await back.client.subscribeAsync('commands/dev-4', { qos: 1 });
    const probe = command('dev-4', 60_000, 'probe');
    cloud.send(probe);
    await waitFor('the probe', () => back.received.length >= 1);
    expect(back.received.map((d) => d.name)).toEqual(['probe']);
  });

  it('keeps stored commands across a restart and delivers them afterwards', async () => {
    const setupResult = await setup();
    const { cloud } = setupResult;
    const c = command('dev-5');
    cloud.send(c);
    await waitFor('the edge to store it', () => cloud.statesOf(c.id).includes('sent'));
    const before = cloud.subscribed;
    await setupResult.restart();
    await waitFor('the restarted edge to subscribe', () => cloud.subscribed > before);
    // After the restart the edge reports what it holds again (it does not know what the cloud acknowledged).
    await waitFor('the report again', () => cloud.statesOf(c.id).length === 2);
    const dev = await setupResult.device('dev-5');
    await dev.client.subscribeAsync('commands/dev-5', { qos: 1 });
    await waitFor('the delivery', () => dev.received.length === 1);
    expect(dev.received[0].id).toBe(c.id);
  });

  it("keeps a reply to an unknown command as a dead letter, and closes a device that publishes on another's command topics", async () => {
    const { cloud, device, edge } = await setup();
    const victim = await device('dev-6');
    await victim.client.subscribeAsync('commands/dev-6', { qos: 1 });
    const intruder = await device('dev-7');
    await intruder.client.publishAsync(`commands/dev-7/replies/${ids.next()}`, '{"ok":true}', { qos: 1 });
    expect(edge.metrics.total('tributary_edge_messages_rejected_total')).toBe(1);
    expect(edge.status().deadLetters).toBe(1);
    // The ACL refuses both before the commands see them: MQTT 3.1.1 has no negative PUBACK, so the connection closes.
    intruder.client.publish('commands/dev-6/replies/not-a-command', '{"ok":true}', { qos: 1 });
    await waitFor('the reply to be refused', () => edge.metrics.total('tributary_edge_acl_denied_total') === 1);
    await intruder.client.endAsync(true);
    const again = await device('dev-7', { clean: true });
    again.client.publish('commands/dev-6', JSON.stringify({ id: ids.next(), data: 'rm -rf', expiresAt: new Date(Date.now() + 60_000).toISOString() }), { qos: 1 });
    await waitFor('the command to be refused', () => edge.metrics.total('tributary_edge_acl_denied_total') === 2);
    await again.client.endAsync(true);
    expect(edge.status().deadLetters).toBe(1);
    // Only what the edge itself publishes reaches a device's command topic.
    const probe = command('dev-6', 60_000, 'probe');
    cloud.send(probe);
    await waitFor('the probe', () => victim.received.length >= 1);
    expect(victim.received.map((d) => d.name)).toEqual(['probe']);
    expect(cloud.events.filter((e) => e.type === 'io.tributary.command.reply')).toEqual([]);
  });

  it('gets a reply from a simulated device', async () => {
    const { cloud, edge } = await setup();
    const fleet = new Fleet({ url: `mqtt://127.0.0.1:${edge.ports.mqtt}`, devices: 2, rate: 1, messagesPerDevice: 1, prefix: 'sim-c-' });
    cleanups.push(() => fleet.stop());
    await fleet.start();
    await waitFor('both devices to connect', () => fleet.stats().connected === 2);
    const c = command('sim-c-0002', 60_000, 'identify');
    cloud.send(c);
    await waitFor('the reply event', () => cloud.eventsOf(c.id).some((e) => e.type === 'io.tributary.command.reply'));
    expect(cloud.eventsOf(c.id).find((e) => e.type === 'io.tributary.command.reply')!.data).toEqual({ ok: true, received: 'identify' });
    expect(fleet.stats()).toMatchObject({ commands: 1 });
    await waitFor('the reply to be acknowledged', () => fleet.stats().replies === 1);
  });

  it('sends a cloud without commands nothing but batches, so its events keep flowing', async () => {
    const { cloud, device, edge } = await setup(false);
    const dev = await device('dev-8');
    await dev.client.subscribeAsync('commands/dev-8', { qos: 1 });
    await dev.client.publishAsync('telemetry/dev-8/temperature', '{"celsius":20}', { qos: 1 });
    await waitFor('the event in the cloud', () => cloud.events.length === 1);
    await waitFor('the buffer to empty', () => edge.buffer.stats().events === 0);
    expect(cloud.devices).toEqual([]);
    expect(cloud.updates).toEqual([]);
  });
});
