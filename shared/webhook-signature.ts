/**
 * Signed webhook deliveries after the Standard Webhooks specification (standardwebhooks.com, spec/standard-webhooks.md),
 * so a receiver can check them with that project's libraries in any language:
 *
 * - `webhook-id`: the message id, the same on every retry of one delivery (a receiver dedupes on it);
 * - `webhook-timestamp`: when it was sent, integer seconds since the epoch;
 * - `webhook-signature`: `v1,<base64 of HMAC-SHA256("{id}.{timestamp}.{body}")>`; a space-separated list when a
 *   secret is being rotated, any one of which may match.
 *
 * A secret is `whsec_` followed by the base64 of its key bytes (the spec recommends 24 to 64 bytes); the HMAC key is
 * the decoded bytes, not the text. The receiver refuses a timestamp too far from its clock (default 5 minutes either
 * way), which stops replays of old deliveries.
 */
import { Buffer } from 'node:buffer';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';
/** How far a timestamp may be from the receiver's clock, in seconds (the spec's suggested default). */
export const DEFAULT_TOLERANCE_SECONDS = 300;

export interface WebhookHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** Why `verifyWebhook` refused a delivery. */
export type WebhookRejection = 'missing-id' | 'missing-timestamp' | 'missing-signature' | 'bad-timestamp' | 'too-old' | 'too-new' | 'bad-signature';

/** A new secret: `whsec_` and the base64 of 32 random bytes. */
export function generateWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

/** The key bytes of a `whsec_` secret; throws an Error that names what is wrong (never the secret itself). */
export function webhookSecretKey(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error(`a webhook secret starts with "${SECRET_PREFIX}" followed by base64 (make one with generateWebhookSecret())`);
  const text = secret.slice(SECRET_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) throw new Error(`a webhook secret is "${SECRET_PREFIX}" followed by standard base64 (A-Z, a-z, 0-9, +, /, = padding)`);
  const key = Buffer.from(text, 'base64');
  if (key.length < 24 || key.length > 64) throw new Error(`a webhook secret's key is 24 to 64 bytes; this one has ${key.length}`);
  return key;
}

/**
 * The headers of one delivery. `timestamp` in seconds since the epoch (a Date is converted); `body` exactly as it
 * is sent (a string is signed as its UTF-8 bytes).
 */
export function signWebhook(message: { id: string; timestamp: number | Date; body: string | Uint8Array; secret: string }): WebhookHeaders {
  if (message.id === '' || /[\s,]/.test(message.id)) throw new Error('a webhook message id is a non-empty string without spaces or commas');
  const timestamp = message.timestamp instanceof Date ? Math.floor(message.timestamp.getTime() / 1000) : message.timestamp;
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new Error('a webhook timestamp is whole seconds since the epoch');
  const signature = sign(webhookSecretKey(message.secret), message.id, String(timestamp), message.body);
  return { 'webhook-id': message.id, 'webhook-timestamp': String(timestamp), 'webhook-signature': `v1,${signature.toString('base64')}` };
}

/**
 * Checks a delivery as a receiver would: `true`, or why it is refused. `headers` is a `Headers` or a plain object
 * (names in lower case); `now` is the receiver's clock in ms since the epoch (default `Date.now()`).
 */
export function verifyWebhook(
  headers: Headers | WebhookHeaders | Readonly<Record<string, string | undefined>>,
  body: string | Uint8Array,
  secret: string,
  options: { toleranceSeconds?: number; now?: number } = {},
): true | WebhookRejection {
  const header = (name: string): string | undefined => (headers instanceof Headers ? (headers.get(name) ?? undefined) : (headers as Readonly<Record<string, string | undefined>>)[name]);
  const id = header('webhook-id');
  const timestampText = header('webhook-timestamp');
  const signatures = header('webhook-signature');
  if (!id) return 'missing-id';
  if (!timestampText) return 'missing-timestamp';
  if (!signatures) return 'missing-signature';
  if (!/^\d{1,15}$/.test(timestampText)) return 'bad-timestamp';
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const nowSeconds = Math.floor((options.now ?? Date.now()) / 1000);
  const timestamp = Number(timestampText);
  if (timestamp < nowSeconds - tolerance) return 'too-old';
  if (timestamp > nowSeconds + tolerance) return 'too-new';
  const expected = sign(webhookSecretKey(secret), id, timestampText, body);
  for (const entry of signatures.split(' ')) {
    const comma = entry.indexOf(',');
    // Other versions (e.g. `v1a`, asymmetric) are not ours to check; they neither pass nor fail the delivery.
    if (comma < 0 || entry.slice(0, comma) !== 'v1') continue;
    const given = Buffer.from(entry.slice(comma + 1), 'base64');
    if (given.length === expected.length && timingSafeEqual(given, expected)) return true;
  }
  return 'bad-signature';
}

function sign(key: Buffer, id: string, timestamp: string, body: string | Uint8Array): Buffer {
  const hmac = createHmac('sha256', key);
  hmac.update(`${id}.${timestamp}.`);
  hmac.update(body);
  return hmac.digest();
}
