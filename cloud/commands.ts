/**
 * Commands in the cloud: the durable command store, delivery to edges over their uplink connection, and expiry.
 *
 * Storage. Commands live in the cloud log's LevelDB under their own namespaces: `0x50 + command id` → the
 * record (MessagePack), `0x51 + device id` → the id of the edge that serves the device. Everything is also held
 * in memory (commands are few next to events); finished commands are deleted `retentionMs` after they finished.
 * A command is durable before the API answers 202.
 *
 * Delivery (wire format in shared/command-wire.ts). An edge subscribes to `tributary/v1/edges/{edgeId}/commands`
 * on every connect (a clean session: nothing is queued for it while it is away). On that subscription the cloud
 * publishes, at QoS 1, a hello (which tells the edge it may send its reports) and every `pending` command of the
 * edge, and then each new one as it is created. The edge stores a command durably and then says so on
 * `.../command-acks`; only that acknowledgement moves the command to `sent`. (Aedes 1.x does emit 'ack' for a client's PUBACK, but for a clean-session client it carries no
 * packet, so it cannot say which command was acknowledged; and a PUBACK from mqtt.js says "received", not
 * "stored".) An edge that disconnects before acknowledging gets the command again on its next subscription and
 * ignores a command id it already holds. The edge's later reports (`delivered`, `replied`, `expired`) move the
 * state on; a state never moves back (`advances`), so re-sent reports are harmless. Reports are stored before
 * their PUBACK, so the edge re-sends any the cloud may not have.
 *
 * Which edge serves a device: the edge reports the devices it knows on every connect and each new one as it
 * appears (`.../devices`); the latest report wins. A request may also name the edge.
 *
 * Expiry. One timer, set for the nearest deadline. A command still `pending` at its `expiresAt` is expired here
 * and an `io.tributary.command.expired` event is appended to the log. One that was published to a connected
 * edge and awaits the edge's acknowledgement gets `ackGraceMs` more: if the edge stored it, the edge expires it
 * (and writes the event) itself, so the expiry is recorded once. If the link breaks in exactly that window, both
 * may record it (two expired events for one command). A `sent` command expires at the edge, which reports it.
 *
 * Malformed control messages are logged, counted and acknowledged (re-sending cannot make them valid); a
 * publish on another edge's control topic is refused, which closes that connection, as ingress does.
 */
import type { Aedes, Client, PublishPacket, Subscription } from 'aedes';
import type { CloudEvent } from '../shared/cloud-event.ts';
import type { Command, CommandState, CommandUpdate } from '../shared/command-wire.ts';
import {
  advances,
  CommandEventType,
  ControlTopic,
  controlTopic,
  decodeCommandUpdates,
  decodeDeviceReport,
  encodeCommandMessage,
  encodeHello,
  filterMatches,
  isFinal,
  parseControlTopic,
} from '../shared/command-wire.ts';
import { decode, encode } from '../shared/codec.ts';
import { DeadlineTimer } from '../shared/deadline-timer.ts';
import { errorMessage } from '../shared/errors.ts';
import { EventIdGenerator } from '../shared/event-id.ts';
import type { LevelStore } from '../shared/level-store.ts';
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import { keyText, textKey, textKeyRange } from '../shared/text-key.ts';
import type { CloudLog } from './cloud-log.ts';

export const COMMANDS_NAMESPACE = 0x50;
export const DEVICE_EDGES_NAMESPACE = 0x51;

/** Where cloud-made command events come from (edge-made ones name the edge and device). */
export const CLOUD_COMMANDS_SOURCE = '/cloud/commands';

export interface CommandRecord {
  command: Command;
  state: CommandState;
  /** RFC 3339: when the state last changed. */
  updatedAt: string;
}

export interface NewCommand {
  device: string;
  edge: string;
  name?: string;
  data: unknown;
  ttlSeconds: number;
}

