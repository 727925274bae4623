import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Hono } from 'hono';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CloudLog, CloudLogStats, CommitResult, LoggedEvent } from '../../cloud/cloud-log.ts';
import { createHttpApi, FILTER_SCAN_LIMIT, MAX_PAGE_LIMIT } from '../../cloud/http-api.ts';
import type { HttpApiOptions } from '../../cloud/http-api.ts';
import { startHttpServer } from '../../shared/http-server.ts';
import type { RunningHttpServer } from '../../shared/http-server.ts';
import { LevelCloudLog } from '../../cloud/level-cloud-log.ts';
import type { CloudEvent } from '../../shared/cloud-event.ts';
import type { WireLane } from '../../shared/uplink-wire.ts';
import { StorageError } from '../../shared/errors.ts';
import { Logger } from '../../shared/logger.ts';
import { Metrics } from '../../shared/metrics.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { SseClient } from '../helpers/sse-client.ts';
import { waitFor } from '../helpers/wait.ts';
import { batch, event, range } from './cloud-log.contract.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const DENO = `${REPO}node_modules/.bin/deno`;
const STREAMS = 'tributary_cloud_streams_connected';

/** A log whose reads fail, for the error path. */
function failingLog(inner: CloudLog): CloudLog {
  return {
    get lastOffset() {
      return inner.lastOffset;
    },
    read: (): Promise<LoggedEvent[]> => Promise.reject(new StorageError('LevelDB read failed: disk on fire')),
    commitBatch: (e: string, lane: WireLane, s: readonly number[], v: readonly Uint8Array[]): Promise<CommitResult> => inner.commitBatch(e, lane, s, v),
    append: (events: readonly CloudEvent[]) => inner.append(events),
    onAppend: (listener: (last: number) => void) => inner.onAppend(listener),
    highWaterMark: (edgeId: string, lane: WireLane) => inner.highWaterMark(edgeId, lane),
    getCursor: (name: string) => inner.getCursor(name),
    setCursor: (name: string, offset: number) => inner.setCursor(name, offset),
    stats: (): CloudLogStats => inner.stats(),
    close: () => inner.close(),
  };
}

