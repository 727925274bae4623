/**
 * Footprint: a broker's resident memory idle and with many idle devices connected (CONNECT with keepalive,
 * nothing published), and the cost of each connection. Measured for the edge, plain Aedes and Mosquitto.
 *
 * The cost per device is the slope between a tenth of the devices and all of them: a garbage-collected
 * runtime grows its young generation by tens of MB under any burst of allocation (here, the connects), a fixed
 * cost that would otherwise be charged to the devices.
 */
import type { Runtime } from '../../helpers/node-process.ts';
import { LoadGenerator, sleep } from '../loadgen.ts';
import type { Suite } from '../suite.ts';
import { round } from '../suite.ts';
import type { Target } from '../targets.ts';
import { startAedes, startEdge, startMosquitto } from '../targets.ts';

/** RSS once it has stopped moving (allocation after a burst of connections settles over a second or two). */
async function settledRss(target: Target): Promise<number> {
  let last = target.rssKiB();
  for (let i = 0; i < 20; i++) {
    await sleep(250);
    const now = target.rssKiB();
    if (Math.abs(now - last) < 64) return now;
    last = now;
  }
  return last;
}

export async function footprint(suite: Suite, runtime: Runtime, deviceCounts: readonly number[]): Promise<void> {
  const starts: { name: string; start: () => Promise<Target> }[] = [
    { name: 'edge', start: () => startEdge({ runtime, durability: 'power-safe', dataDir: `${suite.tempDir('footprint')}/edge`, cloudUrl: 'mqtt://127.0.0.1:9' }) },
    { name: 'aedes', start: () => startAedes(runtime) },
  ];
  if (runtime === 'node' && suite.options.mosquitto) starts.push({ name: 'mosquitto', start: () => startMosquitto({ dir: suite.tempDir('mosquitto') }) });
  for (const { name, start } of starts) {
    for (const devices of deviceCounts) {
      const target = await start();
      try {
        const idle = await settledRss(target);
        suite.progress(`footprint ${name} (${runtime}): connecting ${devices} idle devices`);
        const tenth = Math.round(devices / 10);
        const connect = (count: number, prefix: string) =>
          LoadGenerator.connect({ port: target.port, devices: count, qos: 0, prefix, keepaliveSeconds: 600, connectConcurrency: 200 });
        const first = await connect(tenth, 'idle-a');
        const atTenth = await settledRss(target);
        const rest = await connect(devices - tenth, 'idle-b');
        const connected = await settledRss(target);
        await rest.close();
        await first.close();
        suite.emit({
          bench: 'footprint',
          target: name,
          runtime: target.runtime,
          devices,
          rssIdleKiB: idle,
          rssAtTenthKiB: atTenth,
          rssConnectedKiB: connected,
          kibPerDevice: round((connected - atTenth) / (devices - tenth), 2),
        });
      } finally {
        await target.stop();
        suite.cleanup();
      }
    }
  }
}
