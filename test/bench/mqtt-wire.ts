/**
 * A minimal MQTT 3.1.1 client for the load generator: raw packets on a TCP socket, no per-message objects, so
 * one core can drive a broker faster than the broker can take it. It speaks only what a benchmark needs:
 * CONNECT/CONNACK, PUBLISH (QoS 0 and 1) with PUBACK both ways, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP and
 * DISCONNECT. Packets to send are written into one buffer per flush, so a window of publishes costs one write.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';

export const PacketType = {
  connack: 2,
  publish: 3,
  puback: 4,
  suback: 9,
  pingresp: 13,
} as const;

export interface WireHandlers {
  /** A PUBACK for `packetId`. */
  onPuback?(packetId: number): void;
  /** An incoming PUBLISH; `payload` is a view into the socket's buffer, valid only during the call. */
  onPublish?(topic: Buffer, payload: Buffer, qos: number): void;
  onClose?(error?: Error): void;
}

export interface ConnectOptions {
  host: string;
  port: number;
  clientId: string;
  clean?: boolean;
  keepaliveSeconds?: number;
  username?: string;
  password?: string;
  timeoutMs?: number;
}

/** Encodes MQTT's variable-length "remaining length" at `offset`; returns the offset after it. */
export function writeRemainingLength(buf: Buffer, offset: number, length: number): number {
  do {
    let byte = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) byte |= 0x80;
    buf[offset++] = byte;
  } while (length > 0);
  return offset;
}

export function remainingLengthSize(length: number): number {
  return length < 128 ? 1 : length < 16_384 ? 2 : length < 2_097_152 ? 3 : 4;
}

function packet(type: number, flags: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(1 + remainingLengthSize(body.length) + body.length);
  out[0] = (type << 4) | flags;
  const at = writeRemainingLength(out, 1, body.length);
  body.copy(out, at);
  return out;
}

function utf8Field(value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  const out = Buffer.allocUnsafe(2 + bytes.length);
  out.writeUInt16BE(bytes.length, 0);
  bytes.copy(out, 2);
  return out;
}

export function connectPacket(options: ConnectOptions): Buffer {
  let flags = options.clean === false ? 0 : 0x02;
  const payload = [utf8Field(options.clientId)];
  if (options.username !== undefined) {
    flags |= 0x80;
    payload.push(utf8Field(options.username));
  }
  if (options.password !== undefined) {
    flags |= 0x40;
    payload.push(utf8Field(options.password));
  }
  const header = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, flags, 0, 0]);
  header.writeUInt16BE(options.keepaliveSeconds ?? 0, 8);
  return packet(1, 0, Buffer.concat([header, ...payload]));
}

/**
 * A PUBLISH packet laid out once per (topic, payload size); `pidOffset` and `payloadOffset` say where the
 * packet id and the payload go, so each publish is a copy and a few in-place writes.
 */
export interface PublishTemplate {
  bytes: Buffer;
  pidOffset: number;
  payloadOffset: number;
}

export function publishTemplate(topic: string, payload: Buffer, qos: 0 | 1): PublishTemplate {
  const topicBytes = Buffer.from(topic, 'utf8');
  const remaining = 2 + topicBytes.length + (qos > 0 ? 2 : 0) + payload.length;
  const bytes = Buffer.alloc(1 + remainingLengthSize(remaining) + remaining);
  bytes[0] = 0x30 | (qos << 1);
  let at = writeRemainingLength(bytes, 1, remaining);
  bytes.writeUInt16BE(topicBytes.length, at);
  at += 2;
  topicBytes.copy(bytes, at);
  at += topicBytes.length;
  const pidOffset = qos > 0 ? at : -1;
  if (qos > 0) at += 2;
  payload.copy(bytes, at);
  return { bytes, pidOffset, payloadOffset: at };
}

export function subscribePacket(packetId: number, filter: string, qos: 0 | 1): Buffer {
  const pid = Buffer.allocUnsafe(2);
  pid.writeUInt16BE(packetId, 0);
  return packet(8, 0x02, Buffer.concat([pid, utf8Field(filter), Buffer.from([qos])]));
}

const PINGREQ = Buffer.from([0xc0, 0x00]);
const DISCONNECT = Buffer.from([0xe0, 0x00]);

/** One MQTT connection. Outgoing packets are staged with `stage*` and written together by `flush()`. */
export class WireClient {
  readonly socket: Socket;
  readonly clientId: string;
  #handlers: WireHandlers;
  #pending: Buffer | null = null;
  #out: Buffer = Buffer.allocUnsafe(64 * 1024);
  #outLength = 0;
  #waiters = new Map<number, (packet: Buffer) => void>();
  #pingWaiters: (() => void)[] = [];
  #closed = false;
  #nextPid = 1;

