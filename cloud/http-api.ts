/**
 * The cloud node's HTTP API: health, pages of the log, and a live event stream (Server-Sent Events).
 *
 * - `GET /healthz` → `{status: 'ok', lastOffset, ...health()}`.
 * - `GET /v1/events?from=N&limit=L&type=P&source=P` → `{events: [{offset, event}], next, lastOffset}`: up to
 *   `L` events (default 100, at most 10,000) from offset `N` on (default 1), each in the CloudEvents JSON format
 *   (binary data as `data_base64`, JSON format §3.1). `next` is the `from` of the following page: once it is
 *   past `lastOffset` the reader has seen the whole log. A filtered page looks at no more than 10,000 events,
 *   so it may come back short, or empty, before the end of the log; keep paging with `next`.
 * - `GET /v1/stream?from=N&type=P&source=P` → `text/event-stream`, one message per event (`id: <offset>`,
 *   `data: <event JSON>`, default `message` type; see `event-stream.ts`). Where it starts:
 *   - header `Last-Event-ID: K` (an `EventSource` reconnecting): resume after K, at offset K + 1;
 *   - otherwise `?from=N`: at offset N, inclusive (`from=1` replays the whole log);
 *   - neither: only events committed after the request arrived.
 *   `Last-Event-ID` wins over `from`, so a browser reconnecting to a `?from=` URL resumes where it was. A start
 *   past the end of the log (e.g. a log that was reset) starts with the next new event.
 * - `type` and `source` filter by prefix (the Subscriptions API `prefix` dialect); several values of one
 *   parameter are alternatives, and `type` and `source` must both match when both are given.
 *
 * Offsets start at 1; `from=0` is refused rather than guessed at (it reads as "the beginning" to some and as
 * "now" to others). Errors are `{error: {code, message, parameter?}}`: 400 for a bad parameter, 404 for an
 * unknown route, 500 (logged) when the node fails.
 *
 * With `auth` (api-auth.ts), `/v1/events` and `/v1/stream` need a bearer token with the `events:read` scope (401
 * without a valid token, 403 without the scope); `/healthz` stays open.
 */
