/**
 * A live subscriber on the cloud's `/v1/stream` (Server-Sent Events): each message's `data` is a CloudEvent
 * whose `subject` is the device id and whose `data.seq` / `data.ts` are the load generator's stamps. Not the
 * tests' `SseClient` (test/helpers/sse-client.ts), which keeps every message and parses the full SSE grammar:
 * this one keeps nothing and reads only `data:` lines, to follow tens of thousands of events a second.
 */
import { request } from 'node:http';
import type { ClientRequest } from 'node:http';
import { performance } from 'node:perf_hooks';
import { DeliveryTracker } from './delivery.ts';

export class SseSink {
  readonly tracker = new DeliveryTracker();
  readonly #request: ClientRequest;

  private constructor(req: ClientRequest) {
    this.#request = req;
  }

  /** Opens `${httpUrl}/v1/stream?${query}` and tracks subjects `${prefix}${index}`; resolves once connected. */
  static open(httpUrl: string, prefix: string, query = ''): Promise<SseSink> {
    return new Promise((resolve, reject) => {
      const req = request(`${httpUrl}/v1/stream${query ? `?${query}` : ''}`, { headers: { accept: 'text/event-stream' } });
      const sink = new SseSink(req);
      req.once('error', reject);
      req.once('response', (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`GET /v1/stream: HTTP ${res.statusCode}`));
          return;
        }
        res.setEncoding('utf8');
        let partial = '';
        res.on('data', (chunk: string) => {
          const now = performance.now();
          const text = partial + chunk;
          let start = 0;
          for (;;) {
            const end = text.indexOf('\n', start);
            if (end < 0) break;
            if (text.startsWith('data: ', start)) sink.#event(text.slice(start + 6, end), prefix, now);
            start = end + 1;
          }
          partial = text.slice(start);
        });
        resolve(sink);
      });
      req.end();
    });
  }

  #event(json: string, prefix: string, now: number): void {
    const event = JSON.parse(json) as { subject?: string; data?: { seq?: number; ts?: number } };
    const subject = event.subject;
    if (!subject?.startsWith(prefix) || typeof event.data?.seq !== 'number') return;
    this.tracker.record(Number(subject.slice(prefix.length)), event.data.seq, Number(event.data.ts), now);
  }

  close(): void {
    this.#request.destroy();
  }
}
