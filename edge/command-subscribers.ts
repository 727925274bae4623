/**
 * Who takes a device's commands on the edge's broker, and whose PUBACK acknowledges which command. The device
 * is whoever subscribes at QoS 1 to its command topic (`commands/{deviceId}`); `commands.ts` publishes a command
 * when `ready` says a subscriber is connected, and at most one per device is outstanding (published, not yet
 * acknowledged) at a time.
 *
 * What Aedes 1.x tells, and what this makes of it:
 * - 'subscribe' for a SUBSCRIBE; a persistent session (clean = 0) that reconnects gets its subscriptions back
 *   without one (and without the event), so the command topics of persistent sessions are remembered here
 *   across their disconnects. Both live in this process's memory (Aedes' default persistence): an edge restart
 *   loses them together, and the device subscribes again.
 * - 'ack' for a PUBACK. For a persistent session it carries the acknowledged publish (topic and payload, which
 *   names the command). Aedes also keeps that publish in the session's queue and sends it again when the
 *   session reconnects, so a command outstanding to a persistent session stays outstanding across its
 *   disconnects and is not published a second time.
 * - For a clean session Aedes keeps no copy of the publish, and its 'ack' carries none (checked in aedes 1.2.0,
 *   lib/handlers/puback.js and aedes-persistence's outgoingClearMessageId): the device's next PUBACK after the
 *   command was published is taken as the command's. That holds when the edge is the only sender of QoS 1
 *   messages to the device; a device that also receives other QoS 1 traffic should use a persistent session. A
 *   clean session that ends loses the publish, so the command is published again when the device subscribes.
 */
import type { Aedes, Client, PublishPacket, Subscription } from 'aedes';
import type { CommandTopic } from '../shared/command-wire.ts';
import { decodeDeviceCommand } from '../shared/command-wire.ts';
import type { Logger } from '../shared/logger.ts';

export interface CommandSubscribersOptions {
  commandTopic: CommandTopic;
  logger: Logger;
  /** A client connected or subscribed to a command topic: a device this edge serves. */
  seen(device: string): void;
  /** A subscriber of the device's command topic is connected: its next command may go out. */
  ready(device: string): void;
  /** The device acknowledged the publish of command `id`. */
  acked(device: string, id: string, clientId: string): void;
}

/** A command published to a device and not yet acknowledged. */
interface Outstanding {
  id: string;
  /** The clients it was published to. */
  clients: Set<string>;
}

export class CommandSubscribers {
  readonly #o: CommandSubscribersOptions;
  /** Per device, the connected clients subscribed (QoS 1) to its command topic. */
  readonly #subscribers = new Map<string, Map<string, Client>>();
  /** Per connected client id, the devices whose command topic it is subscribed to. */
  readonly #clientDevices = new Map<string, Set<string>>();
  /** Per client id of a persistent session, the devices whose command topic it subscribed to. */
  readonly #sessions = new Map<string, Set<string>>();
  readonly #outstanding = new Map<string, Outstanding>();

  constructor(options: CommandSubscribersOptions) {
    this.#o = options;
  }

