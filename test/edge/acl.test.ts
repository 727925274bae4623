import { describe, expect, it } from 'vitest';
import type { Client, PublishPacket, Subscription } from 'aedes';
import { Acl } from '../../edge/acl.ts';
import { edgeConfigSchema } from '../../edge/config.ts';
import { parseConfig } from '../../shared/config.ts';
import { ConfigError } from '../../shared/errors.ts';
import { Logger } from '../../shared/logger.ts';
import { Metrics } from '../../shared/metrics.ts';

function setup(overrides: Record<string, unknown> = {}) {
  const lines: Record<string, unknown>[] = [];
  const logger = new Logger({ level: 'debug', sink: { write: (line) => void lines.push(JSON.parse(line)) } });
  const metrics = new Metrics();
  const config = parseConfig(edgeConfigSchema, overrides);
  const acl = new Acl({ config, deviceOf: (client) => client.id, metrics, logger });
  return { acl, metrics, lines };
}

/** The one field of a client the ACL reads (through deviceOf) and logs: its id. */
const client = (id: string) => ({ id, conn: { remoteAddress: '192.0.2.7' } }) as unknown as Client;
const publish = (topic: string) => ({ cmd: 'publish', topic, payload: Buffer.from('1'), qos: 1, retain: false, dup: false, messageId: 1 }) as PublishPacket;

function tryPublish(acl: Acl, deviceId: string, topic: string): { allowed: boolean; error?: Error | null } {
  let error: Error | null | undefined;
  const allowed = acl.allowPublish(client(deviceId), publish(topic), (err) => (error = err));
  return { allowed, error };
}

function subscribe(acl: Acl, deviceId: string, topic: string): boolean {
  let granted: Subscription | null | undefined;
  acl.authorizeSubscribe(client(deviceId), { topic, qos: 1 }, (err, sub) => {
    expect(err).toBeNull();
    granted = sub;
  });
  return granted !== null && granted !== undefined;
}

