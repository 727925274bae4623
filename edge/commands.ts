/**
 * Commands at the edge: received from the cloud over the uplink, stored, delivered to devices through the
 * edge's broker, and reported back; device replies and expiries become events. Wire formats and states are in
 * shared/command-wire.ts.
 *
 * From the cloud. On every uplink connect the edge subscribes (QoS 1) to `tributary/v1/edges/{edgeId}/commands`;
 * once the cloud says hello there, it reports the devices it knows and re-sends every report the cloud has not
 * acknowledged. Before the hello it publishes nothing but batches, so it keeps forwarding events to a cloud that
 * has no commands (one that would close the link on an unknown topic). A command is stored durably
 * (`0x50 + command id` → the record, MessagePack; `0x51 + device id` marks a known device) before the edge
 * reports it `sent`; a command id it already holds is not stored again, only reported again. Reports (`sent`, `delivered`, `replied`, `expired`)
 * are QoS 1 publishes; which ones the cloud acknowledged is kept in memory only, so after a restart the edge
 * reports every command it holds once more (the cloud ignores a state it already has).
 *
 * To devices. The device is whoever subscribes (QoS 1) to its command topic (`commands/{deviceId}`; who that is,
 * and which PUBACK is whose, is command-subscribers.ts's part). Commands go out one at a time per device, oldest
 * first, as an `aedes.publish` at QoS 1 while a subscriber is connected: when the command arrives, when the
 * device subscribes, and when a persistent session comes back with its subscription. The device's PUBACK makes
 * it `delivered` and writes an `io.tributary.command.delivered` event; then the next command goes out. Aedes'
 * `authorizeForward` hook drops a command publish that is past its expiry or no longer waiting (also one coming
 * out of a persistent session's queue), and any publish on a command topic that a client made rather than the
 * edge; a device's own publish on a command topic is kept as a dead letter.
 *
 * Replies. A publish on `commands/{deviceId}/replies/{commandId}` is taken before ingest: it becomes an
 * `io.tributary.command.reply` event (data = the payload, JSON or bytes as ingest maps them; `commandid`
 * extension attribute) in the high lane, and the device's PUBACK waits until the event is durable. A reply
 * also proves delivery: one that comes before the command's PUBACK (mqtt.js acknowledges after its message
 * handler has run) writes the delivered event first. A reply to a command this edge does not hold (never had,
 * or finished longer than `replyWindowMs` ago) is a dead letter.
 *
 * Expiry. One timer for the nearest deadline. A command not delivered by its `expiresAt` is dropped: its state
 * becomes `expired`, an `io.tributary.command.expired` event goes into the high lane, and it is never published
 * again. Finished commands are deleted once the cloud has their final state (delivered and replied ones after
 * `replyWindowMs`, so late replies still find them).
 *
 * The events and the record of a state change join the same group commit, as ingest's event and resend record
 * do; a crash leaves at worst a command delivered twice (and two delivered events), never one lost.
 */
import { setImmediate } from 'node:timers';
import type { Aedes, Client, PublishPacket } from 'aedes';
import type { MqttClient } from 'mqtt';
import type { CloudEvent } from '../shared/cloud-event.ts';
import type { Command, CommandUpdate, EdgeCommandState } from '../shared/command-wire.ts';
import {
  advances,
  CommandEventType,
  CommandTopic,
  ControlTopic,
  controlTopic,
  decodeCloudMessage,
  encodeCommandUpdates,
  encodeDeviceCommand,
  encodeDeviceReport,
  isCommandId,
  isDeviceId,
  isFinal,
} from '../shared/command-wire.ts';
import { decode, encode } from '../shared/codec.ts';
import { DeadlineTimer } from '../shared/deadline-timer.ts';
import { ConfigError, errorMessage, InvalidEventError } from '../shared/errors.ts';
import { EventIdGenerator } from '../shared/event-id.ts';
import type { LevelStore } from '../shared/level-store.ts';
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import { keyText, textKey, textKeyRange } from '../shared/text-key.ts';
import { BYTES_CONTENT_TYPE, JSON_CONTENT_TYPE, parsePayload } from '../shared/topic-mapping.ts';
import { CommandSubscribers, commandIdOf } from './command-subscribers.ts';
import type { DeadLetters } from './dead-letters.ts';
import type { EdgeBuffer } from './edge-buffer.ts';
import { HIGH } from './lanes.ts';
import type { ResendGuard } from './resend-guard.ts';
import { publishHash } from './resend-guard.ts';

