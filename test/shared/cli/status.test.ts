import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Hono } from 'hono';
import type { EdgeStatusReport } from '../../../shared/edge-status-report.ts';
import { parseEdgeStatusReport } from '../../../shared/edge-status-report.ts';
import type { RunningHttpServer } from '../../../shared/http-server.ts';
import { startHttpServer } from '../../../shared/http-server.ts';
import { bytes, duration, formatEdgeStatus, main } from '../../../shared/cli/status.ts';
import { freePort } from '../../helpers/free-port.ts';

function sampleReport(): EdgeStatusReport {
  return {
    edgeId: 'plant-7',
    version: '0.1.0',
    uptimeSeconds: 7_384,
    time: '2025-06-01T12:00:00.000Z',
    devices: { connected: 20 },
    link: { state: 'waiting', url: 'mqtt://cloud.example:1884', sinceSeconds: 42, connects: 3, lastError: 'connect ECONNREFUSED 10.0.0.1:1884', inflightBatches: 0 },
    buffer: {
      events: 12_345,
      bytes: 3 * 1024 * 1024,
      maxBytes: 256 * 1024 * 1024,
      usedRatio: 0.0117,
      oldestAgeSeconds: 125,
      durability: 'power-safe',
      overflow: 'drop-oldest',
      maxAgeSeconds: 604_800,
      lanes: {
        high: { events: 5, bytes: 900, oldestAgeSeconds: 3.5 },
        normal: { events: 12_340, bytes: 3 * 1024 * 1024 - 900, oldestAgeSeconds: 125 },
        low: { events: 0, bytes: 0, oldestAgeSeconds: null },
      },
    },
    rates: { acceptedPerSecond: 100, forwardedPerSecond: 0, drainPerSecond: 0, drainEtaSeconds: null },
    dropped: { overflow: 17, expired: 0, total: 17 },
    counters: { accepted: 50_000, rejected: 2, forwarded: 37_655, deadLetters: 2, resendsDeduplicated: 4 },
  };
}

/** Captures what the command writes. */
function capture(stop?: AbortSignal) {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, stop },
    out: () => out.join(''),
    err: () => err.join(''),
    writes: out,
  };
}

describe('formatEdgeStatus', () => {
  it('shows link, devices, buffer, each lane, rates, drops and totals', () => {
    const text = formatEdgeStatus(sampleReport());
    expect(text).toContain('edge plant-7 · tributary 0.1.0 · up 2h 03m');
    expect(text).toMatch(/^link {6}waiting for 42s · mqtt:\/\/cloud\.example:1884 · 3 connects · 0 batches in flight$/m);
    expect(text).toContain('last error: connect ECONNREFUSED 10.0.0.1:1884');
    expect(text).toMatch(/^devices {3}20 connected$/m);
    expect(text).toContain('12,345 events · 3.0 MiB of 256 MiB (1.2%) · oldest 2m 05s');
    expect(text).toContain('power-safe, overflow drop-oldest, max age 7d 00h');
    expect(text).toContain(
      ['  lane     events     bytes   oldest', '  high          5     900 B     3.5s', '  normal   12,340   3.0 MiB   2m 05s', '  low           0       0 B        -'].join('\n'),
    );
    expect(text).toContain('accepted 100/s · forwarded 0/s · not draining');
    expect(text).toMatch(/^dropped {3}overflow 17 \(total 17\)$/m);
    expect(text).toContain('accepted 50,000 · forwarded 37,655 · rejected 2 · dead letters 2 · resends deduplicated 4');
    expect(text).not.toContain('commands');
  });

  it('shows the drain rate and the time until the buffer is empty while it drains', () => {
    const r = sampleReport();
    r.link = { ...r.link, state: 'connected', lastError: null, inflightBatches: 8 };
    r.rates = { acceptedPerSecond: 100, forwardedPerSecond: 5_100, drainPerSecond: 5_000, drainEtaSeconds: 3 };
    r.dropped = { overflow: 0, expired: 0, total: 0 };
    r.commands = { pending: 2 };
    const text = formatEdgeStatus(r);
    expect(text).toContain('connected for 42s');
    expect(text).not.toContain('last error');
    expect(text).toContain('forwarded 5,100/s · draining 5,000/s, empty in ~3s');
    expect(text).toMatch(/^dropped {3}none$/m);
    expect(text).toMatch(/^commands {2}2 pending$/m);
  });

  it('says the buffer is empty rather than listing zeros, and when it keeps pace without shrinking', () => {
    const r = sampleReport();
    r.buffer = { ...r.buffer, events: 0, bytes: 0, usedRatio: 0, oldestAgeSeconds: null };
    expect(formatEdgeStatus(r)).toMatch(/^buffer {4}empty · /m);
    expect(formatEdgeStatus(r)).toContain('nothing to drain');
    r.buffer.events = 3;
    r.rates = { acceptedPerSecond: 40, forwardedPerSecond: 40, drainPerSecond: 0, drainEtaSeconds: null };
    expect(formatEdgeStatus(r)).toContain('accepted 40/s · forwarded 40/s · keeping pace, backlog not shrinking');
  });
});