export interface CloudCommandsOptions {
  store: LevelStore;
  log: CloudLog;
  metrics: Metrics;
  logger: Logger;
  clock?: () => number;
  /** Extra time a command published to a connected edge waits for the edge's acknowledgement past its expiry. Default 10 s. */
  ackGraceMs?: number;
  /** How long a finished command (delivered, replied, expired) stays listed. Default 7 days. */
  retentionMs?: number;
}

type Callback = (error?: Error | null) => void;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Wait after a failed expiry (the log append or the store write failed) before the next attempt. */
const RETRY_MS = 1000;

export class CloudCommands {
  readonly #o: CloudCommandsOptions;
  readonly #clock: () => number;
  readonly #ackGraceMs: number;
  readonly #retentionMs: number;
  readonly #ids: EventIdGenerator;
  readonly #logger: Logger;
  readonly #records = new Map<string, CommandRecord>();
  /** Command ids per device, oldest first. */
  readonly #byDevice = new Map<string, Set<string>>();
  /** Ids of `pending` commands per edge, oldest first. */
  readonly #pendingByEdge = new Map<string, Set<string>>();
  readonly #deviceEdges = new Map<string, string>();
  /** The connection of each edge subscribed to its command topic. */
  readonly #edges = new Map<string, Client>();
  /** Commands published to an edge's current connection and not yet acknowledged by it. */
  readonly #inflight = new Set<string>();
  /** Commands whose expiry is being written. */
  readonly #expiring = new Set<string>();
  #aedes: Aedes | null = null;
  readonly #timer: DeadlineTimer;
  #retryAt = 0;
  #closed = false;
  /** The edge reports being applied, in order. */
  #updates: Promise<void> = Promise.resolve();
  readonly #created: Counter;
  readonly #sent: Counter;
  readonly #expired: Counter;
  readonly #rejected: Counter;

