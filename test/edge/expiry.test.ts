import { describe, expect, it } from 'vitest';
import { expiryTimeOf, isExpired } from '../../edge/expiry.ts';
import { encode } from '../../shared/codec.ts';
import { jsonToMessagePack } from '../../shared/json-to-msgpack.ts';

const NOW = Date.UTC(2025, 5, 1, 12, 0, 0);

function event(extra: Record<string, unknown> = {}): Uint8Array {
  return encode({
    specversion: '1.0',
    id: '0198a0c2-7e1f-7000-8000-000000000001',
    source: '/edges/edge-1/devices/dev-1',
    type: 'io.tributary.command.reboot',
    subject: 'dev-1',
    time: new Date(NOW - 60_000).toISOString(),
    datacontenttype: 'application/json',
    data: { reason: 'update' },
    ...extra,
  });
}

describe('expiryTimeOf', () => {
  it('reads an RFC 3339 expirytime, with any offset', () => {
    expect(expiryTimeOf(event({ expirytime: '2025-06-01T12:00:00Z' }))).toBe(NOW);
    expect(expiryTimeOf(event({ expirytime: '2025-06-01T14:30:00.250+02:30' }))).toBe(NOW + 250);
  });

  it('reads an expirytime held as a MessagePack timestamp', () => {
    expect(expiryTimeOf(event({ expirytime: new Date(NOW + 5_000) }))).toBe(NOW + 5_000);
  });

  it('finds expirytime wherever it is among the attributes, also in events converted from JSON', () => {
    expect(expiryTimeOf(encode({ expirytime: '2025-06-01T12:00:00Z', specversion: '1.0', id: 'a', source: '/s', type: 't' }))).toBe(NOW);
    const json = new TextEncoder().encode(JSON.stringify({ specversion: '1.0', id: 'a', source: '/s', type: 't', data: { v: 1 }, expirytime: '2025-06-01T12:00:00Z' }));
    const converted = jsonToMessagePack(json);
    expect(converted).toBeDefined();
    expect(expiryTimeOf(converted!.slice())).toBe(NOW);
  });

  it('is undefined for an event without expirytime, even when its data holds the name', () => {
    expect(expiryTimeOf(event())).toBeUndefined();
    expect(expiryTimeOf(event({ data: { expirytime: '2000-01-01T00:00:00Z' } }))).toBeUndefined();
    expect(expiryTimeOf(event({ data: new Uint8Array([0xaa, ...new TextEncoder().encode('expirytime'), 0xa1, 0x78]) }))).toBeUndefined();
    expect(expiryTimeOf(event({ note: 'the expirytime is not set' }))).toBeUndefined();
  });

  it('is undefined for an expirytime that is not a Timestamp, so such an event never expires by it', () => {
    for (const value of ['tomorrow', '', 1_700_000_000_000, true, null]) {
      expect(expiryTimeOf(event({ expirytime: value })), String(value)).toBeUndefined();
    }
  });

  it('is undefined for bytes that hold the key but are not a MessagePack map', () => {
    const key = [0xaa, ...new TextEncoder().encode('expirytime')];
    expect(expiryTimeOf(Uint8Array.from([0x81, ...key]))).toBeUndefined(); // truncated
    expect(expiryTimeOf(encode(['expirytime', '2000-01-01T00:00:00Z']))).toBeUndefined();
    expect(expiryTimeOf(Uint8Array.from(key))).toBeUndefined();
  });

  it('finds the key at any position in a view of a larger buffer', () => {
    const bytes = event({ expirytime: '2025-06-01T12:00:00Z' });
    const big = new Uint8Array(bytes.length + 20).fill(0x65);
    big.set(bytes, 7);
    expect(expiryTimeOf(big.subarray(7, 7 + bytes.length))).toBe(NOW);
    expect(expiryTimeOf(big.subarray(8, 7 + bytes.length))).toBeUndefined();
  });
});

describe('isExpired', () => {
  it('expires an event whose expirytime is in the past, and not one whose expirytime is now or later', () => {
    expect(isExpired(event({ expirytime: new Date(NOW - 1).toISOString() }), NOW)).toBe(true);
    expect(isExpired(event({ expirytime: new Date(NOW).toISOString() }), NOW)).toBe(false);
    expect(isExpired(event({ expirytime: new Date(NOW + 1).toISOString() }), NOW)).toBe(false);
  });

  it('never expires an event without an expirytime, however old', () => {
    expect(isExpired(event(), NOW + 10 * 365 * 86_400_000)).toBe(false);
  });
});
