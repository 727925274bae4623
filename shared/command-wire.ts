/**
 * Commands, cloud → edge → device: the command record, its states, and the messages that carry commands and
 * their progress over the edge's uplink connection and to devices. Pure: no I/O.
 *
 * On the uplink (MQTT 3.1.1, the connection the edge opened; MessagePack payloads, QoS 1):
 * - `tributary/v1/edges/{edgeId}/commands`, cloud → edge: `{v: 1, hello: true}` first, then `{v: 1, command}`,
 *   one command per message. The edge subscribes to its own topic on every connect; on that subscription the
 *   cloud says hello and publishes the edge's pending commands, then new ones as they are created while the
 *   edge is connected. The edge publishes nothing on the topics below before the hello of the connection: a
 *   cloud without commands would refuse them by closing the link, and the edge's events must still flow.
 * - `tributary/v1/edges/{edgeId}/command-acks`, edge → cloud: `{v: 1, updates: [{id, state, at}]}`. `sent`
 *   means "the edge has stored the command durably" (sent only after that write); `delivered`, `replied` and
 *   `expired` report what happened at the edge. The cloud acknowledges (PUBACK) only after it stored the
 *   updates, so an edge re-sends whatever it has not seen acknowledged after a reconnect; updates are idempotent
 *   (a state never goes back).
 * - `tributary/v1/edges/{edgeId}/devices`, edge → cloud: `{v: 1, devices: [...], full}`, the devices the edge
 *   serves (`full` on every connect, then one message per newly seen device), so the cloud knows which edge to
 *   send a device's commands to.
 *
 * To a device (MQTT, JSON, QoS 1): on its command topic (`commands/{deviceId}` by default) the payload
 * `{"id", "name"?, "data", "expiresAt"}`; the device answers on its reply topic
 * (`commands/{deviceId}/replies/{commandId}` by default) with any payload, which becomes an
 * `io.tributary.command.reply` event.
 */
import { decode, encode } from './codec.ts';
import { WireError } from './errors.ts';
import { UPLINK_TOPIC_PREFIX } from './uplink-wire.ts';

export const COMMAND_WIRE_VERSION = 1;

/**
 * Where a command is: `pending` (stored in the cloud, not yet at the edge) → `sent` (stored at the edge) →
 * `delivered` (the device acknowledged the MQTT publish) → `replied` (the device answered); or `expired` (its
 * time to live passed before it was delivered). A state only moves forward (see `advances`).
 */
export const COMMAND_STATES = ['pending', 'sent', 'delivered', 'replied', 'expired'] as const;
export type CommandState = (typeof COMMAND_STATES)[number];
/** The states an edge reports. */
export type EdgeCommandState = Exclude<CommandState, 'pending'>;
const EDGE_STATES: readonly string[] = ['sent', 'delivered', 'replied', 'expired'];

const RANK: Record<CommandState, number> = { pending: 0, sent: 1, delivered: 2, replied: 3, expired: 2 };

/** Whether a command in state `from` moves to `to`: forward only; `expired` only before delivery; terminal states stay. */
export function advances(from: CommandState, to: CommandState): boolean {
  if (from === 'expired' || from === 'replied') return false;
  if (to === 'expired') return from === 'pending' || from === 'sent';
  return RANK[to] > RANK[from];
}

export function isFinal(state: CommandState): boolean {
  return state === 'delivered' || state === 'replied' || state === 'expired';
}

export const CommandEventType = {
  Delivered: 'io.tributary.command.delivered',
  Reply: 'io.tributary.command.reply',
  Expired: 'io.tributary.command.expired',
} as const;

/** A command for one device, as the cloud stores it and sends it to the device's edge. */
export interface Command {
  /** UUIDv7, made by the cloud. */
  id: string;
  device: string;
  edge: string;
  name?: string;
  /** Any JSON value. */
  data: unknown;
  /** RFC 3339. */
  createdAt: string;
  /** RFC 3339: after this the command is never published to the device. */
  expiresAt: string;
}

export interface CommandUpdate {
  id: string;
  state: EdgeCommandState;
  /** RFC 3339: when the edge saw it happen. */
  at: string;
}

export interface DeviceReport {
  devices: string[];
  /** Every device the edge knows (sent on connect), rather than newly seen ones. */
  full: boolean;
}

// ---- identifiers ----------------------------------------------------------------------------------------------

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const EDGE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** A device id becomes an MQTT topic level: no "/", no wildcards, no NUL [MQTT-4.7.3-2], not a "$" topic. */
// eslint-disable-next-line no-control-regex
const DEVICE_ID = /^[^/+#$\u0000][^/+#\u0000]{0,127}$/;
const MAX_NAME = 128;

export function isCommandId(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

export function isEdgeId(value: unknown): value is string {
  return typeof value === 'string' && EDGE_ID.test(value);
}

export function isDeviceId(value: unknown): value is string {
  return typeof value === 'string' && DEVICE_ID.test(value);
}

export const DEVICE_ID_RULE = '1-128 characters, none of "/", "+", "#" or NUL, not starting with "$"';
export const EDGE_ID_RULE = '1-64 letters, digits, "-", "_" or ".", starting with a letter or digit';

/** Why `name` cannot be a command name, or undefined when it can. */
export function commandNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME) return `must be a string of 1-${MAX_NAME} characters`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'must not contain control characters';
  return undefined;
}

