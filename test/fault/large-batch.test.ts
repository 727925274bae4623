/**
 * The first batch after an outage is the largest: the edge sends its backlog in full batches (up to
 * `uplink.batchMaxEvents` events, `batchMaxBytes` bytes). The cloud must commit and acknowledge such a batch as
 * soon as it has arrived, not when something else arrives on the connection.
 *
 * On Deno this found a bug: Aedes reads its socket with one `read(null)` per 'readable' event
 * (aedes/lib/client.js, `nextBatch`), and under Deno's node:net a publish of about 200 KB or more as the first
 * packet after CONNECT was left half-read until the next packet arrived: the edge's PINGREQ, 30 s later by
 * default. `readWholeBuffer` in shared/mqtt-server.ts works around it.
 */
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode } from '../../shared/codec.ts';
import { encodeBatch } from '../../shared/uplink-wire.ts';
import type { Runtime } from '../helpers/node-process.ts';
import { NodeProcess } from '../helpers/node-process.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';
import { cloudLastOffset } from '../e2e/mesh.ts';

const EVENTS = 1000; // a full batch at the default batchMaxEvents: about 280 KB

function bigBatch(edgeId: string): Buffer {
  const seqs: number[] = [];
  const events: Uint8Array[] = [];
  for (let seq = 1; seq <= EVENTS; seq++) {
    seqs.push(seq);
    const event = { specversion: '1.0', id: `big-${seq}`, source: `/edges/${edgeId}/devices/d1`, type: 'io.tributary.telemetry.pad', subject: 'd1', data: { seq, pad: 'x'.repeat(200) } };
    events.push(encode(event));
  }
  const payload = encodeBatch({ v: 1, edge: edgeId, seqs, events });
  return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}

for (const runtime of ['node', 'deno'] as Runtime[]) {
  describe(`a cloud node on ${runtime} sent one large uplink batch`, () => {
    const dir = tempDir('tributary-large-batch-');
    let cloud: NodeProcess;
    let uplinkUrl: string;
    let httpUrl: string;

    beforeAll(async () => {
      cloud = new NodeProcess(runtime, ['cloud', '--data-dir', `${dir.path}/cloud`, '--uplink-port', '0', '--http-port', '0', '--status-interval', '0', '--allow-anonymous']);
      const started = await cloud.waitForLog('cloud node started');
      uplinkUrl = String(started.uplink);
      httpUrl = String(started.http);
    });

    afterAll(async () => {
      await cloud?.stop();
      dir.remove();
    });

    it('commits and acknowledges it without waiting for another packet on the connection', async () => {
      // keepalive 0: no PINGREQ comes along to push the rest of the packet through.
      const client = mqtt.connect(uplinkUrl, { clientId: 'edge-large', protocolVersion: 4, clean: true, keepalive: 0, reconnectPeriod: 0 });
      try {
        await new Promise<void>((resolve, reject) => {
          client.once('connect', () => resolve());
          client.once('error', reject);
        });
        let acked = false;
        client.publish('tributary/v1/edges/edge-large/batches', bigBatch('edge-large'), { qos: 1 }, (err) => {
          if (!err) acked = true;
        });
        await waitFor('the PUBACK of the batch', () => acked, 5000);
        expect(await cloudLastOffset(httpUrl)).toBe(EVENTS);
      } finally {
        client.end(true);
      }
    });
  });
}