  private constructor(socket: Socket, clientId: string, handlers: WireHandlers) {
    this.socket = socket;
    this.clientId = clientId;
    this.#handlers = handlers;
    socket.on('data', (chunk: Buffer) => this.#data(chunk));
    socket.on('error', (err) => this.#close(err));
    socket.on('close', () => this.#close());
  }

  /** Opens the TCP connection and completes CONNECT/CONNACK. */
  static open(options: ConnectOptions, handlers: WireHandlers = {}): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: options.host, port: options.port, noDelay: true });
      const client = new WireClient(socket, options.clientId, handlers);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`${options.clientId}: no CONNACK from ${options.host}:${options.port} within ${options.timeoutMs ?? 10_000} ms`));
      }, options.timeoutMs ?? 10_000);
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(new Error(`${options.clientId}: cannot connect to ${options.host}:${options.port}: ${err.message}`));
      };
      socket.once('error', fail);
      client.#waiters.set(PacketType.connack << 16, (p) => {
        clearTimeout(timer);
        socket.off('error', fail);
        const code = p[p.length - 1];
        if (code !== 0) {
          socket.destroy();
          reject(new Error(`${options.clientId}: CONNACK return code ${code}`));
          return;
        }
        resolve(client);
      });
      socket.write(connectPacket(options));
    });
  }

  setHandlers(handlers: WireHandlers): void {
    this.#handlers = handlers;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Space for `length` more staged bytes; returns the offset to write them at. */
  reserve(length: number): number {
    if (this.#outLength + length > this.#out.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.#out.length * 2, this.#outLength + length));
      this.#out.copy(grown, 0, 0, this.#outLength);
      this.#out = grown;
    }
    const at = this.#outLength;
    this.#outLength += length;
    return at;
  }

  /** The staging buffer (valid until the next `reserve`). */
  get staging(): Buffer {
    return this.#out;
  }

  stagePuback(packetId: number): void {
    const at = this.reserve(4);
    const out = this.#out;
    out[at] = 0x40;
    out[at + 1] = 2;
    out[at + 2] = packetId >> 8;
    out[at + 3] = packetId & 0xff;
  }

  /** Writes every staged packet; returns false when the socket asks the writer to wait for 'drain'. */
  flush(): boolean {
    if (this.#outLength === 0 || this.#closed) return true;
    const chunk = Buffer.allocUnsafe(this.#outLength);
    this.#out.copy(chunk, 0, 0, this.#outLength);
    this.#outLength = 0;
    return this.socket.write(chunk);
  }

  async subscribe(filter: string, qos: 0 | 1): Promise<void> {
    const pid = this.#nextPid++;
    const acked = new Promise<void>((resolve) => this.#waiters.set((PacketType.suback << 16) | pid, () => resolve()));
    this.flush();
    this.socket.write(subscribePacket(pid, filter, qos));
    await acked;
  }

  /** Round trip: resolves when the broker has answered a PINGREQ sent after everything written so far. */
  ping(): Promise<void> {
    this.flush();
    return new Promise((resolve) => {
      this.#pingWaiters.push(resolve);
      this.socket.write(PINGREQ);
    });
  }

  /** A clean DISCONNECT, then the socket closes. */
  async disconnect(): Promise<void> {
    if (this.#closed) return;
    this.flush();
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
    this.socket.end(DISCONNECT);
    await closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  #close(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handlers.onClose?.(error);
  }

  #data(chunk: Buffer): void {
    let buf = chunk;
    if (this.#pending) {
      buf = Buffer.concat([this.#pending, chunk]);
      this.#pending = null;
    }
    let at = 0;
    const end = buf.length;
    while (at < end) {
      if (end - at < 2) break;
      let length = 0;
      let multiplier = 1;
      let i = at + 1;
      let complete = false;
      for (; i < end && i < at + 5; i++) {
        const byte = buf[i];
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) {
          complete = true;
          i++;
          break;
        }
      }
      if (!complete || i + length > end) break;
      this.#packet(buf, at, i, i + length);
      at = i + length;
    }
    if (at < end) this.#pending = buf.subarray(at);
    this.flush();
  }

  #packet(buf: Buffer, start: number, bodyStart: number, bodyEnd: number): void {
    const first = buf[start];
    const type = first >> 4;
    switch (type) {
      case PacketType.puback:
        this.#handlers.onPuback?.((buf[bodyStart] << 8) | buf[bodyStart + 1]);
        return;
      case PacketType.publish: {
        const qos = (first >> 1) & 3;
        const topicLength = (buf[bodyStart] << 8) | buf[bodyStart + 1];
        const topicStart = bodyStart + 2;
        let payloadStart = topicStart + topicLength;
        if (qos > 0) {
          this.stagePuback((buf[payloadStart] << 8) | buf[payloadStart + 1]);
          payloadStart += 2;
        }
        this.#handlers.onPublish?.(buf.subarray(topicStart, topicStart + topicLength), buf.subarray(payloadStart, bodyEnd), qos);
        return;
      }
      case PacketType.pingresp:
        this.#pingWaiters.shift()?.();
        return;
      case PacketType.connack: {
        const waiter = this.#waiters.get(PacketType.connack << 16);
        this.#waiters.delete(PacketType.connack << 16);
        waiter?.(Buffer.from(buf.subarray(bodyStart, bodyEnd)));
        return;
      }
      case PacketType.suback: {
        const key = (PacketType.suback << 16) | ((buf[bodyStart] << 8) | buf[bodyStart + 1]);
        const waiter = this.#waiters.get(key);
        this.#waiters.delete(key);
        waiter?.(Buffer.from(buf.subarray(bodyStart, bodyEnd)));
        return;
      }
      default:
        return;
    }
  }
}
