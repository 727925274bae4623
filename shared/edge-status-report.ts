/**
 * The edge's status report: what `GET /v1/status` on an edge answers and what `tributary status` reads. The
 * edge builds it (edge/edge-status.ts); it lives here because the CLI in `shared/` reads it too. The field
 * names are a public interface: add fields, never rename or remove one.
 *
 * ```
 * { edgeId, version, uptimeSeconds, time,
 *   devices: { connected },
 *   link: { state, url, sinceSeconds, connects, lastError, inflightBatches },
 *   buffer: { events, bytes, maxBytes, usedRatio, oldestAgeSeconds, durability, overflow, maxAgeSeconds,
 *             lanes: { high: { events, bytes, oldestAgeSeconds }, normal: {...}, low: {...} } },
 *   rates: { acceptedPerSecond, forwardedPerSecond, drainPerSecond, drainEtaSeconds },
 *   dropped: { overflow, expired, ...other reasons, total },
 *   counters: { accepted, rejected, forwarded, deadLetters, resendsDeduplicated },
 *   commands?: { pending } }
 * ```
 */

export const LINK_STATES = ['connecting', 'connected', 'waiting', 'stopped'] as const;
export type LinkStateName = (typeof LINK_STATES)[number];

export interface LaneStatus {
  /** Events in the lane awaiting the cloud's acknowledgement. */
  events: number;
  /** Their encoded size. */
  bytes: number;
  /** Age of the lane's oldest event (since it was committed to the buffer); null when the lane is empty. */
  oldestAgeSeconds: number | null;
}

export interface EdgeStatusReport {
  edgeId: string;
  /** Tributary version of the edge node. */
  version: string;
  /** Seconds since the edge node started. */
  uptimeSeconds: number;
  /** When the report was made (RFC 3339, UTC). */
  time: string;
  devices: {
    /** MQTT clients connected to the edge's broker. */
    connected: number;
  };
  /** The uplink to the cloud. */
  link: {
    /** `connected`; `connecting` (dialling); `waiting` (backing off before the next attempt); `stopped`. */
    state: LinkStateName;
    url: string;
    /** Seconds in the current state. */
    sinceSeconds: number;
    /** Successful connections since the edge started. */
    connects: number;
    /** Why the last attempt or connection failed; null when nothing failed yet. */
    lastError: string | null;
    /** Batches sent and awaiting the cloud's acknowledgement. */
    inflightBatches: number;
  };
  buffer: {
    events: number;
    bytes: number;
    /** The configured limit (`buffer.maxBytes`). */
    maxBytes: number;
    /** bytes / maxBytes. */
    usedRatio: number;
    /** Age of the oldest buffered event; null when the buffer is empty. */
    oldestAgeSeconds: number | null;
    /** `power-safe` or `crash-safe`. */
    durability: string;
    /** `backpressure` or `drop-oldest`. */
    overflow: string;
    /** Default time to live of a buffered event; 0: no limit. */
    maxAgeSeconds: number;
    /** By lane, highest priority first: `high`, `normal`, `low`. */
    lanes: Record<string, LaneStatus>;
  };
  /** Per second, over the last few seconds. */
  rates: {
    /** Events accepted from devices into the buffer. */
    acceptedPerSecond: number;
    /** Events acknowledged by the cloud. */
    forwardedPerSecond: number;
    /** How fast the backlog shrinks: forwarded minus accepted when that is positive, else 0. */
    drainPerSecond: number;
    /** Seconds until the buffer is empty at the current drain rate; null when it is not draining. */
    drainEtaSeconds: number | null;
  };
  /** Events dropped from the buffer since the edge started, by reason (always `overflow` and `expired`), and their total. */
  dropped: Record<string, number> & { overflow: number; expired: number; total: number };
  /** Totals since the edge started. */
  counters: {
    /** Events accepted into the buffer. */
    accepted: number;
    /** Messages that could not become events (each kept as a dead letter). */
    rejected: number;
    /** Events acknowledged by the cloud. */
    forwarded: number;
    /** Dead letters kept on the edge. */
    deadLetters: number;
    /** Publishes re-sent by devices (DUP=1) that were recognised and not stored twice. */
    resendsDeduplicated: number;
  };
  /** Present when the edge handles cloud-to-device commands. */
  commands?: {
    /** Commands stored on the edge and not yet acknowledged by their device. */
    pending: number;
  };
}

