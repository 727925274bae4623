/**
 * The MessagePack bytes of a device event, written from a per-topic template rather than built as an object and
 * packed. Everything but `id`, `time` and `data` is the same for every publish on a topic, so those attributes are
 * encoded once, when the topic is first seen; a publish then costs a few byte copies. This is the ingest hot path
 * (see DESIGN.md, "facts measured": building and encoding the envelope cost more than the batched LevelDB write).
 *
 * The bytes are exactly the ones `encode` (codec.ts) writes for the event object `TopicMapper.map` builds — the
 * same attributes in the same order, the same MessagePack forms — so the buffer, the uplink and the cloud see the
 * same events; the tests hold the two side by side.
 */
import { binHeaderLength, encode, writeBinHeader } from './codec.ts';
import type { EventIdGenerator } from './event-id.ts';
import { EVENT_ID_LENGTH } from './event-id.ts';

/** The attributes a template fixes. */
export interface TemplateAttributes {
  source: string;
  type: string;
  subject: string;
}

/** What kind of data follows the envelope: JSON (as MessagePack) or the payload's bytes. */
export const DataKind = { Json: 0, Bytes: 1 } as const;
export type DataKind = (typeof DataKind)[keyof typeof DataKind];

const JSON_CONTENT_TYPE = 'application/json';
const BYTES_CONTENT_TYPE = 'application/octet-stream';
/** MessagePack fixmap of the 8 attributes (specversion, id, source, type, subject, time, datacontenttype, data). */
const FIXMAP_8 = 0x88;
/** MessagePack str 8 header of a 36-byte id. */
const ID_HEADER = [0xd9, EVENT_ID_LENGTH];

function concat(parts: (Uint8Array | number[])[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}


export class EventTemplate {
  /** Map header to the id's string header. */
  readonly #head: Uint8Array;
  /** `source`, `type`, `subject` and the `time` key. */
  readonly #middle: Uint8Array;
  /** `datacontenttype` and the `data` key, by data kind. */
  readonly #tails: readonly [Uint8Array, Uint8Array];

  constructor(attributes: TemplateAttributes) {
    const s = (text: string): Uint8Array => encode(text);
    this.#head = concat([[FIXMAP_8], s('specversion'), s('1.0'), s('id'), ID_HEADER]);
    this.#middle = concat([s('source'), s(attributes.source), s('type'), s(attributes.type), s('subject'), s(attributes.subject), s('time')]);
    this.#tails = [concat([s('datacontenttype'), s(JSON_CONTENT_TYPE), s('data')]), concat([s('datacontenttype'), s(BYTES_CONTENT_TYPE), s('data')])];
  }

  /**
   * The event's bytes: a new id from `ids`, `time` (the packed string of the receipt time), and either `data`
   * already in MessagePack (`DataKind.Json`) or the payload's raw bytes (`DataKind.Bytes`, written as bin).
   */
  write(ids: EventIdGenerator, time: Uint8Array, kind: DataKind, data: Uint8Array): Uint8Array {
    const head = this.#head;
    const middle = this.#middle;
    const tail = this.#tails[kind];
    const binHeader = kind === DataKind.Bytes ? binHeaderLength(data.length) : 0;
    const size = head.length + EVENT_ID_LENGTH + middle.length + time.length + tail.length + binHeader + data.length;
    const start = reserve(size);
    const out = chunk;
    let at = start;
    out.set(head, at);
    at += head.length;
    ids.writeNext(out, at);
    at += EVENT_ID_LENGTH;
    out.set(middle, at);
    at += middle.length;
    out.set(time, at);
    at += time.length;
    out.set(tail, at);
    at += tail.length;
    if (binHeader) at = writeBinHeader(out, at, data.length);
    out.set(data, at);
    at += data.length;
    return out.subarray(start, at);
  }
}

/**
 * Events are carved out of shared chunks, one allocation for many events (as msgpackr does with its buffer); a
 * chunk is never written twice, so an event's bytes stay valid for as long as anyone holds them.
 */
const CHUNK_SIZE = 64 * 1024;
let chunk = new Uint8Array(CHUNK_SIZE);
let used = 0;

/** Makes room for `size` bytes in `chunk`; returns where they start. */
function reserve(size: number): number {
  if (used + size > chunk.length) {
    chunk = new Uint8Array(Math.max(CHUNK_SIZE, size));
    used = 0;
  }
  const start = used;
  used += size;
  return start;
}
