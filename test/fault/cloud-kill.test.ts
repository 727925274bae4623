import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.ts';
import type { Mesh } from '../e2e/mesh.ts';
import { cloudLastOffset, readCloudLog, startMesh, startSimulator } from '../e2e/mesh.ts';
import { countAcks, expectExactlyOnce, readAcks, waitForDrain } from './exactly-once.ts';
import { faultSeed, sleep } from './fault-seed.ts';

const DEVICES = 10;
const MESSAGES = 300;
const RATE = 40; // per device: 400 publishes/s in all, 7.5 s of sending
const KILLS = 4;
const seed = faultSeed();

describe(`a cloud killed with SIGKILL mid-commit, ${KILLS} times (${seed.label})`, () => {
  let mesh: Mesh;

  beforeAll(async () => {
    // Small batches and a little delay on the uplink keep several batches in flight while a backlog drains.
    const delays = seed.prng('uplink delay');
    mesh = await startMesh('node', {
      edgeId: 'edge-cloud-kill',
      edgeConfig: { statusIntervalMs: 100, uplink: { batchMaxEvents: 50 } },
      proxy: { delayMs: () => delays.uniform(5, 30) },
    });
  });

  afterAll(async () => {
    await mesh?.stop();
  });

  it('commits every acknowledged publish exactly once, in order per device, across restarts on the same log', async () => {
    const prng = seed.prng('cloud-kill');
    const ackFile = `${mesh.dir}/acks.txt`;
    const sim = startSimulator(mesh, { devices: DEVICES, messages: MESSAGES, rate: RATE, ackFile, seed: seed.seed, runtime: 'node' });
    const lastOffsets: number[] = [];
    for (let kill = 1; kill <= KILLS; kill++) {
      // Kill while the edge's batches are being committed: wait for the log to grow, then a random moment. Even
      // kills come right after the restart, while the backlog from the previous kill drains.
      const draining = kill % 2 === 0;
      const offset = (await cloudLastOffset(mesh.httpUrl)) ?? 0;
      await waitFor(`commits in cloud run ${kill}`, async () => ((await cloudLastOffset(mesh.httpUrl)) ?? 0) > offset, 20_000, draining ? 5 : 20);
      await sleep(draining ? prng.int(0, 40) : prng.int(50, 600));
      expect(sim.child.exitCode, 'the devices were still sending when the cloud was killed').toBeNull();
      await mesh.killCloud('SIGKILL');
      const started = await (await mesh.startCloud()).waitForLog('cloud node started');
      lastOffsets.push(Number(started.lastOffset));
    }

    expect(await sim.exited).toBe(0);
    const acked = readAcks(ackFile);
    expect(acked).toHaveLength(DEVICES * MESSAGES);
    await waitForDrain(mesh);
    console.log(`cloud-kill: log's last offset at each restart ${JSON.stringify(lastOffsets)}; acks at the end ${countAcks(ackFile)}`);
    const events = await readCloudLog(mesh);
    expectExactlyOnce(acked, events, DEVICES, MESSAGES);
    // The log kept what was committed before each kill, and offsets carry on from there.
    expect(lastOffsets).toEqual([...lastOffsets].sort((a, b) => a - b));
    expect(events.map((e) => e.offset)).toEqual(events.map((e) => e.offset).sort((a, b) => a - b));
  });
});