// ---- uplink topics ----------------------------------------------------------------------------------------------

export const ControlTopic = {
  Commands: 'commands',
  CommandAcks: 'command-acks',
  Devices: 'devices',
} as const;
export type ControlTopicKind = (typeof ControlTopic)[keyof typeof ControlTopic];
const CONTROL_KINDS: readonly string[] = Object.values(ControlTopic);

export function controlTopic(edgeId: string, kind: ControlTopicKind): string {
  return `${UPLINK_TOPIC_PREFIX}${edgeId}/${kind}`;
}

/**
 * Whether the MQTT topic filter `filter` (`+` one level, `#` the rest) matches `topic` [MQTT-4.7.1]. A filter
 * starting with a wildcard does not match a `$` topic [MQTT-4.7.2-1].
 */
export function filterMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if ((f[0] === '+' || f[0] === '#') && topic.startsWith('$')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** The edge and kind of a command control topic, or undefined when the topic is not one. */
export function parseControlTopic(topic: string): { edge: string; kind: ControlTopicKind } | undefined {
  if (!topic.startsWith(UPLINK_TOPIC_PREFIX)) return undefined;
  const rest = topic.slice(UPLINK_TOPIC_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const kind = rest.slice(slash + 1);
  if (!CONTROL_KINDS.includes(kind)) return undefined;
  return { edge: rest.slice(0, slash), kind: kind as ControlTopicKind };
}

// ---- uplink messages --------------------------------------------------------------------------------------------

/** What the cloud publishes on an edge's commands topic. */
export type CloudMessage = { hello: true } | { command: Command };

export function encodeHello(): Uint8Array {
  return encode({ v: COMMAND_WIRE_VERSION, hello: true });
}

export function encodeCommandMessage(command: Command): Uint8Array {
  return encode({ v: COMMAND_WIRE_VERSION, command });
}

export function decodeCloudMessage(bytes: Uint8Array): CloudMessage {
  const message = envelope(bytes, 'command message');
  if (message.hello === true && message.command === undefined) return { hello: true };
  return { command: checkCommand(message.command, 'command message') };
}

export function encodeCommandUpdates(updates: readonly CommandUpdate[]): Uint8Array {
  return encode({ v: COMMAND_WIRE_VERSION, updates });
}

export function decodeCommandUpdates(bytes: Uint8Array): CommandUpdate[] {
  const message = envelope(bytes, 'command acknowledgement');
  const { updates } = message;
  if (!Array.isArray(updates) || updates.length === 0) throw new WireError('command acknowledgement must carry a non-empty "updates" array');
  return updates.map((u: unknown, i) => {
    const where = `command acknowledgement update ${i}`;
    if (!isRecord(u)) throw new WireError(`${where} is not a map`);
    if (!isCommandId(u.id)) throw new WireError(`${where}: "id" must be a command id (a UUID), got ${describe(u.id)}`);
    if (typeof u.state !== 'string' || !EDGE_STATES.includes(u.state)) {
      throw new WireError(`${where}: "state" must be one of ${EDGE_STATES.join(', ')}, got ${describe(u.state)}`);
    }
    if (!isTime(u.at)) throw new WireError(`${where}: "at" must be an RFC 3339 time, got ${describe(u.at)}`);
    return { id: u.id, state: u.state as EdgeCommandState, at: u.at };
  });
}

export function encodeDeviceReport(report: DeviceReport): Uint8Array {
  return encode({ v: COMMAND_WIRE_VERSION, devices: report.devices, full: report.full });
}

export function decodeDeviceReport(bytes: Uint8Array): DeviceReport {
  const message = envelope(bytes, 'device report');
  const { devices, full } = message;
  if (!Array.isArray(devices)) throw new WireError('device report must carry a "devices" array');
  devices.forEach((d: unknown, i) => {
    if (!isDeviceId(d)) throw new WireError(`device report: device ${i} is not a device id (${DEVICE_ID_RULE}), got ${describe(d)}`);
  });
  if (typeof full !== 'boolean') throw new WireError(`device report: "full" must be true or false, got ${describe(full)}`);
  return { devices: devices as string[], full };
}

function envelope(bytes: Uint8Array, what: string): Record<string, unknown> {
  const message = decode<unknown>(bytes);
  if (!isRecord(message)) throw new WireError(`${what} is not a map`);
  if (message.v !== COMMAND_WIRE_VERSION) throw new WireError(`${what} has wire version ${describe(message.v)}; this node speaks ${COMMAND_WIRE_VERSION}`);
  return message;
}

function checkCommand(c: unknown, what: string): Command {
  if (!isRecord(c)) throw new WireError(`${what}: "command" is not a map`);
  if (!isCommandId(c.id)) throw new WireError(`${what}: "id" must be a command id (a UUID), got ${describe(c.id)}`);
  if (!isDeviceId(c.device)) throw new WireError(`${what}: "device" must be a device id (${DEVICE_ID_RULE}), got ${describe(c.device)}`);
  if (!isEdgeId(c.edge)) throw new WireError(`${what}: "edge" must be an edge id (${EDGE_ID_RULE}), got ${describe(c.edge)}`);
  if (c.name !== undefined) {
    const problem = commandNameProblem(c.name);
    if (problem) throw new WireError(`${what}: "name" ${problem}`);
  }
  if (c.data === undefined) throw new WireError(`${what}: "data" is missing (null for none)`);
  if (!isTime(c.createdAt)) throw new WireError(`${what}: "createdAt" must be an RFC 3339 time, got ${describe(c.createdAt)}`);
  if (!isTime(c.expiresAt)) throw new WireError(`${what}: "expiresAt" must be an RFC 3339 time, got ${describe(c.expiresAt)}`);
  const command: Command = { id: c.id, device: c.device, edge: c.edge, data: c.data, createdAt: c.createdAt, expiresAt: c.expiresAt };
  if (c.name !== undefined) command.name = c.name as string;
  return command;
}

// ---- to and from devices ----------------------------------------------------------------------------------------

/** What a device receives on its command topic. */
export interface DeviceCommand {
  id: string;
  name?: string;
  data: unknown;
  expiresAt: string;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

export function encodeDeviceCommand(command: Command): Uint8Array {
  const payload: DeviceCommand = { id: command.id, name: command.name, data: command.data, expiresAt: command.expiresAt };
  return utf8.encode(JSON.stringify(payload));
}

export function decodeDeviceCommand(payload: Uint8Array): DeviceCommand {
  let value: unknown;
  try {
    value = JSON.parse(utf8Strict.decode(payload));
  } catch (err) {
    throw new WireError(`command payload is not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isRecord(value)) throw new WireError('command payload is not a JSON object');
  if (!isCommandId(value.id)) throw new WireError(`command payload: "id" must be a command id (a UUID), got ${describe(value.id)}`);
  if (!isTime(value.expiresAt)) throw new WireError(`command payload: "expiresAt" must be an RFC 3339 time, got ${describe(value.expiresAt)}`);
  if (value.name !== undefined && typeof value.name !== 'string') throw new WireError('command payload: "name" must be a string');
  return { id: value.id, name: value.name as string | undefined, data: value.data, expiresAt: value.expiresAt };
}

// ---- device topics ----------------------------------------------------------------------------------------------

export const DEFAULT_COMMAND_TOPIC = 'commands/{deviceId}';
export const DEFAULT_REPLY_TOPIC = 'commands/{deviceId}/replies/{commandId}';

/** A topic pattern such as `commands/{deviceId}/replies/{commandId}`: every variable is one whole level. */
export class CommandTopic {
  readonly pattern: string;
  readonly #levels: (string | { variable: string })[];
  /** The literal text before the first variable: a topic without it cannot match. */
  readonly #prefix: string;

  /** Throws an Error naming the pattern and what is wrong with it. */
  constructor(pattern: string, variables: readonly string[]) {
    this.pattern = pattern;
    this.#levels = pattern.split('/').map((level) => {
      const m = /^\{([A-Za-z]+)\}$/.exec(level);
      if (m) {
        if (!variables.includes(m[1])) throw new Error(`topic "${pattern}": unknown variable {${m[1]}}; use ${variables.map((v) => `{${v}}`).join(' and ')}`);
        return { variable: m[1] };
      }
      if (level.length === 0 || /[{}+#]/.test(level)) throw new Error(`topic "${pattern}": level "${level}" must be a literal or a whole {variable}, without wildcards`);
      return level;
    });
    for (const v of variables) {
      if (!this.#levels.some((l) => typeof l !== 'string' && l.variable === v)) throw new Error(`topic "${pattern}" must contain {${v}}`);
    }
    this.#prefix = pattern.slice(0, pattern.indexOf('{'));
  }

  format(values: Record<string, string>): string {
    return this.#levels.map((l) => (typeof l === 'string' ? l : values[l.variable])).join('/');
  }

  /** The variables of `topic`, or undefined when it does not match. */
  match(topic: string): Record<string, string> | undefined {
    if (!topic.startsWith(this.#prefix)) return undefined;
    const levels = topic.split('/');
    if (levels.length !== this.#levels.length) return undefined;
    const values: Record<string, string> = {};
    for (let i = 0; i < levels.length; i++) {
      const pattern = this.#levels[i];
      if (typeof pattern === 'string') {
        if (pattern !== levels[i]) return undefined;
      } else {
        if (levels[i].length === 0) return undefined;
        values[pattern.variable] = levels[i];
      }
    }
    return values;
  }
}

// ---- helpers ----------------------------------------------------------------------------------------------------

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function isTime(value: unknown): value is string {
  return typeof value === 'string' && RFC3339.test(value) && !isNaN(Date.parse(value));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function describe(value: unknown): string {
  if (value instanceof Uint8Array) return `${value.byteLength} bytes of binary`;
  if (typeof value === 'bigint') return String(value);
  return JSON.stringify(value) ?? String(value);
}