/**
 * Checks that a parsed JSON body is an edge status report, as far as a reader relies on it. Throws an `Error`
 * naming the first field that is missing or of the wrong type.
 */
export function parseEdgeStatusReport(value: unknown): EdgeStatusReport {
  const need = (ok: boolean, field: string, what: string): void => {
    if (!ok) throw new Error(`field "${field}" is not ${what}`);
  };
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const isCount = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
  const isAge = (v: unknown): boolean => v === null || isCount(v);
  need(isObject(value), '(body)', 'a JSON object');
  const r = value as Record<string, unknown>;
  need(typeof r.edgeId === 'string', 'edgeId', 'a string');
  need(typeof r.version === 'string', 'version', 'a string');
  need(isCount(r.uptimeSeconds), 'uptimeSeconds', 'a number');
  need(typeof r.time === 'string', 'time', 'a string');
  need(isObject(r.devices) && isCount(r.devices.connected), 'devices.connected', 'a number');
  need(isObject(r.link), 'link', 'an object');
  const link = r.link as Record<string, unknown>;
  need((LINK_STATES as readonly unknown[]).includes(link.state), 'link.state', `one of ${LINK_STATES.join(', ')}`);
  need(typeof link.url === 'string', 'link.url', 'a string');
  for (const f of ['sinceSeconds', 'connects', 'inflightBatches']) need(isCount(link[f]), `link.${f}`, 'a number');
  need(link.lastError === null || typeof link.lastError === 'string', 'link.lastError', 'a string or null');
  need(isObject(r.buffer), 'buffer', 'an object');
  const buffer = r.buffer as Record<string, unknown>;
  for (const f of ['events', 'bytes', 'maxBytes', 'usedRatio', 'maxAgeSeconds']) need(isCount(buffer[f]), `buffer.${f}`, 'a number');
  need(isAge(buffer.oldestAgeSeconds), 'buffer.oldestAgeSeconds', 'a number or null');
  need(typeof buffer.durability === 'string', 'buffer.durability', 'a string');
  need(typeof buffer.overflow === 'string', 'buffer.overflow', 'a string');
  need(isObject(buffer.lanes), 'buffer.lanes', 'an object');
  for (const [name, lane] of Object.entries(buffer.lanes as Record<string, unknown>)) {
    need(isObject(lane) && isCount(lane.events) && isCount(lane.bytes) && isAge(lane.oldestAgeSeconds), `buffer.lanes.${name}`, 'a lane ({events, bytes, oldestAgeSeconds})');
  }
  need(isObject(r.rates), 'rates', 'an object');
  const rates = r.rates as Record<string, unknown>;
  for (const f of ['acceptedPerSecond', 'forwardedPerSecond', 'drainPerSecond']) need(isCount(rates[f]), `rates.${f}`, 'a number');
  need(isAge(rates.drainEtaSeconds), 'rates.drainEtaSeconds', 'a number or null');
  need(isObject(r.dropped), 'dropped', 'an object');
  for (const [reason, n] of Object.entries(r.dropped as Record<string, unknown>)) need(isCount(n), `dropped.${reason}`, 'a number');
  need(isCount((r.dropped as Record<string, unknown>).total), 'dropped.total', 'a number');
  need(isObject(r.counters), 'counters', 'an object');
  const counters = r.counters as Record<string, unknown>;
  for (const f of ['accepted', 'rejected', 'forwarded', 'deadLetters', 'resendsDeduplicated']) need(isCount(counters[f]), `counters.${f}`, 'a number');
  if (r.commands !== undefined) need(isObject(r.commands) && isCount(r.commands.pending), 'commands.pending', 'a number');
  return value as EdgeStatusReport;
}
