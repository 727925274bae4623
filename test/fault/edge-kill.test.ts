import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.ts';
import type { Mesh } from '../e2e/mesh.ts';
import { cloudLastOffset, readCloudLog, startMesh, startSimulator } from '../e2e/mesh.ts';
import { countAcks, expectExactlyOnce, readAcks, waitForDrain } from './exactly-once.ts';
import { faultSeed, sleep } from './fault-seed.ts';

const DEVICES = 10;
const MESSAGES = 300;
const RATE = 50; // per device: 500 publishes/s in all, 6 s of sending
const KILLS = 4;
const seed = faultSeed();

describe(`an edge killed with SIGKILL mid-batch, ${KILLS} times (${seed.label})`, () => {
  let mesh: Mesh;

  beforeAll(async () => {
    // A little delay on the uplink keeps batches in flight, so that a kill finds events sent but not yet released;
    // small batches put several of them in flight while a backlog drains.
    const delays = seed.prng('uplink delay');
    mesh = await startMesh('node', {
      edgeId: 'edge-kill',
      edgeConfig: { statusIntervalMs: 100, uplink: { batchMaxEvents: 50 } },
      proxy: { delayMs: () => delays.uniform(5, 30) },
    });
  });

  afterAll(async () => {
    await mesh?.stop();
  });

  it('delivers every acknowledged publish to the cloud exactly once, in order per device', async () => {
    const proxy = mesh.proxy!;
    const prng = seed.prng('edge-kill');
    const ackFile = `${mesh.dir}/acks.txt`;
    const sim = startSimulator(mesh, { devices: DEVICES, messages: MESSAGES, rate: RATE, ackFile, seed: seed.seed, runtime: 'node' });
    const restarts: { kill: string; buffered: number }[] = [];
    for (let kill = 1; kill <= KILLS; kill++) {
      // Odd kills hit live traffic: devices publish to the edge while its uplink forwards each commit. Even kills
      // hit the drain of a backlog that built up while the uplink was cut off: full batches in flight.
      const draining = kill % 2 === 0;
      const acks = countAcks(ackFile);
      const offset = (await cloudLastOffset(mesh.httpUrl)) ?? 0;
      await waitFor(`traffic through edge run ${kill}`, async () => countAcks(ackFile) > acks && ((await cloudLastOffset(mesh.httpUrl)) ?? 0) > offset, 20_000, 20);
      if (draining) {
        proxy.partition();
        const backlog = countAcks(ackFile) + prng.int(200, 400);
        await waitFor('a backlog at the edge', () => countAcks(ackFile) >= backlog, 20_000, 20);
        const before = (await cloudLastOffset(mesh.httpUrl)) ?? 0;
        proxy.heal();
        await waitFor('the backlog draining', async () => ((await cloudLastOffset(mesh.httpUrl)) ?? 0) > before, 20_000, 5);
        await sleep(prng.int(0, 40));
      } else {
        await sleep(prng.int(50, 600));
      }
      expect(sim.child.exitCode, 'the devices were still sending when the edge was killed').toBeNull();
      await mesh.killEdge('SIGKILL');
      const started = await (await mesh.startEdge()).waitForLog('edge node started');
      restarts.push({ kill: draining ? 'draining' : 'live', buffered: Number(started.buffered) });
    }

    expect(await sim.exited).toBe(0); // every message acknowledged in the end
    const acked = readAcks(ackFile);
    expect(acked).toHaveLength(DEVICES * MESSAGES);
    await waitForDrain(mesh);
    const stopped = await sim.waitForLog('stopped');
    console.log(`edge-kill: restarts ${JSON.stringify(restarts)}; devices re-sent ${String(stopped.resent)} publishes`);
    expectExactlyOnce(acked, await readCloudLog(mesh), DEVICES, MESSAGES);
    expect(restarts.some((r) => r.buffered > 0), 'some kill left events in the buffer to re-send').toBe(true);
  });
});
