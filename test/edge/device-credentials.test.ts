import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { edgeConfigSchema } from '../../edge/config.ts';
import { defaultCredentialsFile, DeviceCredentials, deviceIdProblem } from '../../edge/device-credentials.ts';
import { UsageError } from '../../shared/errors.ts';
import { Logger } from '../../shared/logger.ts';
import { freshFiles } from '../helpers/temp-file.ts';

/** Cheap scrypt: these tests are about behaviour, not cost (one test uses the defaults). */
const FAST = { hashParams: { logN: 8 } };

describe('DeviceCredentials', () => {
  const fresh = freshFiles('tributary-devices-', 'devices.json');

  it('adds a device with a generated password that checks, and tells wrong passwords and unknown devices apart', async () => {
    const creds = await DeviceCredentials.open(fresh());
    const { password, generated } = await creds.add('sensor-1');
    expect(generated).toBe(true);
    expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/); // 24 random bytes, base64url
    expect(await creds.check('sensor-1', password)).toBe('ok');
    expect(await creds.check('sensor-1', Buffer.from(password))).toBe('ok');
    expect(await creds.check('sensor-1', password.slice(1))).toBe('wrong-password');
    expect(await creds.check('sensor-1', undefined)).toBe('wrong-password');
    expect(await creds.check('sensor-2', password)).toBe('unknown-device');
    expect(creds.has('sensor-1')).toBe(true);
    expect(creds.size).toBe(1);
    // Stored with the default scrypt parameters, and never in the clear.
    const text = readFileSync(creds.path, 'utf8');
    expect(text).toContain('$scrypt$ln=14,r=8,p=1$');
    expect(text).not.toContain(password);
  });

  it('takes a password given by the user, and refuses one that is too short', async () => {
    const creds = await DeviceCredentials.open(fresh(), FAST);
    expect(await creds.add('pump@plant:7', 'my own secret')).toEqual({ password: 'my own secret', generated: false });
    expect(await creds.check('pump@plant:7', 'my own secret')).toBe('ok');
    await expect(creds.add('pump-2', 'short')).rejects.toThrow(/too short \(5 characters\): use at least 8/);
    expect(creds.has('pump-2')).toBe(false);
  });

  it('refuses device ids that would break topic ACLs or MQTT, saying what a device id may be', async () => {
    const creds = await DeviceCredentials.open(fresh(), FAST);
    for (const id of ['', 'a/b', 'sensor+', '#', 'with space', 'x'.repeat(129), 'é']) {
      const err = await creds.add(id).catch((e: unknown) => e);
      expect(err, id).toBeInstanceOf(UsageError);
      expect((err as Error).message).toContain('1-128 letters, digits, "-", "_", ".", ":" or "@"');
    }
    for (const id of ['a', 'x'.repeat(128), 'urn:dev:mac:0024befffe804ff1', 'pump@plant-1', 'A_b.c-d']) expect(deviceIdProblem(id), id).toBeUndefined();
    expect(creds.size).toBe(0);
  });

  it('lists devices sorted, with when they were added and nothing secret', async () => {
    const creds = await DeviceCredentials.open(fresh(), FAST);
    await creds.addMany([{ deviceId: 'b-device' }, { deviceId: 'a-device', password: 'password-of-a' }]);
    const list = creds.list();
    expect(list.map((d) => d.deviceId)).toEqual(['a-device', 'b-device']);
    expect(Object.keys(list[0]).sort()).toEqual(['createdAt', 'deviceId']);
    expect(Number.isNaN(Date.parse(list[0].createdAt))).toBe(false);
  });

  it('answers a known device with its right password from the cache, and runs scrypt for everything else', async () => {
    const creds = await DeviceCredentials.open(fresh(), FAST);
    const { password } = await creds.add('sensor-1');
    // Many connects of one device at once (a gateway reboot) share one scrypt; later ones cost none.
    const first = await Promise.all(Array.from({ length: 5 }, () => creds.check('sensor-1', password)));
    expect(first).toEqual(Array(5).fill('ok'));
    expect(creds.scryptChecks).toBe(1);
    for (let i = 0; i < 10; i++) expect(await creds.check('sensor-1', password)).toBe('ok');
    expect(creds.scryptChecks).toBe(1);
    // A wrong password and an unknown device both cost one scrypt each time, so neither is faster to probe.
    expect(await creds.check('sensor-1', 'guess-1')).toBe('wrong-password');
    expect(await creds.check('sensor-1', 'guess-1')).toBe('wrong-password');
    expect(await creds.check('nobody', 'guess-1')).toBe('unknown-device');
    expect(await creds.check('nobody', 'guess-1')).toBe('unknown-device');
    expect(creds.scryptChecks).toBe(5);
  });

  it('keeps the cache bounded, forgetting the least recently used device', async () => {
    const creds = await DeviceCredentials.open(fresh(), { ...FAST, cacheSize: 2 });
    const added = await creds.addMany([{ deviceId: 'a' }, { deviceId: 'b' }, { deviceId: 'c' }]);
    const pw = Object.fromEntries(added.map((d) => [d.deviceId, d.password]));
    for (const id of ['a', 'b', 'a', 'c']) expect(await creds.check(id, pw[id])).toBe('ok');
    expect(creds.scryptChecks).toBe(3);
    expect(await creds.check('a', pw.a)).toBe('ok'); // a was used after b, so b was the one forgotten
    expect(creds.scryptChecks).toBe(3);
    expect(await creds.check('b', pw.b)).toBe('ok');
    expect(creds.scryptChecks).toBe(4);
  });

  it('sees devices removed or given a new password by the CLI, and never answers them from the cache', async () => {
    const path = fresh();
    let now = 0;
    const edge = await DeviceCredentials.open(path, { ...FAST, clock: () => now });
    const cli = await DeviceCredentials.open(path, FAST);
    const [a, b] = await cli.addMany([{ deviceId: 'sensor-a' }, { deviceId: 'sensor-b' }, { deviceId: 'sensor-c' }]);
    now += 1000;
    expect(await edge.refresh()).toEqual([]);
    expect(await edge.check('sensor-a', a.password)).toBe('ok');
    expect(await edge.check('sensor-b', b.password)).toBe('ok');

    await cli.remove('sensor-a');
    const rotated = await cli.add('sensor-b');
    expect(await edge.refresh()).toEqual([]); // within a second of the last look: not stat'ed yet
    now += 1000;
    expect((await edge.refresh()).sort()).toEqual(['sensor-a', 'sensor-b']);
    expect(await edge.check('sensor-a', a.password)).toBe('unknown-device');
    expect(await edge.check('sensor-b', b.password)).toBe('wrong-password');
    expect(await edge.check('sensor-b', rotated.password)).toBe('ok');
    expect(edge.has('sensor-c')).toBe(true);
    now += 1000;
    expect(await edge.refresh()).toEqual([]);
  });

  it('keeps the devices it has and logs an error when the file turns invalid', async () => {
    const path = fresh();
    const lines: string[] = [];
    const logger = new Logger({ sink: { write: (line) => void lines.push(line) } });
    const edge = await DeviceCredentials.open(path, { ...FAST, logger });
    const { password } = await edge.add('sensor-1');
    writeFileSync(path, '{"version": 1, "entries": {"sensor-1": {"passwordHash": "plain", "createdAt": "2025-01-01"}}}');
    expect(await edge.refresh({ force: true })).toEqual([]);
    expect(await edge.check('sensor-1', password)).toBe('ok');
    const record = JSON.parse(lines.find((l) => l.includes('cannot re-read'))!);
    expect(record.level).toBe('error');
    expect(record.err).toMatch(/entry "sensor-1": passwordHash: not a scrypt password hash/);
    expect(lines.join('')).not.toContain(password);
  });

  it('refuses to open a file with an invalid entry, naming it', async () => {
    const path = fresh();
    const cli = await DeviceCredentials.open(path, FAST);
    await cli.add('ok-device');
    const doc = JSON.parse(readFileSync(path, 'utf8'));
    doc.entries['bad/device'] = doc.entries['ok-device'];
    writeFileSync(path, JSON.stringify(doc));
    await expect(DeviceCredentials.open(path)).rejects.toThrow(/devices\.json: entry "bad\/device": invalid device id/);
  });

  it('warns when others may read the file', async () => {
    const path = fresh();
    await (await DeviceCredentials.open(path, FAST)).add('sensor-1');
    const { chmodSync } = await import('node:fs');
    chmodSync(path, 0o640);
    const lines: string[] = [];
    const creds = await DeviceCredentials.open(path, { logger: new Logger({ sink: { write: (line) => void lines.push(line) } }) });
    expect(creds.looseMode).toBe(0o640);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ level: 'warn', file: path, mode: '640' });
  });
});

describe('defaultCredentialsFile', () => {
  it('is auth.credentialsFile when set, else devices.json in the data directory', () => {
    expect(defaultCredentialsFile(edgeConfigSchema.parse({}), '.data/edge-1')).toBe('.data/edge-1/devices.json');
    expect(defaultCredentialsFile(edgeConfigSchema.parse({ auth: { credentialsFile: '/etc/tributary/devices.json' } }), '.data/edge-1')).toBe('/etc/tributary/devices.json');
  });
});
