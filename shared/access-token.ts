/**
 * Machine tokens (an edge's token for the cloud, API bearer tokens): `trb_<id>_<secret>`, where the id (12
 * lowercase hex characters) names the stored record and the secret is 32 random bytes in base64url (43
 * characters). The prefix makes a leaked token easy to recognise (secret scanners, logs); the id lets the holder
 * be named in lists and logs without the secret.
 *
 * Only a SHA-256 of the secret is stored. A token carries 256 random bits, so a fast hash is as good as a slow one
 * for it (there is nothing to guess), and a check costs microseconds on every request; human-chosen passwords are
 * another matter and get scrypt (password-hash.ts).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface NewToken {
  id: string;
  token: string;
  /** sha256 hex of the secret */
  secretHash: string;
}

export const TOKEN_PREFIX = 'trb_';
const TOKEN = /^trb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export function generateToken(): NewToken {
  const id = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, token: `${TOKEN_PREFIX}${id}_${secret}`, secretHash: hashSecret(secret) };
}

/** The id and secret of a well-formed token; undefined for anything else (malformed). */
export function parseToken(text: string): { id: string; secret: string } | undefined {
  const m = TOKEN.exec(text);
  return m ? { id: m[1], secret: m[2] } : undefined;
}

/** sha256 hex */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Timing-safe; false also when `secretHash` is not a sha256 hex string. */
export function secretMatches(secret: string, secretHash: string): boolean {
  if (!SHA256_HEX.test(secretHash)) return false;
  return timingSafeEqual(createHash('sha256').update(secret, 'utf8').digest(), Buffer.from(secretHash, 'hex'));
}

/** Whether a stored hash is well-formed (for checking credential files when they are read). */
export function isSecretHash(text: unknown): text is string {
  return typeof text === 'string' && SHA256_HEX.test(text);
}

/** Whether `text` is a token id. */
export function isTokenId(text: unknown): text is string {
  return typeof text === 'string' && /^[0-9a-f]{12}$/.test(text);
}
