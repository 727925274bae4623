import { describe, expect, it } from 'vitest';
import { hashPassword, parsePasswordHash, PasswordHashFormatError, verifyPassword } from '../../shared/password-hash.ts';

/** Cheap parameters: these tests are about the format and the comparison, not the cost. */
const FAST = { logN: 10 };

describe('hashPassword', () => {
  it('makes a PHC-like scrypt string with the default parameters ln=14, r=8, p=1, a 16-byte salt and a 32-byte hash', async () => {
    const encoded = await hashPassword('correct horse battery staple');
    expect(encoded).toMatch(/^\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    const parts = parsePasswordHash(encoded);
    expect(parts.salt).toHaveLength(16);
    expect(parts.hash).toHaveLength(32);
    expect(await verifyPassword('correct horse battery staple', encoded)).toBe(true);
  });

  it('uses a fresh salt for every hash', async () => {
    const [a, b] = await Promise.all([hashPassword('same password', FAST), hashPassword('same password', FAST)]);
    expect(a).not.toBe(b);
    expect(await verifyPassword('same password', a)).toBe(true);
    expect(await verifyPassword('same password', b)).toBe(true);
  });

  it('refuses parameters out of bounds', async () => {
    await expect(hashPassword('x', { logN: 25 })).rejects.toThrow(/ln=25 is out of bounds/);
    await expect(hashPassword('x', { r: 0 })).rejects.toThrow(PasswordHashFormatError);
  });
});

describe('verifyPassword', () => {
  it('agrees with an independent scrypt implementation (Python hashlib, RFC 7914)', async () => {
    const encoded = '$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S/AXJlRU';
    expect(await verifyPassword('correct horse battery staple', encoded)).toBe(true);
    expect(await verifyPassword('correct horse battery stapler', encoded)).toBe(false);
  });

  it('is false for a wrong password, an empty one, and one that differs only in case', async () => {
    const encoded = await hashPassword('Sesame-Open-42', FAST);
    expect(await verifyPassword('Sesame-Open-43', encoded)).toBe(false);
    expect(await verifyPassword('', encoded)).toBe(false);
    expect(await verifyPassword('sesame-open-42', encoded)).toBe(false);
  });

  it('takes the password as bytes too (MQTT carries passwords as binary data), UTF-8 as for strings', async () => {
    const encoded = await hashPassword('pässwörd-ünïcode', FAST);
    expect(await verifyPassword(Buffer.from('pässwörd-ünïcode', 'utf8'), encoded)).toBe(true);
    expect(await verifyPassword(Buffer.from('pässwörd-ünïcode', 'latin1'), encoded)).toBe(false);
  });

  it('throws a clear error for a string that is not such a hash, without comparing anything', async () => {
    for (const bad of ['', 'plaintext', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA', '$scrypt$ln=14,r=8$AAAA$BBBB', '$scrypt$ln=14,r=8,p=1$not base64!$AAAA']) {
      await expect(verifyPassword('x', bad)).rejects.toThrow(/not a scrypt password hash/);
    }
    // A hand-edited cost must not make one check take gigabytes and minutes.
    await expect(verifyPassword('x', '$scrypt$ln=30,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S/AXJlRU')).rejects.toThrow(/ln=30 is out of bounds/);
    await expect(verifyPassword('x', '$scrypt$ln=10,r=8,p=1$AAEC$mp90zEQd5XGhjEv4WArVH4Z0XRSzkGWtJK2S/AXJlRU')).rejects.toThrow(/salt of 3 bytes/);
  });
});
