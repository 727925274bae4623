import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateWebhookSecret, signWebhook, verifyWebhook, webhookSecretKey } from '../../shared/webhook-signature.ts';

// The test vector of the Standard Webhooks reference libraries (and Svix's): a receiver using them must accept what we send.
const VECTOR = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};
const AT_VECTOR = VECTOR.timestamp * 1000;

describe('signWebhook', () => {
  it('reproduces the Standard Webhooks test vector exactly', () => {
    expect(signWebhook(VECTOR)).toEqual({ 'webhook-id': VECTOR.id, 'webhook-timestamp': '1614265330', 'webhook-signature': VECTOR.signature });
  });

  it('signs the same bytes for a string body and its UTF-8, and takes a Date as the timestamp', () => {
    const body = '{"name": "grüße 🌡️"}';
    const fromText = signWebhook({ id: 'msg_1', timestamp: new Date(1_700_000_000_999), body, secret: VECTOR.secret });
    const fromBytes = signWebhook({ id: 'msg_1', timestamp: 1_700_000_000, body: new TextEncoder().encode(body), secret: VECTOR.secret });
    expect(fromText).toEqual(fromBytes);
    expect(fromText['webhook-timestamp']).toBe('1700000000');
  });

  it('uses the decoded key bytes of the secret, not its text', () => {
    const headers = signWebhook({ id: 'msg_2', timestamp: 5, body: 'x', secret: VECTOR.secret });
    const key = Buffer.from(VECTOR.secret.slice('whsec_'.length), 'base64');
    expect(headers['webhook-signature']).toBe(`v1,${createHmac('sha256', key).update('msg_2.5.x').digest('base64')}`);
  });

  it.each([
    ['no prefix', 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', /starts with "whsec_"/],
    ['not base64', 'whsec_not*base64!', /standard base64/],
    ['too short a key', `whsec_${Buffer.alloc(8).toString('base64')}`, /24 to 64 bytes; this one has 8/],
  ])('refuses a secret with %s, without repeating it', (_name, secret, message) => {
    expect(() => signWebhook({ id: 'msg', timestamp: 1, body: '', secret })).toThrow(message);
    try {
      webhookSecretKey(secret);
    } catch (err) {
      expect((err as Error).message).not.toContain(secret.slice(6));
    }
  });

  it('refuses an id that would break the header and a timestamp that is not whole seconds', () => {
    expect(() => signWebhook({ id: 'a b', timestamp: 1, body: '', secret: VECTOR.secret })).toThrow(/without spaces or commas/);
    expect(() => signWebhook({ id: '', timestamp: 1, body: '', secret: VECTOR.secret })).toThrow(/non-empty/);
    expect(() => signWebhook({ id: 'a', timestamp: 1.5, body: '', secret: VECTOR.secret })).toThrow(/whole seconds/);
  });
});

describe('generateWebhookSecret', () => {
  it('makes distinct secrets that sign and verify', () => {
    const a = generateWebhookSecret();
    const b = generateWebhookSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(a).not.toBe(b);
    expect(webhookSecretKey(a)).toHaveLength(32);
    const headers = signWebhook({ id: 'msg_3', timestamp: 100, body: 'hi', secret: a });
    expect(verifyWebhook(headers, 'hi', a, { now: 100_000 })).toBe(true);
    expect(verifyWebhook(headers, 'hi', b, { now: 100_000 })).toBe('bad-signature');
  });
});

describe('verifyWebhook', () => {
  const headers = { 'webhook-id': VECTOR.id, 'webhook-timestamp': String(VECTOR.timestamp), 'webhook-signature': VECTOR.signature };

  it('accepts the test vector, from a plain object or a Headers', () => {
    expect(verifyWebhook(headers, VECTOR.body, VECTOR.secret, { now: AT_VECTOR })).toBe(true);
    expect(verifyWebhook(new Headers(headers), new TextEncoder().encode(VECTOR.body), VECTOR.secret, { now: AT_VECTOR })).toBe(true);
  });

  it('accepts when any one of several signatures matches (secret rotation) and skips versions it does not know', () => {
    const several = { ...headers, 'webhook-signature': `v1a,c29tZXRoaW5n v1,bm9wZQ== ${VECTOR.signature}` };
    expect(verifyWebhook(several, VECTOR.body, VECTOR.secret, { now: AT_VECTOR })).toBe(true);
  });

  it('refuses a changed body, id or timestamp', () => {
    expect(verifyWebhook(headers, '{"test": 2432232315}', VECTOR.secret, { now: AT_VECTOR })).toBe('bad-signature');
    expect(verifyWebhook({ ...headers, 'webhook-id': 'msg_other' }, VECTOR.body, VECTOR.secret, { now: AT_VECTOR })).toBe('bad-signature');
    expect(verifyWebhook({ ...headers, 'webhook-timestamp': String(VECTOR.timestamp + 1) }, VECTOR.body, VECTOR.secret, { now: AT_VECTOR })).toBe('bad-signature');
    expect(verifyWebhook({ ...headers, 'webhook-signature': 'v2,' + VECTOR.signature.slice(3) }, VECTOR.body, VECTOR.secret, { now: AT_VECTOR })).toBe('bad-signature');
  });

  it('refuses a timestamp outside the tolerance either way, and accepts one at its edge', () => {
    const at = (seconds: number, tolerance?: number) => verifyWebhook(headers, VECTOR.body, VECTOR.secret, { now: AT_VECTOR + seconds * 1000, toleranceSeconds: tolerance });
    expect(at(300)).toBe(true);
    expect(at(-300)).toBe(true);
    expect(at(301)).toBe('too-old');
    expect(at(-301)).toBe('too-new');
    expect(at(30, 10)).toBe('too-old');
  });

  it('says which header is missing or malformed', () => {
    const without = (name: string) => Object.fromEntries(Object.entries(headers).filter(([k]) => k !== name));
    expect(verifyWebhook(without('webhook-id'), VECTOR.body, VECTOR.secret, { now: AT_VECTOR })).toBe('missing-id');
    expect(verifyWebhook(without('webhook-timestamp'), VECTOR.body, VECTOR.secret, { now: AT_VECTOR })).toBe('missing-timestamp');
    expect(verifyWebhook(without('webhook-signature'), VECTOR.body, VECTOR.secret, { now: AT_VECTOR })).toBe('missing-signature');
    expect(verifyWebhook({ ...headers, 'webhook-timestamp': '1614265330.0' }, VECTOR.body, VECTOR.secret, { now: AT_VECTOR })).toBe('bad-timestamp');
    expect(verifyWebhook({ ...headers, 'webhook-signature': 'garbage' }, VECTOR.body, VECTOR.secret, { now: AT_VECTOR })).toBe('bad-signature');
  });
});