  private constructor(options: CloudCommandsOptions) {
    this.#o = options;
    this.#clock = options.clock ?? Date.now;
    this.#ackGraceMs = options.ackGraceMs ?? 10_000;
    this.#retentionMs = options.retentionMs ?? 7 * 24 * 3600_000;
    this.#ids = new EventIdGenerator(this.#clock);
    this.#timer = new DeadlineTimer(() => this.#sweep(), this.#clock);
    this.#logger = options.logger;
    const m = options.metrics;
    this.#created = m.counter('tributary_cloud_commands_created_total', 'Commands accepted by the API.');
    this.#sent = m.counter('tributary_cloud_commands_sent_total', 'Commands an edge acknowledged as stored.');
    this.#expired = m.counter('tributary_cloud_commands_expired_total', 'Commands that expired in the cloud, before reaching their edge.');
    this.#rejected = m.counter('tributary_cloud_command_messages_rejected_total', 'Command control messages from edges that were malformed or not allowed.');
    m.gauge('tributary_cloud_commands_pending', 'Commands waiting in the cloud for their edge.', () => {
      let n = 0;
      for (const ids of this.#pendingByEdge.values()) n += ids.size;
      return n;
    });
  }

  /** Loads the stored commands and device → edge map. */
  static async open(options: CloudCommandsOptions): Promise<CloudCommands> {
    const commands = new CloudCommands(options);
    const { db } = options.store;
    for await (const [key, value] of db.iterator(textKeyRange(COMMANDS_NAMESPACE))) {
      try {
        commands.#index(decode<CommandRecord>(value));
      } catch (err) {
        options.logger.error('skipping an unreadable stored command', { key: keyText(key), err });
      }
    }
    for await (const [key, value] of db.iterator(textKeyRange(DEVICE_EDGES_NAMESPACE))) {
      commands.#deviceEdges.set(keyText(key), decoder.decode(value));
    }
    commands.#schedule();
    return commands;
  }

  /** The edge that last reported `device`, if any. */
  edgeOf(device: string): string | undefined {
    return this.#deviceEdges.get(device);
  }

  get(id: string): CommandRecord | undefined {
    return this.#records.get(id);
  }

  /** The device's commands, oldest first. */
  byDevice(device: string): CommandRecord[] {
    return [...(this.#byDevice.get(device) ?? [])].map((id) => this.#records.get(id)!);
  }

  /** Stores a new command durably, then sends it if its edge is connected. */
  async create(input: NewCommand): Promise<CommandRecord> {
    const now = this.#clock();
    const command: Command = {
      id: this.#ids.next(),
      device: input.device,
      edge: input.edge,
      data: input.data ?? null,
      createdAt: iso(now),
      expiresAt: iso(now + input.ttlSeconds * 1000),
    };
    if (input.name !== undefined) command.name = input.name;
    const record: CommandRecord = { command, state: 'pending', updatedAt: command.createdAt };
    await this.#o.store.writeAsync([[commandKey(command.id), encode(record)]]);
    this.#index(record);
    this.#created.inc();
    this.#logger.info('command accepted', { commandId: command.id, device: command.device, edge: command.edge, name: command.name, expiresAt: command.expiresAt });
    this.#send(record);
    this.#schedule();
    return record;
  }

  /** Starts delivering over the uplink listener: follows edges' subscriptions and connections. */
  attach(aedes: Aedes): void {
    this.#aedes = aedes;
    aedes.on('subscribe', (subs, client) => this.#subscribed(subs, client));
    aedes.on('clientDisconnect', (client) => {
      if (this.#edges.get(client.id) !== client) return;
      this.#edges.delete(client.id);
      for (const id of this.#pendingByEdge.get(client.id) ?? []) this.#inflight.delete(id);
      this.#schedule();
    });
  }

  /**
   * Handles a publish on a command control topic (`true`: it is handled, `callback` will be called); anything
   * else is left to the caller (`false`). Compose it in front of ingress's hook.
   */
  readonly handlePublish = (client: Client | null, packet: PublishPacket, callback: Callback): boolean => {
    const topic = parseControlTopic(packet.topic);
    if (!topic) return false;
    if (!client) {
      callback(null);
      return true;
    }
    if (topic.edge !== client.id || topic.kind === ControlTopic.Commands) {
      this.#rejected.inc();
      const message = `publish to "${packet.topic}" refused: an edge publishes only to tributary/v1/edges/{its client id}/command-acks and .../devices`;
      this.#logger.warn('command control publish refused', { clientId: client.id, error: message });
      // MQTT 3.1.1 has no negative PUBACK; an error closes the connection [MQTT-3.3.5-2].
      callback(new Error(message));
      return true;
    }
    const payload = packet.payload as Uint8Array;
    const done = (err: Error | null) => {
      if (err) this.#logger.error('cannot store a command control message; closing the link so the edge re-sends it', { edgeId: client.id, err });
      callback(err);
    };
    try {
      if (topic.kind === ControlTopic.CommandAcks) this.#applyUpdates(client.id, decodeCommandUpdates(payload)).then(() => done(null), done);
      else this.#applyDeviceReport(client.id, decodeDeviceReport(payload).devices).then(() => done(null), done);
    } catch (err) {
      this.#rejected.inc();
      this.#logger.warn('malformed command control message dropped', { edgeId: client.id, topic: packet.topic, error: errorMessage(err) });
      callback(null);
    }
    return true;
  };

  /** The Aedes `authorizeSubscribe` hook: no client may subscribe to another edge's commands. */
  readonly authorizeSubscribe = (client: Client, sub: Subscription, callback: (error: Error | null, sub?: Subscription | null) => void): void => {
    // A name no edge can have (edge ids are letters, digits, "-", "_", "."): a filter that matches it matches any edge.
    const otherEdge = controlTopic('\u0000other', ControlTopic.Commands);
    if (filterMatches(sub.topic, otherEdge) && sub.topic !== controlTopic(client.id, ControlTopic.Commands)) {
      this.#rejected.inc();
      this.#logger.warn('subscription refused: it would receive other edges\' commands', { clientId: client.id, topic: sub.topic });
      callback(null, null);
      return;
    }
    callback(null, sub);
  };

  close(): void {
    this.#closed = true;
    this.#timer.clear();
    this.#aedes = null;
  }

  #subscribed(subs: Subscription[], client: Client): void {
    const topic = controlTopic(client.id, ControlTopic.Commands);
    if (!subs.some((s) => s.topic === topic && s.qos > 0)) return;
    this.#edges.set(client.id, client);
    const pending = [...(this.#pendingByEdge.get(client.id) ?? [])];
    this.#logger.info('edge subscribed to its commands', { edgeId: client.id, pending: pending.length });
    this.#publish(client.id, encodeHello(), 'hello');
    for (const id of pending) this.#send(this.#records.get(id)!);
    this.#schedule();
  }

  /** Publishes a pending command to its edge, if the edge is connected and the command not yet past its expiry. */
  #send(record: CommandRecord): void {
    const { command } = record;
    if (!this.#aedes || record.state !== 'pending' || !this.#edges.has(command.edge) || Date.parse(command.expiresAt) <= this.#clock()) return;
    this.#inflight.add(command.id);
    this.#publish(command.edge, encodeCommandMessage(command), command.id);
  }

  #publish(edge: string, payload: Uint8Array, what: string): void {
    this.#aedes?.publish(
      { cmd: 'publish', topic: controlTopic(edge, ControlTopic.Commands), payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), qos: 1, retain: false, dup: false },
      (err) => {
        if (err) this.#logger.warn('cannot publish to an edge; what it needs is sent again when it reconnects', { edgeId: edge, message: what, error: err.message });
      },
    );
  }

  /** Applies an edge's reports, one message at a time, so a state is computed from the last stored one. */
  #applyUpdates(edge: string, updates: CommandUpdate[]): Promise<void> {
    const run = this.#updates.then(() => this.#apply(edge, updates));
    this.#updates = run.catch(() => undefined);
    return run;
  }

  async #apply(edge: string, updates: CommandUpdate[]): Promise<void> {
    const changed = new Map<string, CommandRecord>();
    for (const update of updates) {
      const record = changed.get(update.id) ?? this.#records.get(update.id);
      if (!record) {
        this.#logger.debug('update for an unknown command ignored', { edgeId: edge, commandId: update.id, state: update.state });
        continue;
      }
      if (record.command.edge !== edge) {
        this.#rejected.inc();
        this.#logger.warn("update for another edge's command ignored", { edgeId: edge, commandId: update.id, commandEdge: record.command.edge });
        continue;
      }
      if (update.state === 'sent') this.#inflight.delete(update.id);
      if (!advances(record.state, update.state) || this.#expiring.has(update.id)) continue;
      changed.set(update.id, { ...record, state: update.state, updatedAt: update.at });
    }
    if (changed.size === 0) return;
    await this.#o.store.writeAsync([...changed.values()].map((r) => [commandKey(r.command.id), encode(r)] as const));
    for (const next of changed.values()) {
      const record = this.#records.get(next.command.id);
      if (!record) continue;
      if (record.state === 'pending') {
        this.#pendingByEdge.get(edge)?.delete(next.command.id);
        this.#sent.inc();
      }
      record.state = next.state;
      record.updatedAt = next.updatedAt;
      this.#logger.info('command state changed', { commandId: next.command.id, device: next.command.device, edgeId: edge, state: next.state });
    }
    this.#schedule();
  }

  async #applyDeviceReport(edge: string, devices: string[]): Promise<void> {
    const moved = devices.filter((device) => this.#deviceEdges.get(device) !== edge);
    if (moved.length === 0) return;
    await this.#o.store.writeAsync(moved.map((device) => [deviceKey(device), encoder.encode(edge)] as const));
    for (const device of moved) this.#deviceEdges.set(device, edge);
    this.#logger.debug('devices reported', { edgeId: edge, devices: moved.length });
  }

  #index(record: CommandRecord): void {
    const { id, device, edge } = record.command;
    this.#records.set(id, record);
    let ids = this.#byDevice.get(device);
    if (!ids) this.#byDevice.set(device, (ids = new Set()));
    ids.add(id);
    if (record.state === 'pending') {
      let pending = this.#pendingByEdge.get(edge);
      if (!pending) this.#pendingByEdge.set(edge, (pending = new Set()));
      pending.add(id);
    }
  }

  #forget(record: CommandRecord): void {
    const { id, device, edge } = record.command;
    this.#records.delete(id);
    const ids = this.#byDevice.get(device);
    ids?.delete(id);
    if (ids?.size === 0) this.#byDevice.delete(device);
    const pending = this.#pendingByEdge.get(edge);
    pending?.delete(id);
    if (pending?.size === 0) this.#pendingByEdge.delete(edge);
  }

  /** When `record` next needs the timer: its expiry while pending, its deletion once finished. */
  #deadline(record: CommandRecord): number {
    const expires = Date.parse(record.command.expiresAt);
    if (record.state === 'pending') return this.#inflight.has(record.command.id) ? expires + this.#ackGraceMs : expires;
    // A `sent` command is the edge's to expire; it is forgotten here only long after it would have.
    return (isFinal(record.state) ? Date.parse(record.updatedAt) : expires) + this.#retentionMs;
  }

