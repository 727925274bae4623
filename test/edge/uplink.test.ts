import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { edgeConfigSchema } from '../../edge/config.ts';
import { EdgeNode } from '../../edge/edge-node.ts';
import { parseConfig } from '../../shared/config.ts';
import { Logger } from '../../shared/logger.ts';
import type { RunningMqttServer } from '../../shared/mqtt-server.ts';
import { startMqttServer } from '../../shared/mqtt-server.ts';
import { decodeBatch } from '../../shared/uplink-wire.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const logger = new Logger({ level: 'silent' });

/** A cloud listener that records each batch and holds its PUBACK until the test releases it. */
async function holdingCloud() {
  const batches: number[][] = [];
  const held: (() => void)[] = [];
  const server: RunningMqttServer = await startMqttServer({
    host: '127.0.0.1',
    port: 0,
    wsPort: null,
    logger,
    hooks: {
      authorizePublish: (client, packet, callback) => {
        if (!client) return callback(null);
        batches.push(decodeBatch(packet.payload as Uint8Array).seqs);
        held.push(() => callback(null));
      },
    },
  });
  return { server, batches, held };
}

describe('Uplink', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('keeps one partial batch in flight and sends what commits meanwhile together, once it is acknowledged', async () => {
    const cloud = await holdingCloud();
    cleanups.push(() => cloud.server.close());
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const config = parseConfig(edgeConfigSchema, {
      edgeId: 'edge-u',
      dataDir: dir.path,
      mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
      uplink: { url: `mqtt://127.0.0.1:${cloud.server.port}`, inflight: 4, batchMaxEvents: 1000 },
      statusIntervalMs: 0,
    });
    const edge = new EdgeNode(config, logger);
    await edge.start();
    cleanups.push(() => edge.stop());
    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${edge.ports.mqtt}`, { clientId: 'dev-u', protocolVersion: 4 });
    cleanups.push(() => device.endAsync(true));

    await device.publishAsync('telemetry/dev-u/temperature', '{"celsius":1}', { qos: 1 });
    await waitFor('the first batch', () => cloud.batches.length === 1);
    for (let i = 2; i <= 21; i++) await device.publishAsync('telemetry/dev-u/temperature', `{"celsius":${i}}`, { qos: 1 });
    expect(edge.buffer.committedSeq).toBe(21);
    // Twenty events committed while the first batch waits for its PUBACK: none of them has been sent yet.
    await new Promise((r) => setTimeout(r, 200));
    expect(cloud.batches).toEqual([[1]]);

    cloud.held.shift()!();
    await waitFor('the second batch', () => cloud.batches.length === 2);
    expect(cloud.batches[1]).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
  });
});
