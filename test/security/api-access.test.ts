/**
 * API access over real loopback: a real CloudNode (LevelDB in a temp dir, HTTP on port 0) and fetch, with tokens
 * in the node's tokens file made before it starts, or changed by another handle on the file while it runs (as
 * `tributary tokens` would).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiTokens } from '../../cloud/api-tokens.ts';
import { CloudNode } from '../../cloud/cloud-node.ts';
import { cloudConfigSchema } from '../../cloud/config.ts';
import { generateToken, parseToken } from '../../shared/access-token.ts';
import { parseConfig } from '../../shared/config.ts';
import { Logger } from '../../shared/logger.ts';
import { Hono } from 'hono';
import { startHttpServer } from '../../shared/http-server.ts';
import { main as status } from '../../shared/cli/status.ts';
import { SseClient } from '../helpers/sse-client.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

interface ErrorBody {
  error: { code: string; message: string; parameter?: string };
}

describe('API access (cloud HTTP API)', () => {
  const dir = tempDir('tributary-api-access-');
  const lines: string[] = [];
  const bodies: string[] = [];
  let node: CloudNode;
  let base: string;
  let tokensPath: string;
  const token: Record<'reader' | 'commander' | 'admin' | 'expired' | 'revocable', string> = { reader: '', commander: '', admin: '', expired: '', revocable: '' };
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    tokensPath = join(dir.path, 'tokens.json');
    const tokens = await ApiTokens.open(tokensPath);
    for (const [name, scopes] of [['reader', ['events:read']], ['commander', ['commands:send']], ['admin', ['admin']], ['revocable', ['events:read']]] as const) {
      const made = await tokens.add(name, [...scopes]);
      token[name] = made.token;
      ids[name] = made.id;
    }
    // A token that expired an hour ago (the CLI refuses to make one, so it is written into the file directly).
    const stale = generateToken();
    token.expired = stale.token;
    const file = JSON.parse(readFileSync(tokensPath, 'utf8')) as { version: number; entries: Record<string, unknown> };
    file.entries[stale.id] = { name: 'old', scopes: ['events:read'], secretHash: stale.secretHash, createdAt: new Date(Date.now() - 7_200_000).toISOString(), expiresAt: new Date(Date.now() - 3_600_000).toISOString() };
    writeFileSync(tokensPath, JSON.stringify(file), { mode: 0o600 });

    const config = parseConfig(cloudConfigSchema, { dataDir: dir.path, store: { durability: 'crash-safe' }, uplink: { port: 0 }, http: { port: 0 }, statusIntervalMs: 0 });
    node = new CloudNode(config, new Logger({ level: 'debug', sink: { write: (line) => void lines.push(line) } }));
    await node.start();
    base = `http://127.0.0.1:${node.ports.http}`;
    await node.log.append([{ specversion: '1.0', id: 'e1', source: '/edges/edge-1/devices/d', type: 'io.tributary.telemetry.t', data: { n: 1 } }]);
  });

  afterAll(async () => {
    await node.stop();
    dir.remove();
  });

  async function get(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const res = await fetch(`${base}${path}`, { headers });
    bodies.push(await res.clone().text());
    return res;
  }

  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  it('keeps /healthz open', async () => {
    expect((await get('/healthz')).status).toBe(200);
  });

  it.each([
    ['GET', '/v1/events'],
    ['GET', '/v1/stream'],
    ['GET', '/v1/devices/dev-1/commands'],
    ['GET', '/v1/commands/0190a6c4-0000-7000-8000-000000000000'],
    ['POST', '/v1/devices/dev-1/commands'],
  ])('answers %s %s without a token with 401 and WWW-Authenticate: Bearer', async (method, path) => {
    const res = await fetch(`${base}${path}`, { method, body: method === 'POST' ? '{"data": 1, "edge": "edge-1"}' : undefined });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="tributary"');
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe('ERR_UNAUTHORIZED');
    expect(body.error.message).toContain('Authorization: Bearer <token>');
  });

  it.each([
    ['malformed', () => 'trb_123', 'malformed'],
    ['unknown', () => generateToken().token, 'unknown'],
    ['expired', () => token.expired, 'expired'],
  ])('answers a %s token with 401 and error="invalid_token"', async (_name, make, reason) => {
    const res = await get('/v1/events', bearer(make()));
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe(`Bearer realm="tributary", error="invalid_token", error_description="the token is ${reason}"`);
    expect(((await res.json()) as ErrorBody).error.message).toMatch(reason === 'expired' ? /"old" .* expired at/ : /tributary tokens add/);
  });

  it('answers a token without the scope with 403, and one with it (or admin) with 200', async () => {
    const forbidden = await get('/v1/events', bearer(token.commander));
    expect(forbidden.status).toBe(403);
    expect(forbidden.headers.get('www-authenticate')).toContain('error="insufficient_scope", scope="events:read"');
    expect(((await forbidden.json()) as ErrorBody).error.code).toBe('ERR_FORBIDDEN');
    const page = await get('/v1/events?from=1', bearer(token.reader));
    expect(page.status).toBe(200);
    expect(((await page.json()) as { events: unknown[] }).events).toHaveLength(1);
    expect((await get('/v1/events', bearer(token.admin))).status).toBe(200);

    const post = (t: string) => fetch(`${base}/v1/devices/dev-1/commands`, { method: 'POST', headers: { ...bearer(t), 'content-type': 'application/json' }, body: '{"data": null, "edge": "edge-1"}' });
    expect((await post(token.reader)).status).toBe(403);
    expect((await post(token.commander)).status).toBe(202);
    expect((await get('/v1/devices/dev-1/commands', bearer(token.commander))).status).toBe(200);
    expect(node.metrics.byLabel('tributary_cloud_http_refused_total', 'reason')['insufficient-scope']).toBeGreaterThanOrEqual(2);
  });

  it('takes ?access_token= for the stream only', async () => {
    const stream = new SseClient(`${base}/v1/stream?from=1&access_token=${encodeURIComponent(token.reader)}`);
    try {
      expect((await stream.response).status).toBe(200);
      await stream.received([1]);
    } finally {
      stream.close();
    }
    const res = await get(`/v1/events?access_token=${encodeURIComponent(token.reader)}`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error).toMatchObject({ code: 'ERR_BAD_PARAMETER', parameter: 'access_token' });
    expect((await get(`/v1/stream?access_token=${encodeURIComponent(token.commander)}`)).status).toBe(403);
  });

  it('ends an open stream once its token is revoked, and refuses the token from then on', async () => {
    const stream = new SseClient(`${base}/v1/stream?from=1`, bearer(token.revocable));
    try {
      await stream.received([1]);
      const cli = await ApiTokens.open(tokensPath);
      expect(await cli.remove(ids.revocable)).toBe(1);
      await waitFor('the stream to end', () => stream.ended, 5_000);
      expect((await get('/v1/events', bearer(token.revocable))).status).toBe(401);
      expect(lines.some((l) => l.includes('event stream ended: its token no longer holds'))).toBe(true);
    } finally {
      stream.close();
    }
  });

  it('puts no token or secret in a log line or an error body', () => {
    expect(lines.length).toBeGreaterThan(0);
    expect(bodies.length).toBeGreaterThan(5);
    for (const t of Object.values(token)) {
      // Base64url, so it may itself hold "_": taken by the token's format, not by the last underscore.
      const secret = parseToken(t)!.secret;
      expect([...lines, ...bodies].filter((text) => text.includes(secret.slice(0, 16)))).toEqual([]);
    }
  });
});

describe('tributary status --cloud with an API token', () => {
  const dir = tempDir('tributary-status-token-');
  const seen: (string | undefined)[] = [];
  let server: Awaited<ReturnType<typeof startHttpServer>>;

  beforeAll(async () => {
    const app = new Hono();
    app.get('/healthz', (c) => {
      seen.push(c.req.header('authorization'));
      return c.json({ status: 'ok', lastOffset: 0, edges: 0 });
    });
    server = await startHttpServer(app);
  });

  afterAll(async () => {
    await server.close();
    dir.remove();
  });

  function io(env: Record<string, string | undefined> = {}) {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => err.push(t) }, env } };
  }

  it('sends the token of --token-file, else of TRIBUTARY_TOKEN, as a bearer token', async () => {
    const file = join(dir.path, 'ops.token');
    writeFileSync(file, 'trb_from_file\n', { mode: 0o600 });
    expect(await status(['--cloud', server.url, '--token-file', file, '--json'], io({ TRIBUTARY_TOKEN: 'trb_from_env' }).io)).toBe(0);
    expect(await status(['--cloud', server.url, '--json'], io({ TRIBUTARY_TOKEN: 'trb_from_env' }).io)).toBe(0);
    expect(await status(['--cloud', server.url, '--json'], io().io)).toBe(0);
    expect(seen).toEqual(['Bearer trb_from_file', 'Bearer trb_from_env', undefined]);
  });

  it('exits with 2 for a token file that cannot be read or is empty, without asking the cloud', async () => {
    const before = seen.length;
    const missing = io();
    expect(await status(['--cloud', server.url, '--token-file', join(dir.path, 'nope')], missing.io)).toBe(2);
    expect(missing.err.join('')).toMatch(/flag --token-file: cannot read ".*nope" \(ENOENT\)/);
    const emptyFile = join(dir.path, 'empty');
    writeFileSync(emptyFile, '');
    const empty = io();
    expect(await status(['--cloud', server.url, '--token-file', emptyFile], empty.io)).toBe(2);
    expect(empty.err.join('')).toMatch(/is empty/);
    expect(seen.length).toBe(before);
  });
});