describe('http api', () => {
  let dir: ReturnType<typeof tempDir>;
  let log: CloudLog;
  let metrics: Metrics;
  let logLines: string[];
  let server: RunningHttpServer | undefined;
  let clients: SseClient[];

  beforeEach(async () => {
    dir = tempDir('tributary-http-api-');
    log = await LevelCloudLog.open({ path: dir.path, durability: 'crash-safe' });
    metrics = new Metrics();
    logLines = [];
    clients = [];
    server = undefined;
  });

  afterEach(async () => {
    for (const client of clients) client.close();
    await server?.close();
    await log.close();
    dir.remove();
  });

  async function serve(options: Partial<HttpApiOptions> = {}): Promise<string> {
    const logger = new Logger({ level: 'debug', sink: { write: (line) => void logLines.push(line) } });
    const app = createHttpApi({ log, metrics, logger, ...options });
    server = await startHttpServer(app, { host: '127.0.0.1', port: 0 });
    return server.url;
  }

  function stream(path: string, headers?: Record<string, string>): SseClient {
    const client = new SseClient(`${server!.url}${path}`, headers);
    clients.push(client);
    return client;
  }

  async function getJson(path: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${server!.url}${path}`);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  describe('startHttpServer', () => {
    it('listens on the free port it was given 0 for and reports it in its URL', async () => {
      const url = await serve();
      expect(server!.port).toBeGreaterThan(0);
      expect(url).toBe(`http://127.0.0.1:${server!.port}`);
    });

    it('serves two apps side by side in one process', async () => {
      await serve();
      const second = await startHttpServer(createHttpApi({ log }), { port: 0 });
      try {
        expect(second.port).not.toBe(server!.port);
        expect((await fetch(`${second.url}/healthz`)).status).toBe(200);
      } finally {
        await second.close();
      }
    });

    it('fails with a clear error when the port is taken', async () => {
      await serve();
      await expect(startHttpServer(createHttpApi({ log }), { port: server!.port })).rejects.toThrow(`cannot listen for HTTP on 127.0.0.1:${server!.port}`);
    });

    it('closes promptly while event streams are open, ending them', async () => {
      await serve();
      const a = stream('/v1/stream');
      const b = stream('/v1/stream?from=1');
      await waitFor('two open streams', () => metrics.total(STREAMS) === 2);
      const started = Date.now();
      await server!.close();
      expect(Date.now() - started).toBeLessThan(900);
      await a.until('the stream to end', () => a.ended);
      await b.until('the stream to end', () => b.ended);
      expect(metrics.total(STREAMS)).toBe(0);
      await expect(fetch(`${server!.url}/healthz`)).rejects.toThrow();
    });

    it('lets a request in flight finish when it closes', async () => {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let started = false;
      const app = new Hono().get('/slow', async (c) => {
        started = true;
        await gate;
        return c.text('done');
      });
      server = await startHttpServer(app, { port: 0 });
      const response = fetch(`${server.url}/slow`);
      await waitFor('the slow request to start', () => started);
      const closed = server.close();
      release();
      expect(await (await response).text()).toBe('done');
      await closed;
    });

    it('cuts a request that outlives the grace period', async () => {
      let started = false;
      const app = new Hono().get('/hang', () => {
        started = true;
        return new Promise<Response>(() => undefined);
      });
      server = await startHttpServer(app, { port: 0, closeGraceMs: 50 });
      const response = fetch(`${server.url}/hang`);
      await waitFor('the request to start', () => started);
      await server.close();
      await expect(response).rejects.toThrow();
    });
  });

  describe('GET /healthz', () => {
    it('answers ok with the last offset and the fields of the health hook', async () => {
      await serve({ health: () => ({ edges: 2, uplink: 'listening' }) });
      await log.commitBatch('edge-1', ...batch([1, 2, 3]));
      const { status, body } = await getJson('/healthz');
      expect(status).toBe(200);
      expect(body).toEqual({ status: 'ok', lastOffset: 3, edges: 2, uplink: 'listening' });
    });
  });

  describe('GET /v1/events', () => {
    it('pages through the log with from, limit and next', async () => {
      await serve();
      await log.commitBatch('edge-1', ...batch(range(1, 25)));
      const first = await getJson('/v1/events?limit=10');
      expect(first.status).toBe(200);
      expect((first.body.events as { offset: number }[]).map((e) => e.offset)).toEqual(range(1, 10));
      expect(first.body).toMatchObject({ next: 11, lastOffset: 25 });
      const third = await getJson('/v1/events?from=21&limit=10');
      expect((third.body.events as { offset: number }[]).map((e) => e.offset)).toEqual(range(21, 25));
      expect(third.body.next).toBe(26);
      const past = await getJson('/v1/events?from=26');
      expect(past.body).toEqual({ events: [], next: 26, lastOffset: 25 });
    });

    it('returns 100 events by default and up to 10,000 when asked', async () => {
      await serve();
      await log.commitBatch('edge-1', ...batch(range(1, 150)));
      expect(((await getJson('/v1/events')).body.events as unknown[]).length).toBe(100);
      expect(((await getJson(`/v1/events?limit=${MAX_PAGE_LIMIT}`)).body.events as unknown[]).length).toBe(150);
    });

    it('returns events in the CloudEvents JSON format, with binary data as data_base64', async () => {
      await serve();
      const binary = event(1, { datacontenttype: 'application/octet-stream', data: new Uint8Array([104, 105]) });
      await log.commitBatch('edge-1', ...batch([1, 2], (s) => (s === 1 ? binary : event(s))));
      const { body } = await getJson('/v1/events');
      const [{ event: sent }, second] = body.events as { offset: number; event: CloudEvent }[];
      const { data: _bytes, ...attributes } = binary;
      expect(sent).toEqual({ ...attributes, data_base64: 'aGk=' });
      expect(second).toEqual({ offset: 2, event: event(2) });
    });

    it('filters by type and source prefix, several values of one parameter being alternatives', async () => {
      await serve();
      const types = ['io.tributary.telemetry.temperature', 'io.tributary.telemetry.humidity', 'io.tributary.alert.fired'];
      await log.commitBatch('edge-1', ...batch(range(1, 9), (s) => event(s, { type: types[s % 3] })));
      await log.append([event(10, { source: '/cloud/alerts', type: 'io.tributary.alert.fired' })]);
      const alerts = await getJson('/v1/events?type=io.tributary.alert');
      expect((alerts.body.events as { offset: number }[]).map((e) => e.offset)).toEqual([2, 5, 8, 10]);
      const either = await getJson('/v1/events?type=io.tributary.alert&type=io.tributary.telemetry.temp&limit=3');
      expect((either.body.events as { offset: number }[]).map((e) => e.offset)).toEqual([2, 3, 5]);
      expect(either.body.next).toBe(6);
      const cloudAlerts = await getJson('/v1/events?type=io.tributary.alert&source=/cloud/');
      expect((cloudAlerts.body.events as { offset: number }[]).map((e) => e.offset)).toEqual([10]);
    });

    it('looks at no more than 10,000 events for a filtered page, and says where to go on', async () => {
      await serve();
      const total = FILTER_SCAN_LIMIT + 50;
      await log.commitBatch('edge-1', ...batch(range(1, total), (s) => event(s, { type: s === total ? 'io.tributary.rare' : 'io.tributary.common' })));
      const first = await getJson('/v1/events?type=io.tributary.rare');
      expect(first.body).toEqual({ events: [], next: FILTER_SCAN_LIMIT + 1, lastOffset: total });
      const second = await getJson(`/v1/events?type=io.tributary.rare&from=${first.body.next as number}`);
      expect((second.body.events as { offset: number }[]).map((e) => e.offset)).toEqual([total]);
      expect(second.body.next).toBe(total + 1);
    });

    it('answers an unknown route with a 404 JSON error', async () => {
      await serve();
      const { status, body } = await getJson('/v1/nope');
      expect(status).toBe(404);
      expect(body).toEqual({ error: { code: 'ERR_NOT_FOUND', message: 'no route for GET /v1/nope' } });
    });

    it('answers a failing log with a 500 JSON error and logs it', async () => {
      log = failingLog(log);
      await serve();
      await log.append([event(1)]);
      const { status, body } = await getJson('/v1/events');
      expect(status).toBe(500);
      expect(body).toEqual({ error: { code: 'ERR_STORAGE', message: 'GET /v1/events failed: LevelDB read failed: disk on fire' } });
      const record = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r.msg === 'request failed');
      expect(record).toMatchObject({ level: 'error', method: 'GET', path: '/v1/events', err: { code: 'ERR_STORAGE' } });
      expect(metrics.total('tributary_cloud_http_errors_total')).toBe(1);
    });
  });

  describe('bad parameters', () => {
    const cases: [string, string, Record<string, string>?][] = [
      ['/v1/events?from=abc', 'from'],
      ['/v1/events?from=0', 'from'],
      ['/v1/events?from=-3', 'from'],
      ['/v1/events?from=1&from=2', 'from'],
      ['/v1/events?limit=0', 'limit'],
      ['/v1/events?limit=1.5', 'limit'],
      ['/v1/events?limit=10001', 'limit'],
      ['/v1/events?type=', 'type'],
      ['/v1/events?source=', 'source'],
      ['/v1/stream?from=0', 'from'],
      ['/v1/stream?from=x', 'from'],
      ['/v1/stream?type=io.x&type=', 'type'],
      ['/v1/stream', 'Last-Event-ID', { 'last-event-id': 'abc' }],
    ];

    it.each(cases)('answers %s with 400 naming %s', async (path, parameter, headers) => {
      await serve();
      const res = await fetch(`${server!.url}${path}`, { headers });
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string; parameter: string } };
      expect(body.error.code).toBe('ERR_BAD_PARAMETER');
      expect(body.error.parameter).toBe(parameter);
      expect(body.error.message).toContain(`"${parameter}"`);
      expect(metrics.total(STREAMS)).toBe(0);
    });
  });

  describe('GET /v1/stream', () => {
    it('is an event stream that is not cached', async () => {
      await serve();
      const client = stream('/v1/stream');
      const res = await client.response;
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/event-stream');
      expect(res.headers.get('cache-control')).toBe('no-cache');
    });

    it('answers HEAD with the stream headers and opens no stream', async () => {
      await serve();
      const res = await fetch(`${server!.url}/v1/stream?from=1`, { method: 'HEAD' });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/event-stream');
      expect(metrics.total(STREAMS)).toBe(0);
    });

    it('replays from ?from= inclusive, then follows events committed after it connected', async () => {
      await serve();
      await log.commitBatch('edge-1', ...batch(range(1, 5)));
      const client = stream('/v1/stream?from=3');
      await client.received([3, 4, 5]);
      await log.commitBatch('edge-1', ...batch([6, 7]));
      await log.append([event(8)]);
      await client.received([8]);
      expect(client.ids()).toEqual([3, 4, 5, 6, 7, 8]);
      expect(client.events()).toEqual([3, 4, 5, 6, 7, 8].map((n) => event(n)));
      expect(client.messages.every((m) => m.event === undefined)).toBe(true);
    });

    it('replays a backlog larger than one page in order', async () => {
      await serve({ streamPageSize: 7 });
      await log.commitBatch('edge-1', ...batch(range(1, 50)));
      const client = stream('/v1/stream?from=1');
      await client.received([50]);
      expect(client.ids()).toEqual(range(1, 50));
    });

    it('resumes after Last-Event-ID, which wins over from', async () => {
      await serve();
      await log.commitBatch('edge-1', ...batch(range(1, 5)));
      const client = stream('/v1/stream?from=1', { 'Last-Event-ID': '3' });
      await client.received([4, 5]);
      await log.append([event(6)]);
      await client.received([6]);
      expect(client.ids()).toEqual([4, 5, 6]);
    });

    it('sends only new events when neither from nor Last-Event-ID is given', async () => {
      await serve();
      await log.commitBatch('edge-1', ...batch(range(1, 5)));
      const client = stream('/v1/stream');
      expect((await client.response).status).toBe(200);
      await log.commitBatch('edge-1', ...batch([6]));
      await client.received([6]);
      expect(client.ids()).toEqual([6]);
    });

    it('starts with the next new event when asked to start past the end of the log', async () => {
      await serve();
      await log.commitBatch('edge-1', ...batch(range(1, 3)));
      const client = stream('/v1/stream', { 'Last-Event-ID': '500' });
      expect((await client.response).status).toBe(200);
      await log.append([event(4)]);
      await client.received([4]);
      expect(client.ids()).toEqual([4]);
    });

    it('follows batches committed by edges with commitBatch', async () => {
      await serve();
      const client = stream('/v1/stream');
      expect((await client.response).status).toBe(200);
      await log.commitBatch('edge-a', ...batch([1, 2], (s) => event(s, { id: `a-${s}` })));
      await log.commitBatch('edge-b', ...batch([1], (s) => event(s, { id: `b-${s}` })));
      await log.commitBatch('edge-a', ...batch([1, 2], (s) => event(s, { id: `a-${s}` })));
      await client.received([1, 2, 3]);
      expect(client.events().map((e) => e.id)).toEqual(['a-1', 'a-2', 'b-1']);
    });

    it('filters by type prefix, several type parameters being alternatives, and by source', async () => {
      await serve();
      const client = stream('/v1/stream?type=io.tributary.alert&type=io.tributary.telemetry.hum');
      const fromEdge2 = stream('/v1/stream?source=/edges/edge-2/');
      await Promise.all([client.response, fromEdge2.response]);
      await log.append([
        event(1, { type: 'io.tributary.telemetry.temperature' }),
        event(2, { type: 'io.tributary.telemetry.humidity' }),
        event(3, { type: 'io.tributary.alert.fired', source: '/edges/edge-2/devices/d' }),
        event(4, { type: 'io.tributary.telemetry.temperature', source: '/edges/edge-2/devices/d' }),
        event(5, { type: 'io.tributary.telemetry.temperature' }),
      ]);
      await client.received([2, 3]);
      await fromEdge2.received([3, 4]);
      await log.append([event(6, { type: 'io.tributary.alert.resolved' })]);
      await client.received([6]);
      expect(client.ids()).toEqual([2, 3, 6]);
      expect(fromEdge2.ids()).toEqual([3, 4]);
    });

    it('sends keep-alive comments while no event arrives', async () => {
      await serve({ keepAliveMs: 40 });
      const client = stream('/v1/stream');
      await client.until('two keep-alives', () => client.comments.filter((c) => c === 'keep-alive').length >= 2);
      expect(client.messages).toEqual([]);
    });

    it('counts open streams and streamed events, and forgets a client that disconnects', async () => {
      await serve();
      await log.append(range(1, 3).map((n) => event(n)));
      const a = stream('/v1/stream?from=1');
      const b = stream('/v1/stream?from=2');
      await a.received([3]);
      await b.received([3]);
      expect(metrics.total(STREAMS)).toBe(2);
      expect(metrics.total('tributary_cloud_stream_events_total')).toBe(5);
      a.close();
      await waitFor('the disconnected stream to be forgotten', () => metrics.total(STREAMS) === 1, 5_000);
      await log.append([event(4)]);
      await b.received([4]);
      expect(metrics.total('tributary_cloud_stream_events_total')).toBe(6);
      b.close();
      await waitFor('every stream to be forgotten', () => metrics.total(STREAMS) === 0, 5_000);
    });

    it('forgets a client that disconnects while its stream is replaying', async () => {
      await serve({ streamPageSize: 100 });
      await log.commitBatch('edge-1', ...batch(range(1, 5_000), (s) => event(s, { data: { n: s, pad: 'x'.repeat(200) } })));
      const client = stream('/v1/stream?from=1');
      await client.received([1]);
      client.close();
      await waitFor('the stream to be forgotten', () => metrics.total(STREAMS) === 0, 5_000);
    });
  });
});

