/**
 * Turns an MQTT publish into a CloudEvent (the design's "telemetry to CloudEvent" contract). Pure: no I/O.
 *
 * A rule maps a topic pattern with named single-level variables to CloudEvent attributes, e.g.
 * `telemetry/{deviceId}/{metric}` → type `io.tributary.telemetry.{metric}`. Every pattern names `{deviceId}`.
 * A payload that is a structured-mode CloudEvent (MQTT 3.1.1 binding §3.2: JSON event format, detected by its
 * `specversion` member) is validated and passed through unchanged, provided its `source` is the path of the device
 * its topic names or under it (`/edges/{edgeId}/devices/{deviceId}[/...]`): a device names its own events only.
 */
import type { CloudEvent } from './cloud-event.ts';
import { validateCloudEvent } from './cloud-event.ts';
import { InvalidEventError } from './errors.ts';
import { encode } from './codec.ts';
import { EventIdGenerator } from './event-id.ts';
import { DataKind, EventTemplate } from './event-template.ts';
import { jsonToMessagePack } from './json-to-msgpack.ts';

export interface TopicRule {
  /** `telemetry/{deviceId}/{metric}`: literal levels and `{name}` variables, one level each. */
  topic: string;
  /** Event type template, e.g. `io.tributary.telemetry.{metric}`. */
  type: string;
}

export const DEFAULT_TOPIC_RULES: readonly TopicRule[] = [
  { topic: 'telemetry/{deviceId}/{metric}', type: 'io.tributary.telemetry.{metric}' },
  { topic: 'events/{deviceId}/{name}', type: 'io.tributary.event.{name}' },
];

export const JSON_CONTENT_TYPE = 'application/json';
export const BYTES_CONTENT_TYPE = 'application/octet-stream';

/** What a topic resolves to; computed once per distinct topic and cached. */
interface TopicTarget {
  deviceId: string;
  type: string;
  source: string;
  /** `source` + "/": a structured event's source may be under the device's path. */
  sourceBelow: string;
  /** The topic's events in MessagePack, for `mapEncoded`. */
  template: EventTemplate;
}

interface CompiledRule {
  levels: (string | { variable: string })[];
  type: string;
}

const VARIABLE = /^\{([A-Za-z][A-Za-z0-9_]*)\}$/;
const TEMPLATE_VARIABLE = /\{([A-Za-z][A-Za-z0-9_]*)\}/g;

/** Validates and compiles rules; throws with the rule index and reason when one is wrong. */
export function compileTopicRules(rules: readonly TopicRule[]): CompiledRule[] {
  return rules.map((rule, i) => {
    const levels = rule.topic.split('/').map((level) => {
      const m = VARIABLE.exec(level);
      if (m) return { variable: m[1] };
      if (level.includes('{') || level.includes('}') || level.includes('+') || level.includes('#')) {
        throw new Error(`rule ${i}: topic level "${level}" must be a literal or a whole {variable}`);
      }
      return level;
    });
    const names = new Set(levels.flatMap((l) => (typeof l === 'string' ? [] : [l.variable])));
    if (!names.has('deviceId')) throw new Error(`rule ${i}: topic "${rule.topic}" must contain {deviceId}`);
    for (const m of rule.type.matchAll(TEMPLATE_VARIABLE)) {
      if (!names.has(m[1])) throw new Error(`rule ${i}: type uses {${m[1]}}, which the topic does not define`);
    }
    return { levels, type: rule.type };
  });
}

/** A payload that is itself a CloudEvent (structured mode): it passes through, validated, as it is. */
function isStructured(data: unknown): data is object {
  return data !== undefined && data !== null && typeof data === 'object' && 'specversion' in data;
}

/** `target`: what the publish's topic resolves to (null when no rule matches it). */
function structured(data: object, topic: string, target: TopicTarget | null): MappingResult {
  let event: CloudEvent;
  try {
    event = validateCloudEvent(data);
  } catch (err) {
    return { ok: false, error: err as InvalidEventError };
  }
  // Without a rule the topic names no device, so there is no path to hold the event's source to.
  if (!target) return { ok: false, error: new InvalidEventError('unmapped-topic', `structured-mode CloudEvent on topic "${topic}", which matches no topic mapping rule, so the device it comes from is unknown; publish it under a topic of ingest.topics, e.g. events/{deviceId}/{name}`) };
  const source = event.source;
  if (source !== target.source && !source.startsWith(target.sourceBelow)) {
    return {
      ok: false,
      error: new InvalidEventError('foreign-source', `structured-mode CloudEvent on topic "${topic}" has source "${source}"; events of device "${target.deviceId}" must have source "${target.source}" or a path under it (such as "${target.source}/sensor-1")`),
    };
  }
  return { ok: true, event };
}