describe('duration and bytes', () => {
  it('write times the way an operator reads them', () => {
    expect([0, 0.44, 9.96, 12, 185, 7_384, 604_800 + 3_600].map(duration)).toEqual(['0s', '0.4s', '10s', '12s', '3m 05s', '2h 03m', '7d 01h']);
  });

  it('write sizes in binary units', () => {
    expect([0, 1023, 1024, 1536, 10 * 1024 * 1024, 3 * 1024 ** 3].map(bytes)).toEqual(['0 B', '1023 B', '1.0 KiB', '1.5 KiB', '10 MiB', '3.0 GiB']);
  });
});

describe('parseEdgeStatusReport', () => {
  it('accepts a report and names the first field that is wrong', () => {
    expect(parseEdgeStatusReport(sampleReport())).toEqual(sampleReport());
    expect(() => parseEdgeStatusReport({ ...sampleReport(), edgeId: 7 })).toThrow('field "edgeId" is not a string');
    expect(() => parseEdgeStatusReport({ ...sampleReport(), link: { ...sampleReport().link, state: 'up' } })).toThrow(/field "link.state" is not one of connecting/);
    expect(() => parseEdgeStatusReport({ status: 'ok', lastOffset: 3 })).toThrow('field "edgeId" is not a string');
    expect(() => parseEdgeStatusReport([])).toThrow('field "(body)" is not a JSON object');
  });
});