export const EDGE_COMMANDS_NAMESPACE = 0x50;
export const KNOWN_DEVICES_NAMESPACE = 0x51;

interface EdgeCommandRecord {
  command: Command;
  state: EdgeCommandState;
  /** Epoch ms of the last state change. */
  updatedAt: number;
}

export interface EdgeCommandsOptions {
  edgeId: string;
  store: LevelStore;
  buffer: EdgeBuffer;
  /** The edge config's `commands` section. */
  topics: { topic: string; replyTopic: string };
  /** Where refused device publishes (bad replies, publishes on command topics) are kept. */
  deadLetters?: DeadLetters;
  /** Recognises a device's re-sent reply (DUP=1) so it is one event. */
  resendGuard?: ResendGuard;
  metrics: Metrics;
  logger: Logger;
  clock?: () => number;
  /** How long a delivered command is kept for its device's reply. Default 24 h. */
  replyWindowMs?: number;
}

type Callback = (error?: Error | null) => void;

/** Most updates or device ids in one control message. */
const REPORT_CHUNK = 1000;
const EMPTY = new Uint8Array(0);

export class EdgeCommands {
  readonly #o: EdgeCommandsOptions;
  readonly #clock: () => number;
  readonly #logger: Logger;
  readonly #ids: EventIdGenerator;
  readonly #commandTopic: CommandTopic;
  readonly #replyTopic: CommandTopic;
  readonly #replyWindowMs: number;
  readonly #records = new Map<string, EdgeCommandRecord>();
  /** Per device, ids of its commands waiting for delivery, oldest first. */
  readonly #queues = new Map<string, string[]>();
  /** Commands being stored (a re-sent command that arrives meanwhile is not stored twice). */
  readonly #storing = new Set<string>();
  /** The state the cloud acknowledged for each command. */
  readonly #reported = new Map<string, EdgeCommandState>();
  #unreported = new Set<string>();
  readonly #known = new Set<string>();
  #newDevices: string[] = [];
  #flushQueued = false;
  #link: MqttClient | null = null;
  /** The cloud said hello on this link: it takes reports. */
  #linkReady = false;
  #aedes: Aedes | null = null;
  readonly #subscribers: CommandSubscribers;
  readonly #timer: DeadlineTimer;
  #closed = false;
  readonly #received: Counter;
  readonly #delivered: Counter;
  readonly #expired: Counter;
  readonly #replies: Counter;
  readonly #controlRejected: Counter;
  readonly #storageErrors: Counter;
  readonly #rejected = new Map<string, Counter>();