export type MappingResult = { ok: true; event: CloudEvent } | { ok: false; error: InvalidEventError };
/**
 * The event of `MappingResult`, already encoded as `encode` (codec.ts) would encode it, with its `type` (which
 * decides its buffer lane; for a topic's events the same string every time, so callers can cache on it).
 */
export type EncodedMappingResult = { ok: true; bytes: Uint8Array; type: string } | { ok: false; error: InvalidEventError };

export interface TopicMapperOptions {
  edgeId: string;
  rules?: readonly TopicRule[];
  clock?: () => number;
  ids?: EventIdGenerator;
  /** How many distinct topics to remember; the cache is cleared when it is full. */
  cacheSize?: number;
}

export class TopicMapper {
  readonly #rules: CompiledRule[];
  readonly #edgeId: string;
  readonly #clock: () => number;
  readonly #ids: EventIdGenerator;
  readonly #cache = new Map<string, TopicTarget | null>();
  readonly #cacheSize: number;
  #timeMs = -1;
  #timeText = '';
  #timeBytes: Uint8Array = new Uint8Array(0);

  constructor(options: TopicMapperOptions) {
    this.#edgeId = options.edgeId;
    this.#rules = compileTopicRules(options.rules ?? DEFAULT_TOPIC_RULES);
    this.#clock = options.clock ?? Date.now;
    this.#ids = options.ids ?? new EventIdGenerator(this.#clock);
    this.#cacheSize = options.cacheSize ?? 100_000;
  }

  /** Maps one publish. Never throws: an unusable message comes back as `{ok: false, error}`. */
  map(topic: string, payload: Uint8Array): MappingResult {
    const data = parsePayload(payload);
    if (data instanceof InvalidEventError) return { ok: false, error: data };
    const target = this.#target(topic);
    if (isStructured(data)) return structured(data, topic, target);
    if (!target) return { ok: false, error: unmappedTopic(topic) };
    const event: CloudEvent = {
      specversion: '1.0',
      id: this.#ids.next(),
      source: target.source,
      type: target.type,
      subject: target.deviceId,
      time: this.#now(),
      datacontenttype: data === undefined ? BYTES_CONTENT_TYPE : JSON_CONTENT_TYPE,
      data: data === undefined ? payload : data,
    };
    return { ok: true, event };
  }