describe('tributary status', () => {
  let server: RunningHttpServer;
  const report = sampleReport();
  let requests = 0;

  beforeAll(async () => {
    // Real HTTP: an edge's endpoint, a cloud's health, and the wrong things people point the command at.
    const app = new Hono();
    app.get('/edge/v1/status', (c) => {
      requests++;
      return c.json(report);
    });
    app.get('/cloud/healthz', (c) => c.json({ status: 'ok', lastOffset: 1_234, edges: 2 }));
    app.get('/broken/v1/status', (c) => c.json({ error: { code: 'ERR_INTERNAL', message: 'GET /v1/status failed: disk gone' } }, 500));
    app.get('/html/v1/status', (c) => c.html('<html>router admin</html>'));
    app.get('/other/v1/status', (c) => c.json({ status: 'ok', lastOffset: 3 }));
    server = await startHttpServer(app);
  });

  afterAll(() => server.close());

  it('prints the table for an edge', async () => {
    const c = capture();
    expect(await main(['--edge', `${server.url}/edge`], c.io)).toBe(0);
    expect(c.out()).toContain('edge plant-7 · tributary 0.1.0');
    expect(c.out()).toContain('12,345 events');
    expect(c.err()).toBe('');
  });

  it('prints the raw report with --json, and accepts the full status URL or no scheme', async () => {
    for (const url of [`${server.url}/edge`, `${server.url}/edge/v1/status`, `${server.url.slice('http://'.length)}/edge/`]) {
      const c = capture();
      expect(await main(['--edge', url, '--json'], c.io)).toBe(0);
      expect(JSON.parse(c.out())).toEqual(report);
    }
  });

  it('adds the cloud health with --cloud, or shows only the cloud when no edge is given', async () => {
    const both = capture();
    expect(await main(['--edge', `${server.url}/edge`, '--cloud', `${server.url}/cloud`], both.io)).toBe(0);
    expect(both.out()).toContain('edge plant-7');
    expect(both.out()).toMatch(/^cloud {5}ok · http:\/\/127\.0\.0\.1:\d+\/cloud · 2 edges connected · last offset 1,234$/m);
    const cloudOnly = capture();
    expect(await main(['--cloud', `${server.url}/cloud`, '--json'], cloudOnly.io)).toBe(0);
    expect(JSON.parse(cloudOnly.out())).toEqual({ cloud: { status: 'ok', lastOffset: 1_234, edges: 2 } });
  });

  it('refreshes with --watch until stopped, a JSON line per refresh', async () => {
    const stop = new AbortController();
    const c = capture(stop.signal);
    const before = requests;
    const done = main(['--edge', `${server.url}/edge`, '--json', '--watch', '0.01'], c.io);
    while (c.writes.length < 3) await new Promise((r) => setTimeout(r, 5));
    stop.abort();
    expect(await done).toBe(0);
    expect(requests - before).toBeGreaterThanOrEqual(3);
    for (const line of c.out().trimEnd().split('\n')) expect(JSON.parse(line).edgeId).toBe('plant-7');
  });

  it('keeps watching through errors, reporting each on stderr', async () => {
    const stop = new AbortController();
    const c = capture(stop.signal);
    const done = main(['--edge', `${server.url}/broken`, '--watch', '0.01'], c.io);
    while (c.err().split('\n').length < 3) await new Promise((r) => setTimeout(r, 5));
    stop.abort();
    expect(await done).toBe(0);
    expect(c.err()).toContain('answered 500 Internal Server Error: GET /v1/status failed: disk gone (retrying every 0.01 s)');
  });

  it('says in one line that nothing listens at an unreachable URL, and exits with 1', async () => {
    const port = await freePort();
    const c = capture();
    expect(await main(['--edge', `http://127.0.0.1:${port}`], c.io)).toBe(1);
    expect(c.err()).toBe(`tributary: cannot reach the edge at http://127.0.0.1:${port}/v1/status: connection refused; is it running with its status endpoint on (--http-port)?\n`);
    expect(c.out()).toBe('');
  });

  it('exits with 1 and says why when the endpoint answers with an error or is not a Tributary edge', async () => {
    const cases: [string, RegExp][] = [
      ['/broken', /answered 500 Internal Server Error: GET \/v1\/status failed: disk gone\n$/],
      ['/missing', /answered 404 Not Found; is this the edge's HTTP port\?\n$/],
      ['/html', /did not answer with JSON: it is not a Tributary edge \("<html>router admin<\/html>"\)\n$/],
      ['/other', /is not a Tributary edge's status endpoint \(field "edgeId" is not a string\); give the edge's --http-port URL\n$/],
    ];
    for (const [path, message] of cases) {
      const c = capture();
      expect(await main(['--edge', `${server.url}${path}`], c.io)).toBe(1);
      expect(c.err()).toMatch(/^tributary: [^\n]+\n$/);
      expect(c.err()).toMatch(message);
    }
  });

  it('refuses flags it cannot use with exit status 2', async () => {
    const cases: [string[], string][] = [
      [['--edge', 'mqtt://127.0.0.1:1883'], 'flag --edge takes an http:// or https:// URL (the node\'s HTTP port, not its MQTT port), got "mqtt://127.0.0.1:1883"'],
      [['--edge', 'http://'], 'flag --edge takes an http:// or https:// URL such as http://127.0.0.1:8081, got "http://"'],
      [['--watch', '0'], 'flag --watch takes a number of seconds greater than 0, got 0'],
      [['--watch', 'often'], 'flag --watch takes a number, got "often"'],
      [['--edg', 'x'], 'unknown flag --edg for "tributary status"'],
      [['http://127.0.0.1:8081'], 'unexpected argument "http://127.0.0.1:8081"; give the edge as --edge URL'],
    ];
    for (const [argv, message] of cases) {
      const c = capture();
      expect(await main(argv, c.io)).toBe(2);
      expect(c.err()).toContain(`tributary: ${message}`);
    }
  });

  it('prints its help with every flag', async () => {
    const c = capture();
    expect(await main(['--help'], c.io)).toBe(0);
    for (const flag of ['--edge URL', '--cloud URL', '--json', '--watch SECONDS', '--timeout SECONDS']) expect(c.out()).toContain(flag);
  });
});
