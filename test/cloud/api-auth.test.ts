import { join } from 'node:path';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiAuth } from '../../cloud/api-auth.ts';
import { ApiTokens } from '../../cloud/api-tokens.ts';
import { Logger } from '../../shared/logger.ts';
import { Metrics } from '../../shared/metrics.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

interface ErrorBody {
  error: { code: string; message: string; parameter?: string };
}

describe('ApiAuth', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** An app with one route per scope, guarded by the middleware, over a real tokens file. */
  async function setup(options: { allowAnonymous?: boolean; now?: () => number; recheckMs?: number } = {}) {
    const dir = tempDir('tributary-api-auth-');
    cleanups.push(() => dir.remove());
    const path = join(dir.path, 'tokens.json');
    const tokens = await ApiTokens.open(path);
    const metrics = new Metrics();
    const lines: string[] = [];
    const logger = new Logger({ level: 'debug', sink: { write: (line) => void lines.push(line) } });
    const auth = new ApiAuth({ tokens, allowAnonymous: options.allowAnonymous ?? false, metrics, logger, now: options.now, recheckMs: options.recheckMs });
    cleanups.push(() => auth.close());
    const app = new Hono();
    app.use('/read', auth.requireScope('events:read'));
    app.use('/stream', auth.requireScope('events:read', { queryToken: true }));
    app.use('/command', auth.requireScope('commands:send'));
    const seen: { signal?: AbortSignal }[] = [];
    app.get('/read', (c) => c.json({ ok: true }));
    app.get('/command', (c) => c.json({ ok: true }));
    app.get('/stream', (c) => {
      seen.push({ signal: auth.watch(c) });
      return c.json({ ok: true });
    });
    // A second handle on the same file, as the CLI would be: the node must notice its changes.
    const cli = async () => ApiTokens.open(path);
    return { app, auth, tokens, cli, metrics, lines, seen };
  }

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const refused = (metrics: Metrics) => metrics.byLabel('tributary_cloud_http_refused_total', 'reason');

  it('lets a token with the scope through, and admin through everywhere', async () => {
    const { app, tokens: cli } = await setup();
    const reader = await cli.add('dashboard', ['events:read']);
    const admin = await cli.add('root', ['admin']);
    expect((await app.request('/read', { headers: bearer(reader.token) })).status).toBe(200);
    expect((await app.request('/read', { headers: bearer(admin.token) })).status).toBe(200);
    expect((await app.request('/command', { headers: bearer(admin.token) })).status).toBe(200);
    // The scheme name is case-blind (RFC 7235 §2.1).
    expect((await app.request('/read', { headers: { authorization: `bearer ${reader.token}` } })).status).toBe(200);
  });

  it('answers 401 with a bare Bearer challenge when there is no token, and says how to get one', async () => {
    const { app, metrics } = await setup();
    const res = await app.request('/read');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="tributary"');
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe('ERR_UNAUTHORIZED');
    expect(body.error.message).toMatch(/Authorization: Bearer <token>.*tributary tokens add/);
    expect(refused(metrics)).toMatchObject({ missing: 1 });
  });

  it.each([
    ['a malformed token', 'trb_not-a-token', 'malformed'],
    ['an unknown token', `trb_0123456789ab_${'A'.repeat(43)}`, 'unknown'],
  ])('answers 401 with error="invalid_token" for %s, and never repeats the token', async (_name, token, reason) => {
    const { app, metrics, lines } = await setup();
    const res = await app.request('/read', { headers: bearer(token) });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe(`Bearer realm="tributary", error="invalid_token", error_description="the token is ${reason}"`);
    const text = await res.text();
    expect(text).not.toContain(token);
    expect(lines.join('')).not.toContain(token);
    expect(refused(metrics)).toMatchObject({ [reason]: 1 });
  });

  it('refuses another authentication scheme as malformed', async () => {
    const { app, metrics } = await setup();
    const res = await app.request('/read', { headers: { authorization: 'Basic YWxpY2U6cHc=' } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as ErrorBody).error.message).toMatch(/must be "Bearer <token>"/);
    expect(refused(metrics)).toMatchObject({ malformed: 1 });
  });

  it('answers 403 with error="insufficient_scope" for a token without the scope, naming the scope it needs', async () => {
    const { app, tokens: cli, metrics } = await setup();
    const reader = await cli.add('dashboard', ['events:read']);
    const res = await app.request('/command', { headers: bearer(reader.token) });
    expect(res.status).toBe(403);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="tributary", error="insufficient_scope", scope="commands:send"');
    const body = (await res.json()) as ErrorBody;
    expect(body.error).toEqual({
      code: 'ERR_FORBIDDEN',
      message: `the API token "dashboard" (${reader.id}) does not have the scope "commands:send" that GET /command needs (it has events:read); make a token with --scopes commands:send (or admin)`,
    });
    expect(refused(metrics)).toMatchObject({ 'insufficient-scope': 1 });
  });

  it('takes ?access_token= only where the route allows it, and never together with the header', async () => {
    const { app, tokens: cli, metrics } = await setup();
    const { token } = await cli.add('browser', ['events:read']);
    expect((await app.request(`/stream?access_token=${token}`)).status).toBe(200);
    const elsewhere = await app.request(`/read?access_token=${token}`);
    expect(elsewhere.status).toBe(400);
    const body = (await elsewhere.json()) as ErrorBody;
    expect(body.error).toMatchObject({ code: 'ERR_BAD_PARAMETER', parameter: 'access_token' });
    expect(body.error.message).toMatch(/only GET \/v1\/stream does/);
    expect(body.error.message).not.toContain(token);
    expect((await app.request(`/stream?access_token=${token}`, { headers: bearer(token) })).status).toBe(400);
    expect((await app.request(`/stream?access_token=${token}&access_token=${token}`)).status).toBe(400);
    expect(refused(metrics)).toMatchObject({ 'token-in-query': 3 });
  });

  it('stops accepting a token once it is removed from the file by another process', async () => {
    const { app, tokens, cli } = await setup();
    const { token, id } = await tokens.add('temp', ['events:read']);
    expect((await app.request('/read', { headers: bearer(token) })).status).toBe(200);
    await (await cli()).remove(id);
    // The node looks at the file at most once a second.
    const res = await waitFor('the removed token to be refused', async () => {
      const r = await app.request('/read', { headers: bearer(token) });
      return r.status === 401 ? r : undefined;
    }, 5_000, 100);
    expect(((await res.json()) as ErrorBody).error.message).toMatch(/revoked|not known/);
  });

  it('refuses a token past its expiry by the injected clock', async () => {
    let now = Date.now();
    const { app, tokens: cli, metrics } = await setup({ now: () => now });
    const { token } = await cli.add('short', ['events:read'], { expiresAt: new Date(now + 60_000) });
    expect((await app.request('/read', { headers: bearer(token) })).status).toBe(200);
    now += 60_000;
    const res = await app.request('/read', { headers: bearer(token) });
    expect(res.status).toBe(401);
    expect(((await res.json()) as ErrorBody).error.message).toMatch(/"short" .* expired at/);
    expect(refused(metrics)).toMatchObject({ expired: 1 });
  });

  it('with allowAnonymous, lets a request without a token through but still checks a token that is sent', async () => {
    const { app, seen } = await setup({ allowAnonymous: true });
    expect((await app.request('/command')).status).toBe(200);
    expect((await app.request('/stream')).status).toBe(200);
    expect(seen[0].signal).toBeUndefined();
    expect((await app.request('/command', { headers: bearer('trb_bad') })).status).toBe(401);
  });

  it('aborts the watch signal of a stream once its token expires, and leaves other streams alone', async () => {
    let now = Date.now();
    const { app, tokens: cli, seen } = await setup({ now: () => now, recheckMs: 20 });
    const short = await cli.add('short', ['events:read'], { expiresAt: new Date(now + 1_000) });
    const long = await cli.add('long', ['events:read']);
    await app.request(`/stream?access_token=${short.token}`);
    await app.request('/stream', { headers: bearer(long.token) });
    const [first, second] = seen.map((s) => s.signal!);
    expect(first.aborted).toBe(false);
    now += 1_000;
    await waitFor('the expired stream to be ended', () => first.aborted, 2_000, 10);
    expect(second.aborted).toBe(false);
  });
});
