import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ApiTokens, defaultTokensFile, hasScope, parseScopes, SCOPES } from '../../cloud/api-tokens.ts';
import { cloudConfigSchema } from '../../cloud/config.ts';
import { parseExpiry } from '../../cloud/tokens-command.ts';
import { generateToken } from '../../shared/access-token.ts';
import { UsageError } from '../../shared/errors.ts';
import { freshFiles } from '../helpers/temp-file.ts';

const DAY = 86_400_000;

describe('ApiTokens', () => {
  const fresh = freshFiles('tributary-tokens-', 'tokens.json');

  it('checks a token it made and returns its id, name and scopes', async () => {
    const tokens = await ApiTokens.open(fresh());
    const { id, token } = await tokens.add('dashboard', ['events:read', 'commands:send']);
    expect(tokens.check(token)).toEqual({ ok: true, tokenId: id, name: 'dashboard', scopes: ['events:read', 'commands:send'] });
    expect(readFileSync(tokens.path, 'utf8')).not.toContain(token.slice(-43));
  });

  it('refuses missing, malformed and unknown tokens with a message that says what to do and holds no secret', async () => {
    const tokens = await ApiTokens.open(fresh());
    const { token } = await tokens.add('ops', ['admin']);
    const stranger = generateToken().token;
    const sameIdOtherSecret = `${token.slice(0, 17)}${stranger.slice(-43)}`;
    const cases: [string | undefined, string][] = [
      [undefined, 'missing'],
      ['', 'missing'],
      ['Bearer abc', 'malformed'],
      [token + 'x', 'malformed'],
      [stranger, 'unknown'],
      [sameIdOtherSecret, 'unknown'],
    ];
    for (const [text, reason] of cases) {
      const result = tokens.check(text);
      expect(result, String(text)).toMatchObject({ ok: false, reason });
      if (result.ok) continue;
      expect(result.message).toMatch(/tributary tokens add|Authorization: Bearer|trb_/);
      expect(result.message).not.toContain(token.slice(-43));
      expect(result.message).not.toContain(stranger.slice(-43));
    }
  });

  it('refuses an expired token, and lists it as expired', async () => {
    let now = Date.parse('2025-06-01T00:00:00Z');
    const tokens = await ApiTokens.open(fresh(), { clock: () => now });
    const { token } = await tokens.add('temp', ['events:read'], { expiresAt: new Date(now + DAY) });
    expect(tokens.check(token).ok).toBe(true);
    expect(tokens.check(token, now + DAY - 1).ok).toBe(true);
    expect(tokens.check(token, now + DAY)).toMatchObject({ ok: false, reason: 'expired', message: expect.stringContaining('expired at 2025-06-02T00:00:00.000Z') });
    expect(tokens.list()[0]).toMatchObject({ name: 'temp', expiresAt: '2025-06-02T00:00:00.000Z', expired: false });
    now += 2 * DAY;
    expect(tokens.list()[0].expired).toBe(true);
    expect(tokens.check(token).ok).toBe(false);
  });

  it('says "revoked" for a token removed while the node runs, and "unknown" for a guess at its id', async () => {
    const path = fresh();
    let now = 0;
    const cloud = await ApiTokens.open(path, { clock: () => now });
    const cli = await ApiTokens.open(path);
    const { id, token } = await cli.add('ci', ['events:read']);
    now += 1000;
    await cloud.refresh();
    expect(cloud.check(token, Date.now()).ok).toBe(true);
    expect(await cli.remove(id)).toBe(1);
    now += 1000;
    await cloud.refresh();
    expect(cloud.check(token, Date.now())).toMatchObject({ ok: false, reason: 'revoked', message: expect.stringContaining(id) });
    expect(cloud.check(`trb_${id}_${generateToken().token.slice(-43)}`, Date.now())).toMatchObject({ ok: false, reason: 'unknown' });
  });

  it('removes one token by id, or every token with a name, and counts them', async () => {
    const tokens = await ApiTokens.open(fresh());
    const a = await tokens.add('dashboard', ['events:read']);
    const b = await tokens.add('dashboard', ['events:read']);
    const c = await tokens.add('ops', ['commands:send']);
    expect(await tokens.remove(c.id)).toBe(1);
    expect(tokens.check(c.token)).toMatchObject({ ok: false, reason: 'revoked' });
    expect(await tokens.remove('dashboard')).toBe(2);
    expect(await tokens.remove('dashboard')).toBe(0);
    expect(tokens.check(a.token).ok).toBe(false);
    expect(tokens.check(b.token).ok).toBe(false);
    expect(tokens.list()).toEqual([]);
  });

  it('lists ids, names, scopes and times, never secrets', async () => {
    const tokens = await ApiTokens.open(fresh());
    const { id, token } = await tokens.add('b-name', ['events:read']);
    await tokens.add('a-name', ['admin']);
    const list = tokens.list();
    expect(list.map((t) => t.name)).toEqual(['a-name', 'b-name']);
    expect(list[1]).toEqual({ id, name: 'b-name', scopes: ['events:read'], createdAt: expect.any(String), expired: false });
    expect(JSON.stringify(list)).not.toContain(token.slice(-43));
  });

  it('refuses bad names, unknown or no scopes and an expiry in the past, writing nothing', async () => {
    const tokens = await ApiTokens.open(fresh());
    await expect(tokens.add('has space', ['admin'])).rejects.toThrow(/invalid token name "has space": a token name is 1-64 letters/);
    await expect(tokens.add('x'.repeat(65), ['admin'])).rejects.toThrow(UsageError);
    await expect(tokens.add('ok', ['events:write' as never])).rejects.toThrow(`unknown scope "events:write"; the scopes are ${SCOPES.join(', ')}`);
    await expect(tokens.add('ok', [])).rejects.toThrow(/at least one scope/);
    await expect(tokens.add('ok', ['admin'], { expiresAt: new Date(Date.now() - 1000) })).rejects.toThrow(/in the past/);
    expect(tokens.size).toBe(0);
  });
});

