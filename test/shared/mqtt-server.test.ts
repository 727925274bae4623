import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { Logger } from '../../shared/logger.ts';
import type { RunningMqttServer } from '../../shared/mqtt-server.ts';
import { startMqttServer } from '../../shared/mqtt-server.ts';
import { waitFor } from '../helpers/wait.ts';

const logger = new Logger({ level: 'silent' });

/** An MQTT 3.1.1 CONNECT with a clean session (remaining length under 128). */
function connectPacket(clientId: string, keepaliveSeconds: number): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const body = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, keepaliveSeconds >> 8, keepaliveSeconds & 0xff, 0, id.length]), id]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

/** A QoS 1 PUBLISH (remaining length under 128). */
function publishQos1(topic: string, packetId: number, payload: string): Buffer {
  const t = Buffer.from(topic, 'utf8');
  const body = Buffer.concat([Buffer.from([0, t.length]), t, Buffer.from([packetId >> 8, packetId & 0xff]), Buffer.from(payload, 'utf8')]);
  return Buffer.concat([Buffer.from([0x32, body.length]), body]);
}

const PINGREQ = Buffer.from([0xc0, 0]);

/** A raw TCP connection that records what the server sends and when it closes the connection. */
interface Raw {
  socket: Socket;
  received: () => Buffer;
  closedAt: () => number | null;
}

function open(port: number): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let data = Buffer.alloc(0);
    let closedAt: number | null = null;
    socket.on('data', (chunk: Buffer) => (data = Buffer.concat([data, chunk])));
    socket.on('close', () => (closedAt = Date.now()));
    socket.on('error', () => {});
    socket.once('connect', () => resolve({ socket, received: () => data, closedAt: () => closedAt }));
    socket.once('error', reject);
  });
}

describe('startMqttServer', () => {
  let server: RunningMqttServer;
  const raws: Raw[] = [];

  beforeEach(async () => {
    server = await startMqttServer({ host: '127.0.0.1', port: 0, wsPort: null, hooks: {}, logger });
  });

  afterEach(async () => {
    for (const raw of raws.splice(0)) raw.socket.destroy();
    await server.close();
  });

  async function device(clientId: string, keepaliveSeconds: number): Promise<Raw> {
    const raw = await open(server.port!);
    raws.push(raw);
    raw.socket.write(connectPacket(clientId, keepaliveSeconds));
    await waitFor('CONNACK', () => raw.received().length >= 4);
    expect([...raw.received().subarray(0, 4)]).toEqual([0x20, 2, 0, 0]);
    return raw;
  }

  it('acknowledges a QoS 1 publish with a PUBACK for its packet id', async () => {
    const raw = await device('qos1-device', 60);
    raw.socket.write(publishQos1('telemetry/qos1-device/temperature', 0x1234, '{"v":1}'));
    await waitFor('PUBACK', () => raw.received().length >= 8);
    expect([...raw.received().subarray(4, 8)]).toEqual([0x40, 2, 0x12, 0x34]);
  });

  it('disconnects a device silent for one and a half keepalive periods, and not earlier [MQTT-3.1.2-24]', async () => {
    const raw = await device('silent-device', 1);
    const connectedAt = Date.now();
    await waitFor('the server to close the connection', () => raw.closedAt(), 5000);
    const after = raw.closedAt()! - connectedAt;
    expect(after).toBeGreaterThanOrEqual(1400);
    expect(after).toBeLessThan(3000);
  });

  it('keeps a device that sends PINGREQ within its keepalive', async () => {
    const raw = await device('pinging-device', 1);
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 600));
      raw.socket.write(PINGREQ);
    }
    await waitFor('the last PINGRESP', () => raw.received().length >= 4 + 4 * 2);
    expect(raw.closedAt()).toBeNull();
  });

  it('ends connections that never sent CONNECT when it closes', async () => {
    const raw = await open(server.port!);
    raws.push(raw);
    await new Promise((r) => setTimeout(r, 50));
    await server.close();
    await waitFor('the connection to close', () => raw.closedAt(), 2000);
  });
});
