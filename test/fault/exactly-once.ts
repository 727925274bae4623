/**
 * What every fault test proves at the end: each publish the edge acknowledged is exactly one event in the cloud
 * log, each device's events are in the order it sent them, and nothing is there that no device sent (a publish
 * that was sent but never acknowledged may be in the log, at most once).
 */
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import type { CloudEvent } from '../../shared/cloud-event.ts';
import type { Mesh } from '../e2e/mesh.ts';
import { waitFor } from '../helpers/wait.ts';

/** The ack file's lines as `[deviceId, seq]`. */
export function readAcks(file: string): [string, number][] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [device, seq] = line.split(' ');
      return [device, Number(seq)];
    });
}

/** How many acknowledgements the ack file holds so far. */
export function countAcks(file: string): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return 0;
  }
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/**
 * Waits until the edge's buffer is empty with its uplink connected, as its status line reports (the mesh's edge
 * needs `statusIntervalMs` > 0): from then on nothing is left to send, so the cloud log is final.
 */
export async function waitForDrain(mesh: Mesh, timeoutMs = 30_000): Promise<void> {
  const edge = mesh.edge;
  const from = edge.records.length;
  await waitFor(
    'the edge to report an empty buffer with its uplink connected',
    () => edge.records.slice(from).some((r) => r.msg === 'status' && r.buffered === 0 && r.link === 'connected'),
    timeoutMs,
    50,
  ).catch((err: Error) => {
    const last = edge.records.filter((r) => r.msg === 'status').at(-1);
    throw new Error(`${err.message}; last edge status: ${JSON.stringify(last)}`);
  });
}

export interface DeliveryReport {
  /** Acknowledged publishes not in the log. */
  missing: string[];
  /** Publishes in the log more than once. */
  duplicates: string[];
  /** Devices whose events are not in the order they sent them (the first pair out of order). */
  outOfOrder: string[];
  /** Events no device of the fleet sent. */
  unexpected: string[];
  /** Offsets or event ids seen twice. */
  repeatedOffsetsOrIds: string[];
}

/** Checks the cloud log against the acknowledged publishes of a fleet of `devices` × `messages`. */
export function deliveryReport(acks: [string, number][], events: { offset: number; event: CloudEvent }[], devices: number, messages: number, prefix = 'sim-'): DeliveryReport {
  const report: DeliveryReport = { missing: [], duplicates: [], outOfOrder: [], unexpected: [], repeatedOffsetsOrIds: [] };
  const fleet = new Set(Array.from({ length: devices }, (_, i) => `${prefix}${String(i + 1).padStart(4, '0')}`));
  const seen = new Map<string, number>();
  const lastSeq = new Map<string, number>();
  const offsets = new Set<number>();
  const ids = new Set<string>();
  for (const { offset, event } of events) {
    if (offsets.has(offset) || ids.has(event.id)) report.repeatedOffsetsOrIds.push(`offset ${offset} id ${event.id}`);
    offsets.add(offset);
    ids.add(event.id);
    const device = event.subject ?? '(no subject)';
    const seq = (event.data as { seq?: unknown } | undefined)?.seq;
    if (!fleet.has(device) || typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0 || seq >= messages) {
      report.unexpected.push(`offset ${offset}: ${device} seq ${String(seq)}`);
      continue;
    }
    const key = `${device} ${seq}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    if (seen.get(key) === 2) report.duplicates.push(key);
    const before = lastSeq.get(device);
    if (before !== undefined && seq <= before && !report.outOfOrder.some((o) => o.startsWith(`${device}:`))) {
      report.outOfOrder.push(`${device}: seq ${seq} at offset ${offset} after seq ${before}`);
    }
    lastSeq.set(device, Math.max(seq, before ?? -1));
  }
  for (const [device, seq] of acks) if (!seen.has(`${device} ${seq}`)) report.missing.push(`${device} ${seq}`);
  return report;
}

/** Asserts a clean `deliveryReport`, showing at most 20 of each kind of problem (and how many there were). */
export function expectExactlyOnce(acks: [string, number][], events: { offset: number; event: CloudEvent }[], devices: number, messages: number): void {
  const report = deliveryReport(acks, events, devices, messages);
  const shown = Object.fromEntries(Object.entries(report).map(([kind, list]) => [kind, list.length > 20 ? [...list.slice(0, 20), `... ${list.length} in all`] : list]));
  expect(shown).toEqual({ missing: [], duplicates: [], outOfOrder: [], unexpected: [], repeatedOffsetsOrIds: [] });
}
