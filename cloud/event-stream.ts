/**
 * A live Server-Sent Events stream of the cloud log (HTML Living Standard, "Server-sent events", §9.2): it
 * replays the log from an offset, then follows new commits.
 *
 * Each event is one message in the default `message` type, so a browser's `EventSource.onmessage` sees it:
 *
 *     id: <offset>
 *     data: <the event in the CloudEvents JSON format, on one line>
 *
 * The `id` is the event's log offset, which a reconnecting `EventSource` sends back as `Last-Event-ID`. The
 * stream opens with the comment `: start <offset>` (the first offset it will send), and sends `: keep-alive`
 * after a quiet spell so that proxies do not close an idle connection; clients ignore comments (§9.2.6).
 *
 * The body is a pull source: the log is read one page at a time, and only when the HTTP layer asks for more
 * (it asks after the socket has drained), so a slow client holds at most about one page in memory.
 */
import type { CloudEvent } from '../shared/cloud-event.ts';
import { toJsonFormat } from '../shared/cloud-event.ts';
import type { CloudLog } from './cloud-log.ts';

export interface EventStreamOptions {
  log: CloudLog;
  /** Offset of the first event to send (inclusive). */
  from: number;
  /** Which events to send; every event when absent. */
  match?: (event: CloudEvent) => boolean;
  /** A keep-alive comment is sent after this long without output. Default 15 s. */
  keepAliveMs?: number;
  /** Events read from the log at a time. Default 500. */
  pageSize?: number;
  /** The stream ends when any of these aborts (the client went away, the server is shutting down). */
  signals?: readonly (AbortSignal | undefined)[];
  /** Called with the number of events in each chunk handed to the HTTP layer. */
  onEvents?: (count: number) => void;
  /** Called once when the stream ends, whatever the reason. */
  onClose?: () => void;
  /** Called when reading the log fails; the stream then ends and the client may resume with `Last-Event-ID`. */
  onError?: (err: unknown) => void;
}

export const DEFAULT_KEEP_ALIVE_MS = 15_000;
export const DEFAULT_STREAM_PAGE_SIZE = 500;

/** The comment line sent on a quiet stream (a line starting with a colon is ignored by clients, §9.2.6). */
export const KEEP_ALIVE = ': keep-alive\n\n';

/** One SSE message for a logged event. */
export function sseMessage(offset: number, event: CloudEvent): string {
  // JSON.stringify never emits a raw line break, so the event fits one `data:` line.
  return `id: ${offset}\ndata: ${jsonLine(toJsonFormat(event))}\n\n`;
}

/** JSON text of a value decoded from the log; 64-bit integers that MessagePack gave back as bigint become strings. */
export function jsonLine(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  }
}

/** The response body of one stream subscriber. */
export function createEventStream(options: EventStreamOptions): ReadableStream<Uint8Array> {
  const { log } = options;
  const match = options.match;
  const keepAliveMs = options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS;
  const pageSize = options.pageSize ?? DEFAULT_STREAM_PAGE_SIZE;
  const signals = (options.signals ?? []).filter((s): s is AbortSignal => s !== undefined);
  const encoder = new TextEncoder();

  let next = Math.max(1, options.from);
  let lastOutput = Date.now();
  let closed = false;
  let unsubscribe: (() => void) | undefined;
  let wake: (() => void) | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;

  const end = (): void => {
    if (closed) return;
    closed = true;
    unsubscribe?.();
    unsubscribe = undefined;
    for (const signal of signals) signal.removeEventListener('abort', onAbort);
    wake?.();
    options.onClose?.();
  };

  // Ends the response cleanly; a client that wants more reconnects and resumes with `Last-Event-ID`.
  function onAbort(): void {
    end();
    try {
      controller?.close();
    } catch {
      // Already closed or cancelled by the reader.
    }
  }

  const send = (text: string): void => {
    controller!.enqueue(encoder.encode(text));
    lastOutput = Date.now();
  };

  /** Resolves on the next commit, after `ms`, or when the stream ends, whichever comes first. */
  const idle = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      wake = () => {
        wake = undefined;
        clearTimeout(timer);
        resolve();
      };
      timer = setTimeout(wake, ms);
    });

  return new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
        if (signals.some((s) => s.aborted)) {
          onAbort();
          return;
        }
        for (const signal of signals) signal.addEventListener('abort', onAbort);
        // One subscription for the stream's life. `pull` checks `lastOffset` and starts waiting in the same
        // tick, so no commit can slip in between.
        unsubscribe = log.onAppend(() => wake?.());
        send(`: start ${next}\n\n`);
      },

      async pull() {
        try {
          while (!closed) {
            const last = log.lastOffset;
            if (next <= last) {
              const page = await log.read(next, pageSize);
              if (closed) return;
              // An empty page means there is nothing left up to `last`; the log never goes back.
              if (page.length === 0) next = last + 1;
              let text = '';
              let count = 0;
              for (const { offset, event } of page) {
                if (offset < next) continue;
                next = offset + 1;
                if (match && !match(event)) continue;
                text += sseMessage(offset, event);
                count++;
              }
              if (count > 0) {
                send(text);
                options.onEvents?.(count);
                return;
              }
              // A filter that skips a long backlog still keeps the connection alive.
              if (Date.now() - lastOutput < keepAliveMs) continue;
            } else {
              const quiet = lastOutput + keepAliveMs - Date.now();
              if (quiet > 0) {
                await idle(quiet);
                continue;
              }
            }
            send(KEEP_ALIVE);
            return;
          }
        } catch (err) {
          if (closed) return;
          options.onError?.(err);
          onAbort();
        }
      },

      cancel() {
        end();
      },
    },
    // Nothing is read ahead of the consumer: `pull` runs only when the HTTP layer wants the next chunk.
    { highWaterMark: 0 },
  );
}
