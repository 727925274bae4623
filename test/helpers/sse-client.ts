import type { CloudEvent } from '../../shared/cloud-event.ts';

export interface SseMessage {
  id?: string;
  event?: string;
  data: string;
}

/** A Server-Sent Events client over fetch (Node 20 has no EventSource), parsing per HTML §9.2.6. */
export class SseClient {
  readonly messages: SseMessage[] = [];
  readonly comments: string[] = [];
  ended = false;
  readonly #abort = new AbortController();
  readonly #decoder = new TextDecoder();
  #buffer = '';
  #changed: (() => void) | undefined;
  readonly response: Promise<Response>;

  constructor(url: string, headers: Record<string, string> = {}) {
    this.response = fetch(url, { headers, signal: this.#abort.signal });
    void this.#pump().catch(() => undefined);
  }

  async #pump(): Promise<void> {
    const res = await this.response;
    if (!res.body) return;
    const reader = res.body.getReader();
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        this.#buffer += this.#decoder.decode(value, { stream: true });
        this.#parse();
      }
    } finally {
      this.ended = true;
      this.#changed?.();
    }
  }

  #parse(): void {
    const blocks = this.#buffer.split(/\r\n\r\n|\n\n|\r\r/);
    this.#buffer = blocks.pop()!;
    for (const block of blocks) {
      const message: SseMessage = { data: '' };
      const data: string[] = [];
      for (const line of block.split(/\r\n|\n|\r/)) {
        if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
        else if (field === 'id') message.id = value;
        else if (field === 'event') message.event = value;
      }
      message.data = data.join('\n');
      if (data.length) this.messages.push(message);
    }
    this.#changed?.();
  }

  /** Resolves once `check()` holds, re-checking on every chunk received; fails after `timeoutMs`. */
  async until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (this.ended) throw new Error(`stream ended while waiting for ${what}; messages: ${JSON.stringify(this.messages)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; messages: ${JSON.stringify(this.messages)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#changed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  ids(): number[] {
    return this.messages.map((m) => Number(m.id));
  }

  events(): CloudEvent[] {
    return this.messages.map((m) => JSON.parse(m.data) as CloudEvent);
  }

  /** Waits until every offset of `offsets` has arrived. */
  received(offsets: number[]): Promise<void> {
    return this.until(`offsets ${offsets.join(',')}`, () => offsets.every((o) => this.ids().includes(o)));
  }

  close(): void {
    this.#abort.abort();
  }
}