  attach(aedes: Aedes): void {
    aedes.on('clientReady', (client) => this.#clientReady(client));
    aedes.on('subscribe', (subs, client) => this.#subscribed(subs, client));
    aedes.on('unsubscribe', (topics, client) => {
      for (const topic of topics) {
        const device = this.#deviceOf(topic);
        if (device === undefined) continue;
        this.#remove(device, client);
        this.#sessions.get(client.id)?.delete(device);
      }
    });
    aedes.on('clientDisconnect', (client) => this.#clientGone(client));
    aedes.on('ack', (packet, client) => this.#ack(packet as PublishPacket | undefined, client));
  }

  /** Whether a command may go out to `device` now: a subscriber is connected and none is outstanding. */
  canPublish(device: string): boolean {
    return !this.#outstanding.has(device) && (this.#subscribers.get(device)?.size ?? 0) > 0;
  }

  /** Command `id` is being published to the device's connected subscribers. */
  published(device: string, id: string): void {
    this.#outstanding.set(device, { id, clients: new Set(this.#subscribers.get(device)?.keys()) });
  }

  /** Command `id` is no longer outstanding to `device` (acknowledged, replied to, expired, or not sent). */
  settle(device: string, id: string): void {
    if (this.#outstanding.get(device)?.id === id) this.#outstanding.delete(device);
  }

  #deviceOf(topic: string): string | undefined {
    return this.#o.commandTopic.match(topic)?.deviceId;
  }

  #clientReady(client: Client): void {
    // Aedes names a client that connected without an id `aedes_<uuid>`: that is no device's name.
    if (!client.id.startsWith('aedes_')) this.#o.seen(client.id);
    const devices = this.#sessions.get(client.id);
    if (client.clean) {
      // A clean session starts without subscriptions or queued messages [MQTT-3.1.2-6]: what was outstanding to
      // an earlier, persistent session of this client (a clean one's was dropped when it ended) goes out again.
      for (const device of devices ?? []) this.#dropClient(device, client.id);
      this.#sessions.delete(client.id);
      return;
    }
    if (!devices) return;
    for (const device of devices) this.#add(device, client);
    for (const device of devices) this.#o.ready(device);
  }

  #subscribed(subs: Subscription[], client: Client): void {
    for (const sub of subs) {
      const device = this.#deviceOf(sub.topic);
      if (device === undefined) continue;
      this.#o.seen(device);
      if (sub.qos !== 1 && sub.qos !== 2) {
        // 0, or 128 (refused). At QoS 0 there would be no PUBACK to tell delivery by.
        if (sub.qos === 0) this.#o.logger.warn('a device subscribed to its commands at QoS 0; commands go out at QoS 1 only', { clientId: client.id, topic: sub.topic });
        this.#remove(device, client);
        this.#sessions.get(client.id)?.delete(device);
        continue;
      }
      this.#add(device, client);
      if (!client.clean) {
        let devices = this.#sessions.get(client.id);
        if (!devices) this.#sessions.set(client.id, (devices = new Set()));
        devices.add(device);
      }
      this.#o.ready(device);
    }
  }

  #add(device: string, client: Client): void {
    let clients = this.#subscribers.get(device);
    if (!clients) this.#subscribers.set(device, (clients = new Map()));
    clients.set(client.id, client);
    let devices = this.#clientDevices.get(client.id);
    if (!devices) this.#clientDevices.set(client.id, (devices = new Set()));
    devices.add(device);
  }

  #remove(device: string, client: Client): void {
    const clients = this.#subscribers.get(device);
    // A client that took over the id of an earlier connection is not removed with it.
    if (clients?.get(client.id) !== client) return;
    clients.delete(client.id);
    if (clients.size === 0) this.#subscribers.delete(device);
    const devices = this.#clientDevices.get(client.id);
    devices?.delete(device);
    if (devices?.size === 0) this.#clientDevices.delete(client.id);
  }

  #clientGone(client: Client): void {
    for (const device of [...(this.#clientDevices.get(client.id) ?? [])]) {
      this.#remove(device, client);
      // A persistent session keeps the publish in Aedes' queue; a clean one loses it.
      if (client.clean) this.#dropClient(device, client.id);
    }
  }

  #dropClient(device: string, clientId: string): void {
    const outstanding = this.#outstanding.get(device);
    if (!outstanding) return;
    outstanding.clients.delete(clientId);
    if (outstanding.clients.size === 0) this.#outstanding.delete(device);
  }

  #ack(packet: PublishPacket | undefined, client: Client): void {
    if (packet) {
      if (packet.cmd !== 'publish') return;
      const device = this.#deviceOf(packet.topic);
      const id = commandIdOf(packet.payload);
      if (device !== undefined && id !== undefined) this.#o.acked(device, id, client.id);
      return;
    }
    // A clean session's PUBACK: Aedes does not say which publish it acknowledges (see the module comment).
    if (!client.clean) return;
    for (const device of this.#clientDevices.get(client.id) ?? []) {
      const outstanding = this.#outstanding.get(device);
      if (outstanding?.clients.has(client.id)) this.#o.acked(device, outstanding.id, client.id);
    }
  }
}

/** The id of the command in a payload the edge published on a command topic. */
export function commandIdOf(payload: unknown): string | undefined {
  try {
    return decodeDeviceCommand(payload as Uint8Array).id;
  } catch {
    return undefined;
  }
}