  private constructor(options: EdgeCommandsOptions) {
    this.#o = options;
    this.#clock = options.clock ?? Date.now;
    this.#logger = options.logger;
    this.#ids = new EventIdGenerator(this.#clock);
    this.#timer = new DeadlineTimer(() => this.#sweep(), this.#clock);
    this.#replyWindowMs = options.replyWindowMs ?? 24 * 3600_000;
    try {
      this.#commandTopic = new CommandTopic(options.topics.topic, ['deviceId']);
    } catch (err) {
      throw new ConfigError(errorMessage(err), { key: 'commands.topic' }, { cause: err });
    }
    try {
      this.#replyTopic = new CommandTopic(options.topics.replyTopic, ['deviceId', 'commandId']);
    } catch (err) {
      throw new ConfigError(errorMessage(err), { key: 'commands.replyTopic' }, { cause: err });
    }
    this.#subscribers = new CommandSubscribers({
      commandTopic: this.#commandTopic,
      logger: this.#logger,
      seen: (device) => this.#seeDevice(device),
      ready: (device) => this.#pump(device),
      acked: (device, id, clientId) => this.#deliveredTo(device, id, clientId),
    });
    const m = options.metrics;
    this.#received = m.counter('tributary_edge_commands_received_total', 'Commands received from the cloud and stored.');
    this.#delivered = m.counter('tributary_edge_commands_delivered_total', 'Commands a device acknowledged.');
    this.#expired = m.counter('tributary_edge_commands_expired_total', 'Commands that expired at the edge before delivery.');
    this.#replies = m.counter('tributary_edge_command_replies_total', 'Device replies to commands, buffered as events.');
    this.#controlRejected = m.counter('tributary_edge_command_messages_rejected_total', 'Command messages from the cloud that were malformed or for another edge.');
    this.#storageErrors = m.counter('tributary_edge_storage_errors_total', 'Buffer writes that failed; the publish was not acknowledged.');
    m.gauge('tributary_edge_commands_pending', 'Commands waiting for delivery to their device.', () => {
      let n = 0;
      for (const ids of this.#queues.values()) n += ids.length;
      return n;
    });
  }

  /** Loads the commands and known devices stored in `store`. */
  static async open(options: EdgeCommandsOptions): Promise<EdgeCommands> {
    const commands = new EdgeCommands(options);
    const { db } = options.store;
    // Keys are command ids (UUIDv7), so LevelDB's order is the order the cloud created them in.
    for await (const [key, value] of db.iterator(textKeyRange(EDGE_COMMANDS_NAMESPACE))) {
      try {
        commands.#add(decode<EdgeCommandRecord>(value));
      } catch (err) {
        options.logger.error('skipping an unreadable stored command', { key: keyText(key), err });
      }
    }
    for await (const [key] of db.iterator({ ...textKeyRange(KNOWN_DEVICES_NAMESPACE), values: false })) {
      commands.#known.add(keyText(key));
    }
    commands.#schedule();
    return commands;
  }

  /** Follows the device broker: subscriptions to command topics, connections, acknowledgements. */
  attach(aedes: Aedes): void {
    this.#aedes = aedes;
    this.#subscribers.attach(aedes);
    const previous = aedes.authorizeForward.bind(aedes);
    aedes.authorizeForward = (client, packet) => (this.#commandTopic.match(packet.topic) && !this.#mayForward(packet) ? null : previous(client, packet));
  }

  /** The uplink's `onConnected`: subscribe to this edge's commands, report devices and unacknowledged states. */
  linkUp(client: MqttClient): void {
    if (this.#closed) return;
    this.#link = client;
    this.#linkReady = false;
    const topic = controlTopic(this.#o.edgeId, ControlTopic.Commands);
    client.on('message', (t, payload) => {
      if (t === topic && this.#link === client) this.#fromCloud(client, payload);
    });
    client.subscribe(topic, { qos: 1 }, (err) => {
      if (err) this.#logger.warn('cannot subscribe to commands from the cloud; retrying on the next connect', { error: err.message });
    });
  }

  /** The uplink's `onDisconnected`. */
  linkDown(): void {
    this.#link = null;
    this.#linkReady = false;
  }

  /**
   * Takes device publishes on reply and command topics (`true`: handled, `callback` will be called); anything
   * else is left to ingest (`false`). Compose it in front of ingest's `authorizePublish`.
   */
  readonly authorizePublish = (client: Client | null, packet: PublishPacket, callback: Callback): boolean => {
    if (!client) return false;
    const reply = this.#replyTopic.match(packet.topic);
    if (reply) {
      this.#reply(client, packet, reply.deviceId, reply.commandId, callback);
      return true;
    }
    const target = this.#commandTopic.match(packet.topic);
    if (target) {
      const replyHint = this.#replyTopic.format({ deviceId: target.deviceId, commandId: '{commandId}' });
      this.#reject(client.id, packet, 'command-topic', `topic "${packet.topic}" carries commands to a device and only the edge publishes there; a device replies on ${replyHint}`, callback);
      return true;
    }
    return false;
  };

  close(): void {
    this.#closed = true;
    this.#timer.clear();
    this.#link = null;
    this.#aedes = null;
  }

  // ---- from the cloud ---------------------------------------------------------------------------------------

  #fromCloud(link: MqttClient, payload: Uint8Array): void {
    let message;
    try {
      message = decodeCloudMessage(payload);
    } catch (err) {
      this.#controlRejected.inc();
      this.#logger.warn('malformed command from the cloud dropped', { error: errorMessage(err) });
      return;
    }
    if ('hello' in message) {
      if (this.#linkReady) return;
      this.#linkReady = true;
      this.#publishDevices(link, [...this.#known], true);
      this.#newDevices = [];
      for (const [id, record] of this.#records) if (this.#reported.get(id) !== record.state) this.#unreported.add(id);
      this.#flush();
      return;
    }
    const { command } = message;
    if (command.edge !== this.#o.edgeId) {
      this.#controlRejected.inc();
      this.#logger.warn('command for another edge dropped', { commandId: command.id, edge: command.edge });
      return;
    }
    if (this.#records.has(command.id)) {
      // The cloud has not seen our acknowledgement: say again where the command is.
      this.#reported.delete(command.id);
      this.#report(command.id);
      return;
    }
    if (this.#storing.has(command.id)) return;
    this.#storing.add(command.id);
    const record: EdgeCommandRecord = { command, state: 'sent', updatedAt: this.#clock() };
    this.#o.store.put(recordKey(command.id), encode(record), (err) => {
      this.#storing.delete(command.id);
      if (err) {
        // Not acknowledged: the cloud sends it again on the next connect.
        this.#logger.error('cannot store a command from the cloud', { commandId: command.id, err });
        return;
      }
      if (this.#closed) return;
      this.#add(record);
      this.#received.inc();
      this.#logger.info('command received', { commandId: command.id, device: command.device, name: command.name, expiresAt: command.expiresAt });
      this.#report(command.id);
      this.#schedule();
      this.#pump(command.device);
    });
  }

  #report(id: string): void {
    this.#unreported.add(id);
    this.#queueFlush();
  }

  #queueFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    setImmediate(() => {
      this.#flushQueued = false;
      this.#flush();
    });
  }

  /** Sends the reports and new devices gathered since the last flush, if the link is up. */
  #flush(): void {
    const link = this.#link;
    if (!link || !this.#linkReady || this.#closed) return;
    if (this.#newDevices.length) {
      this.#publishDevices(link, this.#newDevices, false);
      this.#newDevices = [];
    }
    const updates: CommandUpdate[] = [];
    for (const id of this.#unreported) {
      const record = this.#records.get(id);
      if (record && this.#reported.get(id) !== record.state) updates.push({ id, state: record.state, at: iso(record.updatedAt) });
    }
    this.#unreported = new Set();
    const topic = controlTopic(this.#o.edgeId, ControlTopic.CommandAcks);
    for (let i = 0; i < updates.length; i += REPORT_CHUNK) {
      const chunk = updates.slice(i, i + REPORT_CHUNK);
      link.publish(topic, toBuffer(encodeCommandUpdates(chunk)), { qos: 1 }, (err) => {
        if (err) {
          // Reported again on the next connect (every state the cloud has not acknowledged is).
          this.#logger.debug('command report not acknowledged', { error: err.message, updates: chunk.length });
          return;
        }
        for (const u of chunk) if (this.#records.has(u.id)) this.#reported.set(u.id, u.state);
        this.#schedule();
      });
    }
  }

  #publishDevices(link: MqttClient, devices: string[], full: boolean): void {
    const topic = controlTopic(this.#o.edgeId, ControlTopic.Devices);
    for (let i = 0; i < devices.length || (full && i === 0); i += REPORT_CHUNK) {
      const chunk = devices.slice(i, i + REPORT_CHUNK);
      link.publish(topic, toBuffer(encodeDeviceReport({ devices: chunk, full })), { qos: 1 }, (err) => {
        // Every known device is reported again on the next connect.
        if (err) this.#logger.debug('device report not acknowledged', { error: err.message, devices: chunk.length });
      });
    }
  }

  // ---- devices ----------------------------------------------------------------------------------------------

  #seeDevice(device: string): void {
    if (this.#known.has(device) || !isDeviceId(device)) return;
    this.#known.add(device);
    this.#o.store.put(deviceKey(device), EMPTY, (err) => {
      if (err) {
        this.#known.delete(device);
        this.#logger.warn('cannot store a new device id; it is stored when the device connects again', { device, err });
        return;
      }
      this.#newDevices.push(device);
      this.#queueFlush();
    });
  }

  /** Publishes the device's oldest waiting command, unless one is already out or no subscriber is connected. */
  #pump(device: string): void {
    const aedes = this.#aedes;
    if (!aedes || this.#closed || !this.#subscribers.canPublish(device)) return;
    const queue = this.#queues.get(device);
    if (!queue?.length) return;
    const record = this.#records.get(queue[0])!;
    const { command } = record;
    if (Date.parse(command.expiresAt) <= this.#clock()) {
      this.#expire(record);
      return;
    }
    this.#subscribers.published(device, command.id);
    this.#logger.debug('publishing a command to its device', { commandId: command.id, device });
    aedes.publish(
      { cmd: 'publish', topic: this.#commandTopic.format({ deviceId: device }), payload: toBuffer(encodeDeviceCommand(command)), qos: 1, retain: false, dup: false },
      (err) => {
        if (!err) return;
        this.#logger.warn('cannot publish a command to its device; trying again when it subscribes', { commandId: command.id, device, error: err.message });
        this.#subscribers.settle(device, command.id);
      },
    );
  }

  /** Aedes' `authorizeForward` for a command topic: only the edge's own, still waiting, unexpired commands go out. */
  #mayForward(packet: { clientId?: string; payload: unknown }): boolean {
    if (packet.clientId !== undefined) return false;
    const record = this.#records.get(commandIdOf(packet.payload) ?? '');
    return record !== undefined && record.state === 'sent' && Date.parse(record.command.expiresAt) > this.#clock();
  }

  #deliveredTo(device: string, id: string, clientId: string): void {
    this.#subscribers.settle(device, id);
    const record = this.#records.get(id);
    if (record && record.command.device === device && advances(record.state, 'delivered')) {
      this.#delivered.inc();
      this.#logger.info('command delivered', { commandId: id, device, clientId });
      this.#change(record, 'delivered', this.#event(record.command, CommandEventType.Delivered, { id, name: record.command.name, clientId }));
    }
    this.#pump(device);
  }

  // ---- replies ----------------------------------------------------------------------------------------------

  #reply(client: Client, packet: PublishPacket, device: string, commandId: string, callback: Callback): void {
    const record = this.#records.get(commandId);
    if (!isCommandId(commandId) || !record || record.command.device !== device) {
      const why = !isCommandId(commandId) ? 'is not a command id' : !record ? 'is not a command this edge holds (unknown, or finished too long ago)' : `was sent to device "${record.command.device}", not "${device}"`;
      this.#reject(client.id, packet, 'unknown-command', `reply on "${packet.topic}": "${commandId}" ${why}`, callback);
      return;
    }
    const payload = packet.payload as Uint8Array;
    const data = parsePayload(payload);
    if (data instanceof InvalidEventError) {
      this.#reject(client.id, packet, data.reason, `reply on "${packet.topic}": ${data.message}`, callback);
      return;
    }
    const reply = { data: data === undefined ? payload : data, contentType: data === undefined ? BYTES_CONTENT_TYPE : JSON_CONTENT_TYPE };
    const guard = this.#o.resendGuard;
    if (packet.qos === 0 || !guard) {
      this.#appendReply(record, reply, packet, client.id, 0, callback);
      return;
    }
    const hash = publishHash(packet.topic, payload);
    if (packet.dup) guard.check(client.id, packet.messageId!, hash, (err) => callback(err), () => this.#appendReply(record, reply, packet, client.id, hash, callback));
    else this.#appendReply(record, reply, packet, client.id, hash, callback);
  }

  #appendReply(record: EdgeCommandRecord, reply: { data: unknown; contentType: string }, packet: PublishPacket, clientId: string, hash: number, callback: Callback): void {
    const { command } = record;
    // A reply proves delivery, whatever became of the PUBACK (mqtt.js, for one, sends it after the message
    // handler, so a device that answers at once replies first): the delivered event goes first.
    if (record.state === 'sent') this.#deliveredTo(command.device, command.id, clientId);
    const event = this.#event(command, CommandEventType.Reply, reply.data, reply.contentType);
    this.#o.buffer.append(HIGH, encode(event), (err) => {
      if (err) {
        this.#storageErrors.inc();
        this.#logger.error('cannot buffer a command reply; the publish is not acknowledged and the device will re-send it', { commandId: command.id, err });
      } else {
        this.#replies.inc();
      }
      if (packet.qos > 0) callback(err);
    });
    // The resend record joins the batch the append just joined: the event and its record commit together.
    if (packet.qos > 0 && hash !== 0) this.#o.resendGuard?.remember(clientId, packet.messageId!, hash);
    if (packet.qos === 0) callback(null);
    this.#logger.info('command replied', { commandId: command.id, device: command.device, clientId });
    if (advances(record.state, 'replied')) this.#change(record, 'replied');
  }

  #reject(clientId: string, packet: PublishPacket, reason: string, message: string, callback: Callback): void {
    let counter = this.#rejected.get(reason);
    if (!counter) {
      counter = this.#o.metrics.counter('tributary_edge_messages_rejected_total', 'Device messages that could not become CloudEvents, by reason (kept as dead letters).', { reason });
      this.#rejected.set(reason, counter);
    }
    counter.inc();
    const { topic } = packet;
    this.#logger.warn('message rejected', { clientId, topic, reason, error: message, qos: packet.qos });
    const deadLetters = this.#o.deadLetters;
    if (!deadLetters) {
      callback(null);
      return;
    }
    deadLetters.add({ time: iso(this.#clock()), clientId, topic, reason, message, payload: packet.payload as Uint8Array }, (err) => {
      if (err) this.#logger.error('could not store a dead letter', { clientId, topic, err });
      callback(err);
    });
  }

  // ---- state ------------------------------------------------------------------------------------------------

  #add(record: EdgeCommandRecord): void {
    const { id, device } = record.command;
    this.#records.set(id, record);
    if (record.state !== 'sent') return;
    let queue = this.#queues.get(device);
    if (!queue) this.#queues.set(device, (queue = []));
    // Ids are UUIDv7: string order is creation order. Commands nearly always arrive in that order.
    let at = queue.length;
    while (at > 0 && queue[at - 1] > id) at--;
    queue.splice(at, 0, id);
  }

  /** Moves a command to `state`, with `event` (if any) in the same group commit, then reports it. */
  #change(record: EdgeCommandRecord, state: EdgeCommandState, event?: CloudEvent): void {
    const { id, device } = record.command;
    if (record.state === 'sent') {
      const queue = this.#queues.get(device);
      const at = queue?.indexOf(id) ?? -1;
      if (at >= 0) queue!.splice(at, 1);
      if (queue?.length === 0) this.#queues.delete(device);
    }
    record.state = state;
    record.updatedAt = this.#clock();
    if (event) {
      this.#o.buffer.append(HIGH, encode(event), (err) => {
        if (!err) return;
        this.#storageErrors.inc();
        this.#logger.error('cannot buffer a command event', { commandId: id, type: event.type, err });
      });
    }
    this.#o.store.put(recordKey(id), encode(record), (err) => {
      if (err) {
        this.#logger.error('cannot store a command state; it is reported from memory until a restart', { commandId: id, state, err });
      }
      this.#report(id);
      this.#schedule();
    });
  }

  #expire(record: EdgeCommandRecord): void {
    const { command } = record;
    const device = command.device;
    this.#subscribers.settle(device, command.id);
    this.#expired.inc();
    this.#logger.info('command expired before delivery', { commandId: command.id, device, expiresAt: command.expiresAt });
    this.#change(record, 'expired', this.#event(command, CommandEventType.Expired, { id: command.id, name: command.name, expiresAt: command.expiresAt, expiredIn: 'edge' }));
    this.#pump(device);
  }

  #event(command: Command, type: string, data: unknown, contentType = JSON_CONTENT_TYPE): CloudEvent {
    return {
      specversion: '1.0',
      id: this.#ids.next(),
      source: `/edges/${this.#o.edgeId}/devices/${command.device}`,
      type,
      subject: command.device,
      time: iso(this.#clock()),
      datacontenttype: contentType,
      data,
      commandid: command.id,
    };
  }

  /** When the timer next has work for `record`: its expiry while waiting, its deletion once finished and reported. */
  #deadline(record: EdgeCommandRecord): number {
    if (record.state === 'sent') return Date.parse(record.command.expiresAt);
    if (this.#reported.get(record.command.id) !== record.state || !isFinal(record.state)) return Infinity;
    return record.state === 'expired' ? record.updatedAt : record.updatedAt + this.#replyWindowMs;
  }

  #schedule(): void {
    if (this.#closed) return;
    let next = Infinity;
    for (const record of this.#records.values()) next = Math.min(next, this.#deadline(record));
    this.#timer.set(next);
  }

  #sweep(): void {
    if (this.#closed) return;
    const now = this.#clock();
    const drop: string[] = [];
    for (const record of [...this.#records.values()]) {
      if (this.#deadline(record) > now) continue;
      if (record.state === 'sent') this.#expire(record);
      else drop.push(record.command.id);
    }
    if (drop.length) {
      for (const id of drop) {
        this.#records.delete(id);
        this.#reported.delete(id);
      }
      this.#o.store.write([], drop.map(recordKey), (err) => {
        if (err) this.#logger.warn('cannot delete finished commands; they are deleted after the next restart', { err });
      });
    }
    this.#schedule();
  }
}

function recordKey(id: string): Uint8Array {
  return textKey(EDGE_COMMANDS_NAMESPACE, id);
}

function deviceKey(device: string): Uint8Array {
  return textKey(KNOWN_DEVICES_NAMESPACE, device);
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