describe('http api on Deno', () => {
  let child: ChildProcessWithoutNullStreams | undefined;
  let dir: ReturnType<typeof tempDir>;

  beforeEach(() => {
    dir = tempDir('tributary-http-api-deno-');
  });

  afterEach(() => {
    child?.kill('SIGKILL');
    dir.remove();
  });

  it('serves health, pages and a live stream, and closes promptly with a stream open', async () => {
    const module = (file: string) => JSON.stringify(pathToFileURL(`${REPO}${file}`).href);
    // The child appends an event for every "append" line on stdin and closes on "close".
    const code = `
      import { createInterface } from 'node:readline';
      import { LevelCloudLog } from ${module('cloud/level-cloud-log.ts')};
      import { createHttpApi } from ${module('cloud/http-api.ts')};
      import { startHttpServer } from ${module('shared/http-server.ts')};
      import { Metrics } from ${module('shared/metrics.ts')};
      const log = await LevelCloudLog.open({ path: ${JSON.stringify(dir.path)}, durability: 'crash-safe' });
      const metrics = new Metrics();
      const server = await startHttpServer(createHttpApi({ log, metrics, health: () => ({ runtime: 'deno' }) }), { port: 0 });
      let n = 0;
      const say = (o) => console.log(JSON.stringify(o));
      say({ url: server.url });
      for await (const line of createInterface({ input: process.stdin })) {
        if (line === 'append') say({ appended: await log.append([{ specversion: '1.0', id: 'd-' + ++n, source: '/deno', type: 'io.tributary.test', data: new Uint8Array([n]) }]) });
        if (line === 'streams') say({ streams: metrics.total('tributary_cloud_streams_connected') });
        if (line === 'close') {
          const started = Date.now();
          await server.close();
          await log.close();
          say({ closedInMs: Date.now() - started });
          break;
        }
      }
    `;
    const proc = spawn(DENO, ['eval', '--no-lock', code], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
    child = proc;
    let stderr = '';
    proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const replies = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
    const reply = async (): Promise<Record<string, unknown>> => {
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no reply from deno; stderr: ${stderr}`)), 20_000).unref());
      const { value, done } = await Promise.race([replies.next(), timeout]);
      if (done) throw new Error(`deno exited; stderr: ${stderr}`);
      return JSON.parse(value as string) as Record<string, unknown>;
    };
    const ask = async (line: string): Promise<Record<string, unknown>> => {
      proc.stdin.write(`${line}\n`);
      return reply();
    };

    const { url } = (await reply()) as { url: string };
    expect(await ask('append')).toEqual({ appended: { first: 1, last: 1 } });
    expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ status: 'ok', lastOffset: 1, runtime: 'deno' });
    const page = (await (await fetch(`${url}/v1/events`)).json()) as { events: { event: CloudEvent }[] };
    expect(page.events[0].event.data_base64).toBe('AQ==');

    const client = new SseClient(`${url}/v1/stream?from=1`);
    await client.received([1]);
    await ask('append');
    await client.received([2]);
    expect(client.events().map((e) => e.id)).toEqual(['d-1', 'd-2']);

    const gone = new SseClient(`${url}/v1/stream`);
    await gone.response;
    expect(await ask('streams')).toEqual({ streams: 2 });
    gone.close();
    await waitFor('deno to forget the disconnected stream', async () => (await ask('streams')).streams === 1);

    const { closedInMs } = (await ask('close')) as { closedInMs: number };
    expect(closedInMs).toBeLessThan(900);
    await client.until('the stream to end', () => client.ended);
  });
});
