import { describe, expect, it } from 'vitest';
import type { CloudEvent } from '../../shared/cloud-event.ts';
import { deliveryReport } from './exactly-once.ts';
import { faultSeed, outageSeconds } from './fault-seed.ts';

let nextId = 0;
function logOf(...items: [string, number][]): { offset: number; event: CloudEvent }[] {
  return items.map(([device, seq], i) => ({
    offset: i + 1,
    event: { specversion: '1.0', id: `id-${nextId++}`, source: `/edges/e/devices/${device}`, type: 't', subject: device, data: { seq } } as CloudEvent,
  }));
}

const clean = { missing: [], duplicates: [], outOfOrder: [], unexpected: [], repeatedOffsetsOrIds: [] };

describe('deliveryReport', () => {
  it('finds nothing wrong with every acknowledged publish once, in order per device', () => {
    const log = logOf(['sim-0001', 0], ['sim-0002', 0], ['sim-0001', 1], ['sim-0002', 1], ['sim-0001', 2]);
    // sim-0001 seq 2 was sent but its PUBACK was lost: it may be in the log (once).
    expect(deliveryReport([['sim-0001', 0], ['sim-0001', 1], ['sim-0002', 0], ['sim-0002', 1]], log, 2, 3)).toEqual(clean);
  });

  it('reports an acknowledged publish that is not in the log', () => {
    expect(deliveryReport([['sim-0001', 0], ['sim-0001', 1]], logOf(['sim-0001', 0]), 1, 2).missing).toEqual(['sim-0001 1']);
  });

  it('reports a publish that is in the log twice', () => {
    const report = deliveryReport([['sim-0001', 0]], logOf(['sim-0001', 0], ['sim-0001', 0]), 1, 2);
    expect(report.duplicates).toEqual(['sim-0001 0']);
    expect(report.outOfOrder).toHaveLength(1);
  });

  it("reports a device's events out of the order it sent them", () => {
    expect(deliveryReport([], logOf(['sim-0001', 1], ['sim-0001', 0]), 1, 2).outOfOrder).toEqual(['sim-0001: seq 0 at offset 2 after seq 1']);
  });

  it('reports events no device of the fleet sent', () => {
    expect(deliveryReport([], logOf(['sim-0003', 0], ['sim-0001', 5]), 2, 5).unexpected).toEqual(['offset 1: sim-0003 seq 0', 'offset 2: sim-0001 seq 5']);
  });

  it('reports an offset or event id seen twice', () => {
    const log = logOf(['sim-0001', 0], ['sim-0001', 1]);
    log[1].offset = 1;
    expect(deliveryReport([], log, 1, 2).repeatedOffsetsOrIds).toHaveLength(1);
  });
});

describe('faultSeed and outageSeconds', () => {
  it('replays the same draws from the same FAULT_SEED', () => {
    const a = faultSeed({ FAULT_SEED: '42' });
    const b = faultSeed({ FAULT_SEED: '42' });
    expect(a.label).toBe('FAULT_SEED=42');
    expect([a.prng('x').next(), a.prng('x').next()]).toEqual([b.prng('x').next(), b.prng('x').next()]);
    expect(a.prng('x').next()).not.toBe(a.prng('y').next());
  });

  it('draws a seed when none is given, and refuses a bad one', () => {
    expect(Number.isSafeInteger(faultSeed({}).seed)).toBe(true);
    expect(() => faultSeed({ FAULT_SEED: 'abc' })).toThrow(/FAULT_SEED must be a non-negative whole number/);
  });

  it('reads the outage length from FAULT_OUTAGE_SECONDS', () => {
    expect(outageSeconds(3, {})).toBe(3);
    expect(outageSeconds(3, { FAULT_OUTAGE_SECONDS: '1.5' })).toBe(1.5);
    expect(() => outageSeconds(3, { FAULT_OUTAGE_SECONDS: '0' })).toThrow(/positive number of seconds/);
  });
});
