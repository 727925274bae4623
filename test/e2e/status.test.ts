import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { parseEdgeStatusReport } from '../../shared/edge-status-report.ts';
import { freePort } from '../helpers/free-port.ts';
import type { Runtime } from '../helpers/node-process.ts';
import { commandFor, NodeProcess } from '../helpers/node-process.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const MESSAGES = 12;

/** `tributary status <args>` on `runtime`, to completion. (NodeProcess would add --log-format, which it has not.) */
async function status(runtime: Runtime, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { command, args: prefix } = commandFor(runtime);
  const p = new NodeProcess({ command, args: [...prefix, 'status'] }, args);
  let stdout = '';
  let stderr = '';
  p.child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  p.child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await p.exited;
  return { code, stdout, stderr };
}

for (const runtime of ['node', 'deno'] as Runtime[]) {
  describe(`tributary status against an edge on ${runtime}`, () => {
    const dir = tempDir('tributary-status-');
    let edge: NodeProcess;
    let cloud: NodeProcess | undefined;
    let edgeStatusUrl: string;
    let uplinkPort: number;

    beforeAll(async () => {
      uplinkPort = await freePort(); // no cloud yet: the edge buffers
      edge = new NodeProcess(runtime, [
        'edge', '--edge-id', `status-${runtime}`, '--data-dir', `${dir.path}/edge`, '--port', '0', '--ws-port', '0', '--http-port', '0',
        '--cloud', `mqtt://127.0.0.1:${uplinkPort}`, '--durability', 'crash-safe', '--status-interval', '0', '--allow-anonymous',
      ]);
      const started = await edge.waitForLog('edge node started');
      edgeStatusUrl = String(started.http);
      expect(edgeStatusUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const device = await mqtt.connectAsync(String(started.mqtt), { clientId: 'dev-status', protocolVersion: 4 });
      for (let i = 0; i < MESSAGES; i++) await device.publishAsync('telemetry/dev-status/temperature', JSON.stringify({ celsius: 21, seq: i }), { qos: 1 });
      await device.endAsync();
    }, 60_000);

    afterAll(async () => {
      await edge?.stop();
      await cloud?.stop();
      dir.remove();
    });

    it('prints the buffered backlog, the lane it sits in and the link that is down', async () => {
      const { code, stdout, stderr } = await status(runtime, ['--edge', edgeStatusUrl]);
      expect(stderr).toBe('');
      expect(code).toBe(0);
      expect(stdout).toContain(`edge status-${runtime} · tributary `);
      expect(stdout).toMatch(/^link {6}(connecting|waiting) for /m);
      expect(stdout).toContain(`${MESSAGES} events · `);
      expect(stdout).toMatch(new RegExp(`^ {2}normal +${MESSAGES} +[\\d.]+ (B|KiB) +[\\d.]+s$`, 'm'));
      expect(stdout).toMatch(/^dropped {3}none$/m);
    });

    it('serves the same report as JSON and the node\'s metrics for Prometheus', async () => {
      const { code, stdout } = await status(runtime, ['--edge', edgeStatusUrl, '--json']);
      expect(code).toBe(0);
      const report = parseEdgeStatusReport(JSON.parse(stdout));
      expect(report.buffer).toMatchObject({ events: MESSAGES, durability: 'crash-safe', overflow: 'backpressure' });
      expect(report.counters).toMatchObject({ accepted: MESSAGES, forwarded: 0 });
      const metrics = await fetch(`${edgeStatusUrl}/metrics`);
      expect(metrics.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      const text = await metrics.text();
      expect(text).toContain(`tributary_edge_lane_events{lane="normal"} ${MESSAGES}\n`);
      expect(text).toContain(`tributary_edge_events_accepted_total ${MESSAGES}\n`);
    });

    it('shows the backlog drained once the cloud is up, and the cloud\'s health with --cloud', async () => {
      cloud = new NodeProcess(runtime, ['cloud', '--data-dir', `${dir.path}/cloud`, '--uplink-port', String(uplinkPort), '--http-port', '0', '--durability', 'crash-safe', '--status-interval', '0', '--allow-anonymous']);
      const cloudHttp = String((await cloud.waitForLog('cloud node started')).http);
      const drained = await waitFor('the backlog forwarded', async () => {
        const { stdout } = await status(runtime, ['--edge', edgeStatusUrl, '--json']);
        const report = parseEdgeStatusReport(JSON.parse(stdout));
        return report.counters.forwarded === MESSAGES && report.buffer.events === 0 ? report : undefined;
      }, 30_000, 200);
      expect(drained.link).toMatchObject({ state: 'connected', connects: 1 });
      const { code, stdout } = await status(runtime, ['--edge', edgeStatusUrl, '--cloud', cloudHttp]);
      expect(code).toBe(0);
      expect(stdout).toMatch(/^link {6}connected for /m);
      expect(stdout).toMatch(/^buffer {4}empty · /m);
      expect(stdout).toMatch(new RegExp(`^cloud {5}ok · ${cloudHttp.replace(/\./g, '\\.')} · 1 edge connected · last offset ${MESSAGES}$`, 'm'));
    });

    it('says in one line that nothing answers at a closed port, and exits with 1', async () => {
      const port = await freePort();
      const { code, stdout, stderr } = await status(runtime, ['--edge', `http://127.0.0.1:${port}`]);
      expect(code).toBe(1);
      expect(stdout).toBe('');
      expect(stderr).toBe(`tributary: cannot reach the edge at http://127.0.0.1:${port}/v1/status: connection refused; is it running with its status endpoint on (--http-port)?\n`);
    });

    it('exits with 1 when pointed at a cloud instead of an edge, and with 2 for a bad flag', async () => {
      const cloudHttp = String((await cloud!.waitForLog('cloud node started')).http);
      const wrong = await status(runtime, ['--edge', cloudHttp]);
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/^tributary: http:\/\/127\.0\.0\.1:\d+\/v1\/status answered 404 Not Found: no route for GET \/v1\/status; is this the edge's HTTP port\?\n$/);
      const bad = await status(runtime, ['--watch', '-1']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('flag --watch takes a number of seconds greater than 0');
    });
  });
}
