/**
 * MQTT 3.1.1 on a raw TCP socket, for tests that send what no well-behaved client would: any bytes, packets with
 * wrong lengths, huge announced sizes. It frames what the broker sends back (CONNACK, SUBACK, PUBACK, ...) so a
 * test can wait for a packet or for the connection to close. Encoders for the packets a test needs are here too
 * (CONNECT comes from the load generator's test/bench/mqtt-wire.ts).
 */
import { Buffer } from 'node:buffer';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { connectPacket, remainingLengthSize, writeRemainingLength } from '../bench/mqtt-wire.ts';

export { connectPacket };

export const PacketType = { connect: 1, connack: 2, publish: 3, puback: 4, subscribe: 8, suback: 9, pingreq: 12, pingresp: 13, disconnect: 14 } as const;

export interface RawPacket {
  type: number;
  flags: number;
  body: Buffer;
}

/** A packet of `type` with `body` (remaining length as MQTT encodes it). */
export function packet(type: number, flags: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(1 + remainingLengthSize(body.length) + body.length);
  out[0] = (type << 4) | flags;
  body.copy(out, writeRemainingLength(out, 1, body.length));
  return out;
}

/** A length-prefixed string field; `bytes` lets a test put any bytes (invalid UTF-8, say) in it. */
export function stringField(value: string | Buffer): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const out = Buffer.allocUnsafe(2 + bytes.length);
  out.writeUInt16BE(bytes.length, 0);
  bytes.copy(out, 2);
  return out;
}

export interface PublishFields {
  topic: string | Buffer;
  payload?: string | Buffer;
  qos?: 0 | 1 | 2;
  messageId?: number;
  dup?: boolean;
  retain?: boolean;
}

export function publishPacket(p: PublishFields): Buffer {
  const qos = p.qos ?? 0;
  const parts = [stringField(p.topic)];
  if (qos > 0) {
    const id = Buffer.allocUnsafe(2);
    id.writeUInt16BE(p.messageId ?? 1, 0);
    parts.push(id);
  }
  parts.push(typeof p.payload === 'string' ? Buffer.from(p.payload) : (p.payload ?? Buffer.alloc(0)));
  return packet(PacketType.publish, (p.dup ? 8 : 0) | (qos << 1) | (p.retain ? 1 : 0), Buffer.concat(parts));
}

export function subscribePacket(messageId: number, filters: { topic: string | Buffer; qos: 0 | 1 | 2 }[]): Buffer {
  const id = Buffer.allocUnsafe(2);
  id.writeUInt16BE(messageId, 0);
  return packet(PacketType.subscribe, 0x02, Buffer.concat([id, ...filters.flatMap((f) => [stringField(f.topic), Buffer.from([f.qos])])]));
}

export const PINGREQ = Buffer.from([0xc0, 0x00]);
export const DISCONNECT = Buffer.from([0xe0, 0x00]);

export class RawMqtt {
  readonly socket: Socket;
  readonly packets: RawPacket[] = [];
  /** Resolves when the socket has closed (either side). */
  readonly closed: Promise<void>;
  #isClosed = false;
  #pending = Buffer.alloc(0);
  #waiters: { match: (p: RawPacket) => boolean; resolve: (p: RawPacket) => void }[] = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.#data(chunk));
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.#isClosed = true;
        resolve();
      }),
    );
  }

  /** A TCP connection to the broker, nothing sent yet; `localAddress` another loopback address (127.0.0.2) to come from. */
  static open(port: number, options: { host?: string; localAddress?: string } = {}): Promise<RawMqtt> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: options.host ?? '127.0.0.1', port, localAddress: options.localAddress, noDelay: true });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawMqtt(socket));
      });
    });
  }

  /** Connects and completes CONNECT/CONNACK; fails unless the return code is 0. */
  static async connect(port: number, clientId: string, options: { username?: string; password?: string; keepaliveSeconds?: number } = {}): Promise<RawMqtt> {
    const raw = await RawMqtt.open(port);
    raw.write(connectPacket({ host: '', port, clientId, ...options }));
    const code = await raw.connack();
    if (code !== 0) {
      raw.destroy();
      throw new Error(`${clientId}: CONNACK return code ${code}`);
    }
    return raw;
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  write(bytes: Buffer): void {
    if (!this.#isClosed) this.socket.write(bytes);
  }

  /** The CONNACK's return code. */
  async connack(timeoutMs = 5_000): Promise<number> {
    const p = await this.next((p) => p.type === PacketType.connack, timeoutMs);
    return p.body[1];
  }

  /** The return codes a SUBACK grants, one per filter (0x80: refused). */
  async suback(messageId: number, timeoutMs = 5_000): Promise<number[]> {
    const p = await this.next((p) => p.type === PacketType.suback && p.body.readUInt16BE(0) === messageId, timeoutMs);
    return [...p.body.subarray(2)];
  }

  /** A round trip: resolves when the broker has answered a PINGREQ sent after everything written so far. */
  async ping(timeoutMs = 5_000): Promise<void> {
    const from = this.packets.length;
    this.write(PINGREQ);
    await this.next((p) => p.type === PacketType.pingresp, timeoutMs, from);
  }

  /** Packet ids of the PUBACKs received so far. */
  pubacks(): number[] {
    return this.packets.filter((p) => p.type === PacketType.puback).map((p) => p.body.readUInt16BE(0));
  }

  /** The first packet (received at or after index `from`) that `match`es, or rejects when the socket closes first. */
  next(match: (p: RawPacket) => boolean, timeoutMs = 5_000, from = 0): Promise<RawPacket> {
    const found = this.packets.slice(from).find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching packet within ${timeoutMs} ms`)), timeoutMs);
      void this.closed.then(() => {
        clearTimeout(timer);
        reject(new Error('the connection closed before a matching packet arrived'));
      });
      this.#waiters.push({
        match,
        resolve: (p) => {
          clearTimeout(timer);
          resolve(p);
        },
      });
    });
  }

  /** Resolves true when the connection closes within `timeoutMs`, false when it is still open then. */
  async closesWithin(timeoutMs: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const open = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const closed = await Promise.race([this.closed.then(() => true as const), open]);
    clearTimeout(timer);
    return closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  #data(chunk: Buffer): void {
    let buf = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
    for (;;) {
      if (buf.length < 2) break;
      let length = 0;
      let multiplier = 1;
      let at = 1;
      let complete = false;
      for (; at < buf.length && at < 5; at++) {
        length += (buf[at] & 0x7f) * multiplier;
        multiplier *= 128;
        if ((buf[at] & 0x80) === 0) {
          complete = true;
          at++;
          break;
        }
      }
      if (!complete || buf.length < at + length) break;
      const p = { type: buf[0] >> 4, flags: buf[0] & 0x0f, body: Buffer.from(buf.subarray(at, at + length)) };
      buf = buf.subarray(at + length);
      this.packets.push(p);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.match(p)) return true;
        w.resolve(p);
        return false;
      });
    }
    this.#pending = Buffer.from(buf);
  }
}
