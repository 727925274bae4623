/**
 * The edge → cloud wire format. The edge publishes, at QoS 1, one MessagePack batch per MQTT message on
 * `tributary/v1/edges/{edgeId}/batches`; the cloud acknowledges (PUBACK) only after the batch is committed to
 * its log. Events travel as the MessagePack bytes the edge buffer already holds, so neither side re-encodes them.
 */
import { decode, encode } from './codec.ts';
import { WireError } from './errors.ts';

export const WIRE_VERSION = 1;

export const UPLINK_TOPIC_PREFIX = 'tributary/v1/edges/';

export function uplinkTopic(edgeId: string): string {
  return `${UPLINK_TOPIC_PREFIX}${edgeId}/batches`;
}

/** The edge id in an uplink topic, or undefined when the topic is not one. */
export function edgeOfUplinkTopic(topic: string): string | undefined {
  if (!topic.startsWith(UPLINK_TOPIC_PREFIX) || !topic.endsWith('/batches')) return undefined;
  const id = topic.slice(UPLINK_TOPIC_PREFIX.length, -'/batches'.length);
  return id.length > 0 && !id.includes('/') ? id : undefined;
}

export interface UplinkBatch {
  v: typeof WIRE_VERSION;
  /** The sending edge. */
  edge: string;
  /** Edge buffer sequence number of each event, strictly increasing. */
  seqs: number[];
  /** Each event as MessagePack bytes (the edge buffer's value). */
  events: Uint8Array[];
}

export function encodeBatch(batch: UplinkBatch): Uint8Array {
  return encode(batch);
}

export function decodeBatch(bytes: Uint8Array): UplinkBatch {
  const batch = decode<Partial<UplinkBatch>>(bytes);
  if (batch === null || typeof batch !== 'object') throw new WireError('uplink batch is not a map');
  if (batch.v !== WIRE_VERSION) throw new WireError(`uplink batch has wire version ${String(batch.v)}; this node speaks ${WIRE_VERSION}`);
  if (typeof batch.edge !== 'string' || !batch.edge) throw new WireError('uplink batch has no edge id');
  const { seqs, events } = batch;
  if (!Array.isArray(seqs) || !Array.isArray(events) || seqs.length !== events.length) {
    throw new WireError('uplink batch must carry as many sequence numbers as events');
  }
  for (let i = 0; i < seqs.length; i++) {
    if (!Number.isSafeInteger(seqs[i]) || seqs[i] < 1 || (i > 0 && seqs[i] <= seqs[i - 1])) {
      throw new WireError(`uplink batch sequence numbers must be increasing positive integers (index ${i})`);
    }
    if (!(events[i] instanceof Uint8Array)) throw new WireError(`uplink batch event ${i} is not binary`);
  }
  return batch as UplinkBatch;
}