describe('hasScope', () => {
  it('grants a scope that was given, and every scope to admin', () => {
    expect(hasScope(['events:read'], 'events:read')).toBe(true);
    expect(hasScope(['events:read'], 'commands:send')).toBe(false);
    expect(hasScope([], 'events:read')).toBe(false);
    for (const scope of SCOPES) expect(hasScope(['admin'], scope)).toBe(true);
  });
});

describe('parseScopes', () => {
  it('reads a comma-separated list, dropping blanks and repeats', () => {
    expect(parseScopes('events:read, commands:send,events:read,')).toEqual(['events:read', 'commands:send']);
    expect(() => parseScopes('events:read,root')).toThrow(/unknown scope "root"; the scopes are events:read, subscriptions:manage, commands:send, admin/);
    expect(() => parseScopes(' , ')).toThrow(/at least one scope/);
  });
});

describe('parseExpiry', () => {
  const now = Date.parse('2025-06-01T12:00:00Z');

  it('takes minutes, hours and days from now, or an ISO date or time', () => {
    expect(parseExpiry('90m', now).toISOString()).toBe('2025-06-01T13:30:00.000Z');
    expect(parseExpiry('12h', now).toISOString()).toBe('2025-06-02T00:00:00.000Z');
    expect(parseExpiry('30d', now).toISOString()).toBe('2025-07-01T12:00:00.000Z');
    expect(parseExpiry('2026-01-31', now).toISOString()).toBe('2026-01-31T00:00:00.000Z');
    expect(parseExpiry('2026-01-31T18:00:00Z', now).toISOString()).toBe('2026-01-31T18:00:00.000Z');
  });

  it('refuses anything else, and times that are not in the future', () => {
    for (const text of ['30', '30 days', '1w', 'tomorrow', '-5d', '31/01/2026']) expect(() => parseExpiry(text, now), text).toThrow(/takes a duration such as 30d, 12h or 90m, or an ISO date/);
    expect(() => parseExpiry('0d', now)).toThrow(/not in the future/);
    expect(() => parseExpiry('2025-01-01', now)).toThrow(/2025-01-01T00:00:00.000Z is not in the future/);
  });
});

describe('defaultTokensFile', () => {
  it('is auth.tokensFile when set, else tokens.json in the data directory', () => {
    expect(defaultTokensFile(cloudConfigSchema.parse({}))).toBe('.data/cloud/tokens.json');
    expect(defaultTokensFile(cloudConfigSchema.parse({ auth: { tokensFile: '/etc/t/tokens.json' } }))).toBe('/etc/t/tokens.json');
  });
});
