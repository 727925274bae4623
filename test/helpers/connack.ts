import mqtt from 'mqtt';
import type { IClientOptions } from 'mqtt';

/**
 * Connects with mqtt.js (MQTT 3.1.1 unless `options` say otherwise, no reconnects) and returns the CONNACK return
 * code the broker answered with (0: accepted); the client is ended either way. Fails when the connection closes
 * without a CONNACK.
 */
export async function connackCode(url: string, options: IClientOptions): Promise<number> {
  const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...options });
  client.on('error', () => undefined);
  try {
    return await new Promise<number>((resolve, reject) => {
      client.on('packetreceive', (packet) => packet.cmd === 'connack' && resolve(packet.returnCode ?? 0));
      client.on('close', () => reject(new Error('the connection closed without a CONNACK')));
    });
  } finally {
    await client.endAsync(true);
  }
}
