/**
 * Password hashing for human-chosen secrets (device passwords): scrypt (RFC 7914) from `node:crypto`, which runs
 * in the libuv thread pool on Node and in Deno's Node layer, so a hash never blocks the event loop.
 *
 * Encoded as a PHC-like string, `$scrypt$ln=14,r=8,p=1$<salt>$<hash>` (salt 16 bytes, hash 32 bytes, both
 * base64 without padding as the PHC string format has it), so the parameters travel with each hash and can be
 * raised later without breaking stored ones.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

export interface ScryptParams {
  /** log2 of the CPU/memory cost N. */
  logN?: number;
  r?: number;
  p?: number;
}

/**
 * ln=14, r=8, p=1 (16 MiB per hash): the interactive-login parameters of the scrypt paper and OWASP's minimum.
 * Measured on this project's 2-core machine: about 50 ms per hash on Node 20, about 100 ms on Deno 2.
 */
export const DEFAULT_SCRYPT_PARAMS = { logN: 14, r: 8, p: 1 } as const;

const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** Bounds for parameters read from a file: a hand-edited `ln=30` must not make each check take 64 GiB and minutes. */
const LIMITS = { logN: [1, 20], r: [1, 32], p: [1, 16] } as const;

const ENCODED = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

/** A string that is not a password hash this module made, or one with parameters out of bounds. */
export class PasswordHashFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PasswordHashFormatError';
  }
}

export async function hashPassword(password: string, params: ScryptParams = {}): Promise<string> {
  const p = { ...DEFAULT_SCRYPT_PARAMS, ...params };
  checkParams(p.logN, p.r, p.p);
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, p.logN, p.r, p.p, HASH_BYTES);
  return `$scrypt$ln=${p.logN},r=${p.r},p=${p.p}$${b64(salt)}$${b64(hash)}`;
}

/** Timing-safe; false for a wrong password; throws a PasswordHashFormatError for a string that is not such a hash. */
export async function verifyPassword(password: string | Uint8Array, encoded: string): Promise<boolean> {
  const { logN, r, p, salt, hash } = parsePasswordHash(encoded);
  const candidate = await derive(password, salt, logN, r, p, hash.length);
  return timingSafeEqual(candidate, hash);
}

/** The parts of an encoded hash; throws a PasswordHashFormatError that says what is wrong with it. */
export function parsePasswordHash(encoded: string): { logN: number; r: number; p: number; salt: Buffer; hash: Buffer } {
  const m = ENCODED.exec(encoded);
  if (!m) throw new PasswordHashFormatError('not a scrypt password hash (expected "$scrypt$ln=14,r=8,p=1$<salt>$<hash>")');
  const [logN, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  checkParams(logN, r, p);
  const salt = Buffer.from(m[4], 'base64');
  const hash = Buffer.from(m[5], 'base64');
  if (salt.length < 8) throw new PasswordHashFormatError(`scrypt password hash has a salt of ${salt.length} bytes; at least 8 are needed`);
  if (hash.length < 16 || hash.length > 64) throw new PasswordHashFormatError(`scrypt password hash has a hash of ${hash.length} bytes; 16 to 64 are allowed`);
  return { logN, r, p, salt, hash };
}

function checkParams(logN: number, r: number, p: number): void {
  for (const [name, value] of Object.entries({ logN, r, p }) as [keyof typeof LIMITS, number][]) {
    const [min, max] = LIMITS[name];
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new PasswordHashFormatError(`scrypt parameter ${name === 'logN' ? 'ln' : name}=${value} is out of bounds (${min}..${max})`);
    }
  }
}

function derive(password: string | Uint8Array, salt: Buffer, logN: number, r: number, p: number, length: number): Promise<Buffer> {
  const N = 2 ** logN;
  return new Promise((resolve, reject) => {
    // scrypt needs 128·N·r bytes; twice that leaves room for p and OpenSSL's own overhead (Node's default
    // maxmem of 32 MiB happens to fit ln=14 but not ln=15, so it is set explicitly).
    scrypt(password, salt, length, { N, r, p, maxmem: 128 * N * r * 2 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function b64(bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '');
}
