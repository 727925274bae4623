import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtime } from '../helpers/node-process.ts';
import { waitFor } from '../helpers/wait.ts';
import type { Mesh } from '../e2e/mesh.ts';
import { cloudLastOffset, readCloudLog, startMesh, startSimulator } from '../e2e/mesh.ts';
import { countAcks, expectExactlyOnce, readAcks, waitForDrain } from './exactly-once.ts';
import { faultSeed, outageSeconds, sleep } from './fault-seed.ts';

const DEVICES = 10;
const RATE = 20; // per device: 200 publishes/s in all
const OUTAGE_S = outageSeconds(3);
// Enough messages that devices publish from before the outage until after the cloud is back.
const MESSAGES = Math.ceil(RATE * (OUTAGE_S + 3));
const seed = faultSeed();

for (const runtime of ['node', 'deno'] as Runtime[]) {
  describe(`a cloud outage of ${OUTAGE_S} s, nodes on ${runtime} (${seed.label})`, () => {
    let mesh: Mesh;

    beforeAll(async () => {
      mesh = await startMesh(runtime, { edgeId: `edge-outage-${runtime}`, edgeConfig: { statusIntervalMs: 100 } });
    });

    afterAll(async () => {
      await mesh?.stop();
    });

    it('buffers at the edge while the cloud is down, then drains everything exactly once, in order per device', { timeout: (OUTAGE_S + 40) * 1000 }, async () => {
      const ackFile = `${mesh.dir}/acks.txt`;
      const sim = startSimulator(mesh, { devices: DEVICES, messages: MESSAGES, rate: RATE, ackFile, seed: seed.seed, runtime: 'node' });
      await waitFor('events in the cloud', async () => ((await cloudLastOffset(mesh.httpUrl)) ?? 0) > 0, 20_000, 20);
      await sleep(seed.prng(`outage ${runtime}`).int(0, 500));

      expect(await mesh.killCloud('SIGTERM')).toBe(0);
      const edge = mesh.edge;
      const statusFrom = edge.records.length;
      const acksAtOutage = countAcks(ackFile);
      await sleep(OUTAGE_S * 1000);
      // The edge kept acknowledging publishes and holds them, its link down.
      expect(sim.child.exitCode, 'the devices were still sending at the end of the outage').toBeNull();
      expect(countAcks(ackFile)).toBeGreaterThan(acksAtOutage);
      const during = edge.records.slice(statusFrom).filter((r) => r.msg === 'status');
      expect(during.length).toBeGreaterThan(0);
      expect(during.at(-1)).toMatchObject({ link: expect.not.stringMatching(/^connected$/) });
      expect(Number(during.at(-1)!.buffered)).toBeGreaterThan(0);
      expect(await cloudLastOffset(mesh.httpUrl)).toBeUndefined();

      await mesh.startCloud();
      expect(await sim.exited).toBe(0);
      const acked = readAcks(ackFile);
      expect(acked).toHaveLength(DEVICES * MESSAGES);
      await waitForDrain(mesh);
      expectExactlyOnce(acked, await readCloudLog(mesh), DEVICES, MESSAGES);
    });
  });
}