  #schedule(): void {
    if (this.#closed) return;
    let next = Infinity;
    for (const record of this.#records.values()) {
      if (this.#expiring.has(record.command.id)) continue;
      next = Math.min(next, this.#deadline(record));
    }
    this.#timer.set(Math.max(next, this.#retryAt));
  }

  #sweep(): void {
    const now = this.#clock();
    this.#retryAt = 0;
    const expire: CommandRecord[] = [];
    const drop: CommandRecord[] = [];
    for (const record of this.#records.values()) {
      if (this.#expiring.has(record.command.id) || this.#deadline(record) > now) continue;
      (record.state === 'pending' ? expire : drop).push(record);
    }
    if (drop.length) {
      for (const record of drop) this.#forget(record);
      this.#o.store.write([], drop.map((r) => commandKey(r.command.id)), (err) => {
        if (err) this.#logger.warn('cannot delete finished commands; they are deleted on the next sweep after a restart', { err });
      });
    }
    for (const record of expire) void this.#expire(record, now);
    this.#schedule();
  }

  /** Writes the expired event to the log, then the state: a crash in between writes the event again on restart. */
  async #expire(record: CommandRecord, now: number): Promise<void> {
    const { command } = record;
    this.#expiring.add(command.id);
    const event: CloudEvent = {
      specversion: '1.0',
      id: this.#ids.next(),
      source: CLOUD_COMMANDS_SOURCE,
      type: CommandEventType.Expired,
      subject: command.device,
      time: iso(now),
      datacontenttype: 'application/json',
      data: { id: command.id, device: command.device, edge: command.edge, name: command.name, expiresAt: command.expiresAt, expiredIn: 'cloud' },
      commandid: command.id,
    };
    try {
      await this.#o.log.append([event]);
      const updated: CommandRecord = { ...record, state: 'expired', updatedAt: iso(now) };
      await this.#o.store.writeAsync([[commandKey(command.id), encode(updated)]]);
      record.state = 'expired';
      record.updatedAt = updated.updatedAt;
      this.#pendingByEdge.get(command.edge)?.delete(command.id);
      this.#inflight.delete(command.id);
      this.#expired.inc();
      this.#logger.info('command expired before reaching its edge', { commandId: command.id, device: command.device, edgeId: command.edge, expiresAt: command.expiresAt });
    } catch (err) {
      this.#logger.error('cannot record a command\'s expiry; retrying', { commandId: command.id, err });
      this.#retryAt = this.#clock() + RETRY_MS;
    } finally {
      this.#expiring.delete(command.id);
      this.#schedule();
    }
  }
}

function commandKey(id: string): Uint8Array {
  return textKey(COMMANDS_NAMESPACE, id);
}

function deviceKey(device: string): Uint8Array {
  return textKey(DEVICE_EDGES_NAMESPACE, device);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