describe('Acl', () => {
  it('lets a device publish to its own ingest topics and command replies, and nothing else', () => {
    const { acl, metrics } = setup();
    for (const topic of ['telemetry/dev-1/temperature', 'events/dev-1/door', 'commands/dev-1/replies/c-42']) {
      expect([topic, tryPublish(acl, 'dev-1', topic)]).toEqual([topic, { allowed: true }]);
    }
    for (const topic of ['telemetry/dev-2/temperature', 'telemetry/dev-1', 'telemetry/dev-1/a/b', 'commands/dev-1', 'commands/dev-2/replies/c-1', 'other/topic', '$SYS/x', 'telemetry/dev-10/t']) {
      const { allowed, error } = tryPublish(acl, 'dev-1', topic);
      expect([topic, allowed]).toEqual([topic, false]);
      expect(error?.message).toContain(`"${topic}"`);
    }
    expect(metrics.byLabel('tributary_edge_acl_denied_total', 'action')).toEqual({ publish: 8, subscribe: 0 });
  });

  it('keeps the answer for a topic it allowed, and still refuses the ones it did not', () => {
    const { acl } = setup();
    for (let i = 0; i < 3; i++) {
      expect(tryPublish(acl, 'dev-1', 'telemetry/dev-1/t').allowed).toBe(true);
      expect(tryPublish(acl, 'dev-2', 'telemetry/dev-1/t').allowed).toBe(false);
    }
    // More topics than the cache holds: every answer stays right.
    for (let i = 0; i < 600; i++) expect(tryPublish(acl, 'dev-1', `telemetry/dev-1/m${i}`).allowed).toBe(true);
    expect(tryPublish(acl, 'dev-1', 'telemetry/dev-2/m1').allowed).toBe(false);
  });

  it('follows ingest.topics and commands.replyTopic from the config', () => {
    const { acl } = setup({ ingest: { topics: [{ topic: 'site/{site}/{deviceId}/{metric}', type: 'x.{metric}' }] }, commands: { replyTopic: 'r/{commandId}/{deviceId}' } });
    expect(tryPublish(acl, 'd', 'site/north/d/temp').allowed).toBe(true);
    expect(tryPublish(acl, 'd', 'r/c-1/d').allowed).toBe(true);
    expect(tryPublish(acl, 'd', 'telemetry/d/temp').allowed).toBe(false);
    expect(tryPublish(acl, 'd', 'site/north/e/temp').allowed).toBe(false);
  });

  it('lets a device subscribe to its own command topic, and to no filter that reaches further', () => {
    const { acl, metrics } = setup();
    expect(subscribe(acl, 'dev-1', 'commands/dev-1')).toBe(true);
    for (const filter of ['commands/dev-2', 'commands/+', 'commands/#', '#', '+/dev-1', 'commands/dev-1/#', 'telemetry/dev-1/+', '$SYS/#', '$SYS/broker/clients']) {
      expect([filter, subscribe(acl, 'dev-1', filter)]).toEqual([filter, false]);
    }
    expect(metrics.byLabel('tributary_edge_acl_denied_total', 'action')).toEqual({ publish: 0, subscribe: 9 });
  });

  it('adds auth.acl grants to the devices they name, with {deviceId} replaced', () => {
    const { acl } = setup({
      auth: {
        acl: [
          { devices: 'gateway-*', publish: ['telemetry/+/#'], subscribe: ['commands/+'] },
          { devices: 'monitor', subscribe: ['$SYS/#'] },
          { devices: '*', publish: ['status/{deviceId}'], subscribe: ['broadcast/#'] },
        ],
      },
    });
    expect(tryPublish(acl, 'gateway-3', 'telemetry/child-9/temperature').allowed).toBe(true);
    expect(tryPublish(acl, 'gateway-3', 'telemetry/child-9/a/b').allowed).toBe(true);
    expect(tryPublish(acl, 'sensor-1', 'telemetry/child-9/temperature').allowed).toBe(false);
    expect(subscribe(acl, 'gateway-3', 'commands/+')).toBe(true);
    expect(subscribe(acl, 'gateway-3', 'commands/child-9')).toBe(true);
    expect(subscribe(acl, 'gateway-3', 'commands/#')).toBe(false);
    expect(subscribe(acl, 'monitor', '$SYS/broker/+')).toBe(true);
    expect(subscribe(acl, 'gateway-3', '$SYS/#')).toBe(false);
    expect(tryPublish(acl, 'sensor-1', 'status/sensor-1').allowed).toBe(true);
    expect(tryPublish(acl, 'sensor-1', 'status/sensor-2').allowed).toBe(false);
    expect(subscribe(acl, 'sensor-1', 'broadcast/firmware')).toBe(true);
    expect(acl.grantsOf('sensor-1')).toEqual({
      publish: ['telemetry/sensor-1/+', 'events/sensor-1/+', 'commands/sensor-1/replies/+', 'status/sensor-1'],
      subscribe: ['commands/sensor-1', 'broadcast/#'],
    });
  });

  it('never lets a wildcard grant reach "$" topics unless the grant names them', () => {
    const { acl } = setup({ auth: { acl: [{ devices: '*', publish: ['#'], subscribe: ['#'] }] } });
    expect(tryPublish(acl, 'd', 'anything/at/all').allowed).toBe(true);
    expect(tryPublish(acl, 'd', '$SYS/x').allowed).toBe(false);
    expect(subscribe(acl, 'd', '#')).toBe(true);
    expect(subscribe(acl, 'd', '$SYS/#')).toBe(false);
  });

  it('refuses a malformed grant at start-up, naming its place in the config', () => {
    expect(() => setup({ auth: { acl: [{ devices: '*', subscribe: ['ok/+', 'a/#/b'] }] } })).toThrow(ConfigError);
    expect(() => setup({ auth: { acl: [{ devices: '*', subscribe: ['ok/+', 'a/#/b'] }] } })).toThrow('auth.acl[0].subscribe[1]');
  });

  it('logs a refusal with the client, its address, the topic and what it may use', () => {
    const { acl, lines } = setup();
    tryPublish(acl, 'dev-1', 'telemetry/dev-2/t');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', clientId: 'dev-1', address: '192.0.2.7', action: 'publish', topic: 'telemetry/dev-2/t', allowed: ['telemetry/dev-1/+', 'events/dev-1/+', 'commands/dev-1/replies/+'] });
    // A flood of refusals from one client costs a few lines, and every one is counted.
    for (let i = 0; i < 100; i++) subscribe(acl, 'dev-1', '#');
    expect(lines.length).toBeLessThan(10);
  });
});
