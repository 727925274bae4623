import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateToken, hashSecret, parseToken, secretMatches } from '../../shared/access-token.ts';

describe('generateToken', () => {
  it('makes trb_<12 hex id>_<43 base64url secret> with the sha256 of the secret', () => {
    const t = generateToken();
    expect(t.token).toMatch(/^trb_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(t.token.startsWith(`trb_${t.id}_`)).toBe(true);
    const secret = t.token.slice(`trb_${t.id}_`.length);
    expect(Buffer.from(secret, 'base64url')).toHaveLength(32);
    expect(t.secretHash).toBe(createHash('sha256').update(secret).digest('hex'));
    expect(t.secretHash).not.toContain(secret);
  });

  it('makes a different id and secret every time', () => {
    const tokens = Array.from({ length: 200 }, () => generateToken());
    expect(new Set(tokens.map((t) => t.id)).size).toBe(200);
    expect(new Set(tokens.map((t) => t.token)).size).toBe(200);
  });
});

describe('parseToken', () => {
  it('returns the id and secret of a token it made, including secrets with "_" and "-"', () => {
    for (let i = 0; i < 50; i++) {
      const t = generateToken();
      const parsed = parseToken(t.token)!;
      expect(parsed.id).toBe(t.id);
      expect(hashSecret(parsed.secret)).toBe(t.secretHash);
    }
    expect(parseToken(`trb_0123456789ab_${'_-'.repeat(21)}A`)).toEqual({ id: '0123456789ab', secret: `${'_-'.repeat(21)}A` });
  });

  it('is undefined for anything that is not exactly such a token', () => {
    const good = generateToken().token;
    const bad = [
      '',
      'trb_',
      good.slice(0, -1),
      good + 'A',
      ` ${good}`,
      `${good}\n`,
      good.replace('trb_', 'TRB_'),
      good.replace('trb_', 'tok_'),
      `trb_0123456789AB_${'a'.repeat(43)}`,
      `trb_0123456789a_${'a'.repeat(44)}`,
      `trb_0123456789ab_${'a'.repeat(42)}=`,
      `Bearer ${good}`,
    ];
    for (const text of bad) expect(parseToken(text), text).toBeUndefined();
  });
});

describe('secretMatches', () => {
  it('is true for the secret that was hashed and false for any other', () => {
    const t = generateToken();
    const { secret } = parseToken(t.token)!;
    expect(secretMatches(secret, t.secretHash)).toBe(true);
    expect(secretMatches(parseToken(generateToken().token)!.secret, t.secretHash)).toBe(false);
    expect(secretMatches(secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A'), t.secretHash)).toBe(false);
  });

  it('is false, not an exception, for a stored hash that is not sha256 hex', () => {
    const { secret } = parseToken(generateToken().token)!;
    for (const hash of ['', 'abc', hashSecret(secret).toUpperCase(), hashSecret(secret) + '00']) expect(secretMatches(secret, hash)).toBe(false);
  });
});