import { Hono } from 'hono';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { CloudEvent } from '../shared/cloud-event.ts';
import { toJsonFormat } from '../shared/cloud-event.ts';
import { TributaryError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { silentLogger } from '../shared/logger.ts';
import { Metrics } from '../shared/metrics.ts';
import type { CloudLog } from './cloud-log.ts';
import { createEventStream, jsonLine } from './event-stream.ts';
import type { ServerBindings } from '../shared/http-server.ts';
import type { ApiAuth } from './api-auth.ts';

export interface HttpApiOptions {
  log: CloudLog;
  logger?: Logger;
  metrics?: Metrics;
  /** Extra fields for `/healthz` (uplink listener state, subscriptions, ...). */
  health?: () => Record<string, unknown>;
  /** Quiet time after which an event stream sends a keep-alive comment. Default 15 s. */
  keepAliveMs?: number;
  /** Events an event stream reads from the log at a time. Default 500. */
  streamPageSize?: number;
  /** Bearer tokens and scopes (api-auth.ts); without it every route is open (unit tests of the routes). */
  auth?: ApiAuth;
}

export const DEFAULT_PAGE_LIMIT = 100;
export const MAX_PAGE_LIMIT = 10_000;
/** Most events one filtered `/v1/events` request looks at, so a rare type cannot make one request scan the log. */
export const FILTER_SCAN_LIMIT = 10_000;
const FILTER_READ_PAGE = 500;

export const HttpErrorCode = {
  BadParameter: 'ERR_BAD_PARAMETER',
  NotFound: 'ERR_NOT_FOUND',
  Internal: 'ERR_INTERNAL',
} as const;

interface ErrorBody {
  error: { code: string; message: string; parameter?: string };
}

/** A query parameter, header or request body member that cannot be used as given; answered with 400. */
export class BadParameterError extends Error {
  readonly parameter: string;
  constructor(parameter: string, message: string) {
    super(message);
    this.name = 'BadParameterError';
    this.parameter = parameter;
  }
}

export function createHttpApi(options: HttpApiOptions): Hono {
  const { log } = options;
  const logger = options.logger ?? silentLogger;
  const metrics = options.metrics ?? new Metrics();
  let openStreams = 0;
  metrics.gauge('tributary_cloud_streams_connected', 'Event streams (Server-Sent Events) open.', () => openStreams);
  const streamed = metrics.counter('tributary_cloud_stream_events_total', 'Events sent on event streams.');
  const failures = metrics.counter('tributary_cloud_http_errors_total', 'HTTP requests answered with 500.');

  const app = new Hono();

  app.get('/healthz', (c) => c.json({ status: 'ok', lastOffset: log.lastOffset, ...options.health?.() }));

  const auth = options.auth;
  if (auth) {
    app.use('/v1/events', auth.requireScope('events:read'));
    // Browsers' EventSource cannot set headers: the stream also takes ?access_token= (RFC 6750 §2.3).
    app.use('/v1/stream', auth.requireScope('events:read', { queryToken: true }));
  }

  app.get('/v1/events', async (c) => {
    const from = offsetParam(c) ?? 1;
    const limitText = singleParam(c, 'limit');
    const limit = limitText === undefined ? DEFAULT_PAGE_LIMIT : limitParam(limitText);
    const page = await readPage(log, from, limit, filterParams(c));
    return c.body(jsonLine(page), 200, { 'content-type': 'application/json' });
  });

  app.get('/v1/stream', (c) => {
    const match = filterParams(c);
    const from = streamStart(c, log.lastOffset);
    const headers = {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      // Reverse proxies such as nginx would otherwise buffer the stream.
      'x-accel-buffering': 'no',
    };
    // Hono answers HEAD with the GET handler and drops the body without cancelling it: open no stream for it.
    if (c.req.method === 'HEAD') return c.body(null, 200, headers);
    openStreams++;
    logger.debug('event stream opened', { from });
    const body = createEventStream({
      log,
      from,
      match,
      keepAliveMs: options.keepAliveMs,
      pageSize: options.streamPageSize,
      // The stream also ends when its token is revoked or expires.
      signals: [c.req.raw.signal, shutdownSignal(c), auth?.watch(c)],
      onEvents: (count) => streamed.inc(count),
      onClose: () => {
        openStreams--;
        logger.debug('event stream closed');
      },
      onError: (err) => logger.warn('event stream ended: reading the log failed', { err }),
    });
    return c.body(body, 200, headers);
  });

  app.notFound((c) => c.json(errorBody(HttpErrorCode.NotFound, `no route for ${c.req.method} ${c.req.path}`), 404));

  app.onError((err, c) => {
    if (err instanceof BadParameterError) {
      return c.json(errorBody(HttpErrorCode.BadParameter, err.message, err.parameter), 400);
    }
    if (err instanceof HTTPException) return err.getResponse();
    failures.inc();
    logger.error('request failed', { method: c.req.method, path: c.req.path, err });
    const code = err instanceof TributaryError ? err.code : HttpErrorCode.Internal;
    return c.json(errorBody(code, `${c.req.method} ${c.req.path} failed: ${err.message}`), 500);
  });

  return app;
}

interface Page {
  events: { offset: number; event: CloudEvent }[];
  next: number;
  lastOffset: number;
}

async function readPage(log: CloudLog, from: number, limit: number, match: ((e: CloudEvent) => boolean) | undefined): Promise<Page> {
  const events: Page['events'] = [];
  let next = from;
  let scanned = 0;
  while (events.length < limit && scanned < FILTER_SCAN_LIMIT) {
    const last = log.lastOffset;
    if (next > last) break;
    const want = match ? Math.min(FILTER_READ_PAGE, FILTER_SCAN_LIMIT - scanned) : limit - events.length;
    const entries = await log.read(next, want);
    if (entries.length === 0) {
      next = last + 1;
      break;
    }
    for (const { offset, event } of entries) {
      if (offset < next) continue;
      next = offset + 1;
      if (match) scanned++;
      if (match && !match(event)) continue;
      events.push({ offset, event: toJsonFormat(event) });
      if (events.length === limit) break;
    }
  }
  return { events, next, lastOffset: log.lastOffset };
}

/** The first offset a stream sends; see the module comment. */
function streamStart(c: Context, lastOffset: number): number {
  const from = offsetParam(c, '; leave it out to receive only new events');
  const header = c.req.header('last-event-id');
  let start = lastOffset + 1;
  if (header !== undefined && header !== '') {
    if (!/^\d{1,15}$/.test(header)) {
      throw new BadParameterError('Last-Event-ID', `header "Last-Event-ID" must be the id of an event of this stream, an integer of 0 or more (got ${JSON.stringify(header)})`);
    }
    start = Number(header) + 1;
  } else if (from !== undefined) {
    start = from;
  }
  return Math.min(start, lastOffset + 1);
}

/** Set when the app runs under `startHttpServer`; absent under `app.request()` in a test. */
function shutdownSignal(c: Context): AbortSignal | undefined {
  return (c.env as Partial<ServerBindings> | undefined)?.shutdown;
}

function singleParam(c: Context, name: string): string | undefined {
  const values = c.req.queries(name);
  if (!values) return undefined;
  if (values.length > 1) throw new BadParameterError(name, `query parameter "${name}" is given ${values.length} times; give it once`);
  return values[0];
}

function offsetParam(c: Context, hint = ''): number | undefined {
  const text = singleParam(c, 'from');
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(text) || Number(text) < 1) {
    throw new BadParameterError('from', `query parameter "from" must be a log offset, an integer of 1 or more (offsets start at 1; got ${JSON.stringify(text)})${hint}`);
  }
  return Number(text);
}

function limitParam(text: string): number {
  const n = /^\d{1,6}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= MAX_PAGE_LIMIT)) {
    throw new BadParameterError('limit', `query parameter "limit" must be an integer from 1 to ${MAX_PAGE_LIMIT} (got ${JSON.stringify(text)})`);
  }
  return n;
}

/** The `type` and `source` prefix filters, or undefined when there are none. */
function filterParams(c: Context): ((event: CloudEvent) => boolean) | undefined {
  const types = prefixParams(c, 'type', 'io.tributary.telemetry.');
  const sources = prefixParams(c, 'source', '/edges/edge-1/');
  if (types.length === 0 && sources.length === 0) return undefined;
  return (event) => hasPrefix(event.type, types) && hasPrefix(event.source, sources);
}

function prefixParams(c: Context, name: string, example: string): string[] {
  const values = c.req.queries(name) ?? [];
  for (const value of values) {
    if (value === '') throw new BadParameterError(name, `query parameter "${name}" must not be empty; give a prefix such as ${example}, or leave it out`);
  }
  return values;
}

function hasPrefix(value: unknown, prefixes: readonly string[]): boolean {
  if (prefixes.length === 0) return true;
  return typeof value === 'string' && prefixes.some((p) => value.startsWith(p));
}

function errorBody(code: string, message: string, parameter?: string): ErrorBody {
  return { error: parameter === undefined ? { code, message } : { code, message, parameter } };
}
