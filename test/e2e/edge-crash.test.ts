import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeProcess } from '../helpers/node-process.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';
import type { Mesh } from './mesh.ts';
import { readCloudLog, seqsByDevice, startMesh } from './mesh.ts';

const DEVICES = 10;
const MESSAGES = 300;

describe('an edge killed with SIGKILL in the middle of a stream', () => {
  let mesh: Mesh;
  const dir = tempDir('tributary-crash-');

  beforeAll(async () => {
    mesh = await startMesh('node', 'edge-crash');
  }, 60_000);

  afterAll(async () => {
    await mesh?.stop();
    dir.remove();
  });

  it('delivers every acknowledged publish to the cloud exactly once, in order per device, after a restart', async () => {
    const ackFile = `${dir.path}/acks.txt`;
    const sim = new NodeProcess('node', [
      'simulate', '--edge', mesh.edgeUrl, '--devices', String(DEVICES), '--messages', String(MESSAGES), '--rate', '100', '--qos', '1', '--ack-file', ackFile, '--status-interval', '0',
    ]);
    // Kill the edge once a good part of the stream has been acknowledged, while devices are still sending.
    await waitFor('a third of the stream in the cloud', async () => (await readCloudLog(mesh.httpUrl)).length >= (DEVICES * MESSAGES) / 3, 30_000, 50);
    mesh.edge.child.kill('SIGKILL');
    await mesh.edge.exited;
    await new Promise((r) => setTimeout(r, 500)); // devices see the edge gone and start reconnecting
    await mesh.startEdge();

    expect(await sim.exited).toBe(0); // every message acknowledged
    const acked = readFileSync(ackFile, 'utf8').trim().split('\n').map((line) => line.split(' '));
    expect(acked).toHaveLength(DEVICES * MESSAGES);

    const events = await waitFor('every acknowledged event in the cloud log', async () => {
      const all = await readCloudLog(mesh.httpUrl);
      return all.length >= acked.length ? all : undefined;
    }, 30_000, 200);
    await new Promise((r) => setTimeout(r, 500)); // a late duplicate would show up here
    const final = await readCloudLog(mesh.httpUrl);
    expect(final.length).toBe(events.length);
    const byDevice = seqsByDevice(final);
    for (const [device, seq] of acked) expect(byDevice.get(device)).toContain(Number(seq));
    // Exactly once and in order: each device's events are 0..MESSAGES-1, each once, ascending.
    for (const seqs of byDevice.values()) expect(seqs).toEqual([...Array(MESSAGES).keys()]);
  });
});
