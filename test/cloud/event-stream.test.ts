import { setImmediate } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CloudLog, CloudLogStats, CommitResult, LoggedEvent } from '../../cloud/cloud-log.ts';
import { createEventStream, jsonLine, KEEP_ALIVE, sseMessage } from '../../cloud/event-stream.ts';
import type { EventStreamOptions } from '../../cloud/event-stream.ts';
import { LevelCloudLog } from '../../cloud/level-cloud-log.ts';
import type { CloudEvent } from '../../shared/cloud-event.ts';
import type { WireLane } from '../../shared/uplink-wire.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { batch, event, range } from './cloud-log.contract.ts';

/** A CloudLog that counts what the stream does with it, and can be made to fail. */
class ObservedLog implements CloudLog {
  reads = 0;
  listeners = 0;
  failReads: Error | undefined;
  readonly #inner: CloudLog;
  constructor(inner: CloudLog) {
    this.#inner = inner;
  }
  get lastOffset(): number {
    return this.#inner.lastOffset;
  }
  commitBatch(edgeId: string, lane: WireLane, seqs: readonly number[], events: readonly Uint8Array[]): Promise<CommitResult> {
    return this.#inner.commitBatch(edgeId, lane, seqs, events);
  }
  append(events: readonly CloudEvent[]): Promise<{ first: number; last: number }> {
    return this.#inner.append(events);
  }
  read(fromOffset: number, limit: number): Promise<LoggedEvent[]> {
    this.reads++;
    if (this.failReads) return Promise.reject(this.failReads);
    return this.#inner.read(fromOffset, limit);
  }
  onAppend(listener: (lastOffset: number) => void): () => void {
    this.listeners++;
    const unsubscribe = this.#inner.onAppend(listener);
    let subscribed = true;
    return () => {
      if (subscribed) this.listeners--;
      subscribed = false;
      unsubscribe();
    };
  }
  highWaterMark(edgeId: string, lane: WireLane): Promise<number> {
    return this.#inner.highWaterMark(edgeId, lane);
  }
  getCursor(name: string): Promise<number | undefined> {
    return this.#inner.getCursor(name);
  }
  setCursor(name: string, offset: number): Promise<void> {
    return this.#inner.setCursor(name, offset);
  }
  stats(): CloudLogStats {
    return this.#inner.stats();
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** Reads a stream's text chunk by chunk, each read bounded by a timeout. */
class ChunkReader {
  text = '';
  done = false;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  async next(timeoutMs = 5_000): Promise<string | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no chunk within ${timeoutMs} ms; got so far: ${JSON.stringify(this.text)}`)), timeoutMs);
    });
    try {
      const { done, value } = await Promise.race([this.#reader.read(), timeout]);
      if (done) {
        this.done = true;
        return undefined;
      }
      const chunk = this.#decoder.decode(value, { stream: true });
      this.text += chunk;
      return chunk;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads until `check(text)` holds. */
  async until(check: (text: string) => boolean, timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!check(this.text)) {
      if (this.done) throw new Error(`stream ended before the condition held; got: ${JSON.stringify(this.text)}`);
      await this.next(Math.max(1, deadline - Date.now()));
    }
    return this.text;
  }

  cancel(): Promise<void> {
    return this.#reader.cancel();
  }
}

function ids(text: string): number[] {
  return [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
}

function dataLines(text: string): CloudEvent[] {
  return [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]) as CloudEvent);
}

describe('sseMessage', () => {
  it('writes the offset as id and the event as one line of CloudEvents JSON', () => {
    const ev = event(1, { data: { note: 'two\nlines' } });
    const text = sseMessage(7, ev);
    expect(text).toBe(`id: 7\ndata: ${JSON.stringify(ev)}\n\n`);
    expect(text.split('\n')).toHaveLength(4);
  });

  it('sends binary data as data_base64 (JSON event format §3.1)', () => {
    const ev = event(1, { datacontenttype: 'application/octet-stream', data: new Uint8Array([1, 2, 3]) });
    const [sent] = dataLines(sseMessage(1, ev));
    expect(sent.data_base64).toBe('AQID');
    expect(sent).not.toHaveProperty('data');
  });
});

describe('jsonLine', () => {
  it('writes 64-bit integers decoded as bigint as decimal strings', () => {
    expect(jsonLine({ big: 2n ** 64n, n: 1 })).toBe('{"big":"18446744073709551616","n":1}');
  });
});

describe('createEventStream', () => {
  let dir: ReturnType<typeof tempDir>;
  let log: ObservedLog;
  const readers: ChunkReader[] = [];

  beforeEach(async () => {
    dir = tempDir('tributary-event-stream-');
    log = new ObservedLog(await LevelCloudLog.open({ path: dir.path, durability: 'crash-safe' }));
  });

  afterEach(async () => {
    for (const reader of readers.splice(0)) await reader.cancel().catch(() => undefined);
    await log.close();
    dir.remove();
  });

  function open(options: Partial<EventStreamOptions>): ChunkReader {
    const reader = new ChunkReader(createEventStream({ log, from: log.lastOffset + 1, ...options }));
    readers.push(reader);
    return reader;
  }

  it('opens with a comment naming its first offset, then replays the log from there in pages', async () => {
    await log.commitBatch('edge-1', ...batch(range(1, 5)));
    const reader = open({ from: 2, pageSize: 2 });
    expect(await reader.next()).toBe(': start 2\n\n');
    const text = await reader.until((t) => ids(t).includes(5));
    expect(ids(text)).toEqual([2, 3, 4, 5]);
    expect(dataLines(text)).toEqual([event(2), event(3), event(4), event(5)]);
    expect(log.reads).toBe(2);
  });

  it('follows events committed after it caught up with the log', async () => {
    await log.commitBatch('edge-1', ...batch([1]));
    const reader = open({ from: 1 });
    await reader.until((t) => ids(t).includes(1));
    await log.commitBatch('edge-1', ...batch([2, 3]));
    await log.append([event(4)]);
    const text = await reader.until((t) => ids(t).includes(4));
    expect(ids(text)).toEqual([1, 2, 3, 4]);
  });

  it('sends only the events its filter matches, and counts them', async () => {
    let counted = 0;
    const reader = open({ match: (e) => (e.data as { n: number }).n % 2 === 0, pageSize: 3, onEvents: (n) => (counted += n) });
    await reader.next();
    await log.commitBatch('edge-1', ...batch(range(1, 10)));
    const text = await reader.until((t) => ids(t).includes(10));
    expect(ids(text)).toEqual([2, 4, 6, 8, 10]);
    expect(counted).toBe(5);
  });

  it('sends a keep-alive comment after a quiet spell', async () => {
    const reader = open({ keepAliveMs: 30 });
    await reader.next();
    expect(await reader.next()).toBe(KEEP_ALIVE);
    expect(await reader.next()).toBe(KEEP_ALIVE);
  });

  it('sends keep-alives while its filter skips a long backlog', async () => {
    await log.commitBatch('edge-1', ...batch(range(1, 200)));
    const reader = open({ from: 1, pageSize: 1, keepAliveMs: 1, match: () => false });
    await reader.next();
    expect(await reader.next()).toBe(KEEP_ALIVE);
    expect(log.reads).toBeLessThan(200);
  });

  it('reads the log no faster than the consumer takes chunks', async () => {
    await log.commitBatch('edge-1', ...batch(range(1, 100)));
    const reader = open({ from: 1, pageSize: 10 });
    await reader.next();
    await reader.next();
    for (let i = 0; i < 20; i++) await setImmediate();
    expect(log.reads).toBe(1);
    expect(ids(reader.text)).toEqual(range(1, 10));
  });

  it('unsubscribes from the log and reports its end once when the consumer cancels', async () => {
    let closed = 0;
    const reader = open({ onClose: () => closed++ });
    await reader.next();
    expect(log.listeners).toBe(1);
    const waiting = reader.next().catch(() => undefined);
    await reader.cancel();
    await waiting;
    expect(log.listeners).toBe(0);
    expect(closed).toBe(1);
  });

  it('ends cleanly when one of its signals aborts while it waits for events', async () => {
    const shutdown = new AbortController();
    let closed = 0;
    const reader = open({ signals: [undefined, new AbortController().signal, shutdown.signal], onClose: () => closed++ });
    await reader.next();
    const ending = reader.next();
    shutdown.abort();
    expect(await ending).toBeUndefined();
    expect(reader.done).toBe(true);
    expect(log.listeners).toBe(0);
    expect(closed).toBe(1);
  });

  it('ends at once when a signal has already aborted', async () => {
    const reader = open({ signals: [AbortSignal.abort()] });
    expect(await reader.next()).toBeUndefined();
    expect(log.listeners).toBe(0);
  });

  it('ends and reports the error when reading the log fails', async () => {
    await log.commitBatch('edge-1', ...batch([1]));
    log.failReads = new Error('disk on fire');
    const errors: unknown[] = [];
    const reader = open({ from: 1, onError: (err) => errors.push(err) });
    await reader.next();
    expect(await reader.next()).toBeUndefined();
    expect(errors).toEqual([log.failReads]);
    expect(log.listeners).toBe(0);
  });
});