  /**
   * `map`, with the event in MessagePack: the same bytes as `encode(map(topic, payload).event)`, written without
   * building the event object (the ingest hot path).
   */
  mapEncoded(topic: string, payload: Uint8Array): EncodedMappingResult {
    // Most payloads are JSON: convert them straight to MessagePack. Anything the fast path leaves alone (opaque
    // bytes, broken JSON, a structured-mode event, rare encodings) takes the path of `map`, which decides.
    const packed = jsonToMessagePack(payload, 'specversion');
    if (packed !== undefined) {
      const target = this.#target(topic);
      if (!target) return { ok: false, error: unmappedTopic(topic) };
      return { ok: true, bytes: target.template.write(this.#ids, this.#timeNow(), DataKind.Json, packed), type: target.type };
    }
    const data = parsePayload(payload);
    if (data instanceof InvalidEventError) return { ok: false, error: data };
    const target = this.#target(topic);
    if (isStructured(data)) {
      const result = structured(data, topic, target);
      return result.ok ? { ok: true, bytes: encode(result.event), type: result.event.type } : result;
    }
    if (!target) return { ok: false, error: unmappedTopic(topic) };
    const time = this.#timeNow();
    const bytes =
      data === undefined
        ? target.template.write(this.#ids, time, DataKind.Bytes, payload)
        : target.template.write(this.#ids, time, DataKind.Json, encode(data));
    return { ok: true, bytes, type: target.type };
  }

  /** The device a topic belongs to, or undefined when no rule matches. */
  deviceOf(topic: string): string | undefined {
    return this.#target(topic)?.deviceId;
  }

  #target(topic: string): TopicTarget | null {
    let target = this.#cache.get(topic);
    if (target !== undefined) return target;
    target = this.#resolve(topic);
    if (this.#cache.size >= this.#cacheSize) this.#cache.clear();
    this.#cache.set(topic, target);
    return target;
  }

  #resolve(topic: string): TopicTarget | null {
    const levels = topic.split('/');
    for (const rule of this.#rules) {
      if (rule.levels.length !== levels.length) continue;
      const vars: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < levels.length && ok; i++) {
        const pattern = rule.levels[i];
        if (typeof pattern === 'string') ok = pattern === levels[i];
        else if (levels[i].length === 0) ok = false;
        else vars[pattern.variable] = levels[i];
      }
      if (!ok) continue;
      const deviceId = vars.deviceId;
      const type = rule.type.replace(TEMPLATE_VARIABLE, (_, name: string) => vars[name]);
      const source = `/edges/${this.#edgeId}/devices/${deviceId}`;
      return { deviceId, type, source, sourceBelow: `${source}/`, template: new EventTemplate({ source, type, subject: deviceId }) };
    }
    return null;
  }

  #now(): string {
    const ms = this.#clock();
    if (ms !== this.#timeMs) {
      this.#timeMs = ms;
      this.#timeText = new Date(ms).toISOString();
      this.#timeBytes = encode(this.#timeText);
    }
    return this.#timeText;
  }

  /** The receipt time as a packed MessagePack string. */
  #timeNow(): Uint8Array {
    this.#now();
    return this.#timeBytes;
  }
}

function unmappedTopic(topic: string): InvalidEventError {
  return new InvalidEventError('unmapped-topic', `topic "${topic}" matches no topic mapping rule; publish under telemetry/{deviceId}/{metric} or add a rule to ingest.topics`);
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Deepest JSON nesting a payload may have (objects and arrays); the fast path (json-to-msgpack.ts) takes up to 64. */
export const MAX_JSON_DEPTH = 256;

/** Whether the JSON text from `start` nests objects and arrays deeper than `max`; brackets inside strings do not count. */
function nestedDeeperThan(bytes: Uint8Array, start: number, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = start; i < bytes.length; i++) {
    const b = bytes[i];
    if (inString) {
      if (b === 0x5c /* \\ */) i++;
      else if (b === 0x22 /* " */) inString = false;
    } else if (b === 0x22) {
      inString = true;
    } else if (b === 0x7b || b === 0x5b) {
      if (++depth > max) return true;
    } else if (b === 0x7d || b === 0x5d) {
      depth--;
    }
  }
  return false;
}

/**
 * JSON when the payload is a JSON text (RFC 8259), `undefined` for opaque bytes. A payload that starts like a
 * JSON object or array but does not parse is a device bug, and is rejected rather than guessed at.
 */
export function parsePayload(payload: Uint8Array): unknown {
  let i = 0;
  while (i < payload.length && (payload[i] === 0x20 || payload[i] === 0x0a || payload[i] === 0x0d || payload[i] === 0x09)) i++;
  if (i === payload.length) return undefined;
  const first = payload[i];
  const structured = first === 0x7b /* { */ || first === 0x5b; /* [ */
  const scalar = first === 0x22 || first === 0x2d || (first >= 0x30 && first <= 0x39) || first === 0x74 || first === 0x66 || first === 0x6e;
  if (!structured && !scalar) return undefined;
  if (structured && nestedDeeperThan(payload, i, MAX_JSON_DEPTH)) {
    // JSON.parse copes, but encoding such a value recursively overflows the call stack (about 3,000 levels).
    return new InvalidEventError('too-deep', `JSON payload is nested deeper than ${MAX_JSON_DEPTH} levels; flatten it`);
  }
  try {
    return JSON.parse(decoder.decode(payload));
  } catch (err) {
    if (!structured) return undefined;
    return new InvalidEventError('invalid-json', `payload starts like JSON but does not parse: ${(err as Error).message}`, { cause: err });
  }
}
