/**
 * `tributary devices|edges|tokens` as an operator runs them: the built CLI in a child process (and the TypeScript
 * source under Deno), against real files, checked with the same classes the nodes use. Error messages and help
 * texts, many short runs, go through the same command functions in this process (`inProcess`), to keep the file fast.
 */
import { spawn } from 'node:child_process';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiTokens } from '../../cloud/api-tokens.ts';
import { EdgeCredentials } from '../../cloud/edge-credentials.ts';
import { main as edgesMain } from '../../cloud/edges-command.ts';
import { main as tokensMain } from '../../cloud/tokens-command.ts';
import { DeviceCredentials } from '../../edge/device-credentials.ts';
import { main as devicesMain } from '../../edge/devices-command.ts';
import type { Runtime } from '../helpers/node-process.ts';
import { commandFor } from '../helpers/node-process.ts';
import { tempDir } from '../helpers/temp-dir.ts';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], options: { stdin?: string; runtime?: Runtime; cwd?: string } = {}): Promise<Result> {
  const { command, args: prefix } = commandFor(options.runtime ?? 'node');
  const child = spawn(command, [...prefix, ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: options.cwd });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(options.stdin ?? '');
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** `tributary <args>` without a process: the command's `main` with captured output. */
async function inProcess(args: string[], stdin = ''): Promise<Result> {
  const mains: Record<string, typeof devicesMain> = { devices: devicesMain, edges: edgesMain, tokens: tokensMain };
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    stdin: (async function* () {
      yield stdin;
    })(),
  };
  const code = await mains[args[0]](args.slice(1), io);
  return { code, stdout, stderr };
}

function json(result: Result): Record<string, unknown> {
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

describe('tributary devices', () => {
  const dir = tempDir('tributary-cli-devices-');
  afterAll(() => dir.remove());

  it('adds devices with generated passwords that the edge accepts, lists them without secrets, and removes them', async () => {
    const data = `${dir.path}/edge-data`;
    const added = json(await run(['devices', 'add', 'sensor-1', 'sensor-2', '--data-dir', data, '--json']));
    const file = `${data}/devices.json`;
    expect(added.file).toBe(file);
    const devices = added.devices as { deviceId: string; password: string; replaced: boolean }[];
    expect(devices.map((d) => d.deviceId)).toEqual(['sensor-1', 'sensor-2']);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const edge = await DeviceCredentials.open(file);
    expect(await edge.check('sensor-1', devices[0].password)).toBe('ok');
    expect(await edge.check('sensor-2', devices[0].password)).toBe('wrong-password');

    const text = await run(['devices', 'list', '--data-dir', data]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`${file}: 2 devices`);
    expect(text.stdout).toMatch(/sensor-1\s+\d{4}-\d\d-\d\dT/);
    const listed = json(await run(['devices', 'list', '--data-dir', data, '--json']));
    expect((listed.devices as { deviceId: string }[]).map((d) => d.deviceId)).toEqual(['sensor-1', 'sensor-2']);
    for (const out of [text.stdout, JSON.stringify(listed), readFileSync(file, 'utf8')]) {
      for (const d of devices) expect(out).not.toContain(d.password);
    }

    const removed = await run(['devices', 'remove', 'sensor-1', '--data-dir', data]);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain(`${file}: removed 1 device: sensor-1`);
    await edge.refresh({ force: true });
    expect(await edge.check('sensor-1', devices[0].password)).toBe('unknown-device');
    expect(edge.list().map((d) => d.deviceId)).toEqual(['sensor-2']);
    const missing = await run(['devices', 'remove', 'sensor-1', '--data-dir', data]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`tributary: no device sensor-1 in ${file}`);
  });

  it('prints a generated password once in its human output, and takes passwords from stdin without printing them', async () => {
    const file = `${dir.path}/stdin/devices.json`;
    const human = await run(['devices', 'add', 'pump-1', '--credentials', file]);
    expect(human.code).toBe(0);
    const password = /pump-1\s+([A-Za-z0-9_-]{32})/.exec(human.stdout)![1];
    expect(human.stdout).toContain('shown only this once');
    expect(await (await DeviceCredentials.open(file)).check('pump-1', password)).toBe('ok');

    const fromStdin = await run(['devices', 'add', 'pump-2', 'pump-3', '--password-stdin', '--credentials', file], { stdin: 'first password\r\nsecond password\n' });
    expect(fromStdin.code, fromStdin.stderr).toBe(0);
    expect(fromStdin.stdout).not.toContain('first password');
    const creds = await DeviceCredentials.open(file);
    expect(await creds.check('pump-2', 'first password')).toBe('ok');
    expect(await creds.check('pump-3', 'second password')).toBe('ok');

    const tooFew = await run(['devices', 'add', 'pump-4', 'pump-5', '--password-stdin', '--credentials', file], { stdin: 'only one password\n' });
    expect(tooFew.code).toBe(2);
    expect(tooFew.stderr).toContain('tributary: --password-stdin needs 2 passwords, one per line in the order of the devices, on stdin; got 1 line');
    const short = await run(['devices', 'add', 'pump-4', '--password-stdin', '--credentials', file], { stdin: 'abc\n' });
    expect(short.code).toBe(2);
    expect(short.stderr).toMatch(/password for device pump-4 is too short/);
    expect(short.stderr).not.toContain('abc');
  });

  it('refuses bad input with a precise message and exit status 2, changing nothing', async () => {
    const data = `${dir.path}/errors`;
    json(await run(['devices', 'add', 'sensor-1', '--data-dir', data, '--json']));
    const before = readFileSync(`${data}/devices.json`, 'utf8');
    const cases: [string[], string][] = [
      [['devices', 'add', 'telemetry/#', '--data-dir', data], 'tributary: invalid device id "telemetry/#": a device id is 1-128 letters, digits, "-", "_", ".", ":" or "@" (no "/", "+" or "#": they would break topic ACLs)'],
      [['devices', 'add', 'sensor-1', '--data-dir', data], `tributary: device sensor-1 already exists in ${data}/devices.json; add --replace to give it a new password`],
      [['devices', 'add', 'sensor-2', 'sensor-2', '--data-dir', data], 'tributary: deviceId "sensor-2" is named twice'],
      [['devices', 'add', '--data-dir', data], 'tributary: name at least one deviceId: tributary devices add <deviceId>...'],
      [['devices', 'add', 'x', '--colour', 'red'], 'tributary: unknown flag --colour for "tributary devices add"; see "tributary devices add --help"'],
      [['devices', 'grant', 'x'], 'tributary: unknown devices command "grant"; the commands are add, remove, list'],
      [['devices', '--data-dir', data, 'list'], 'give the command first, then its flags: tributary devices <add|remove|list> [flags]'],
      [['devices', 'list', '--config', `${dir.path}/nope.yaml`], `tributary: ${dir.path}/nope.yaml: cannot read config file: the file does not exist`],
    ];
    // Two through the real command line (the dispatcher passes status and message through), the rest in-process.
    const results = await Promise.all(cases.map(([args], i) => (i < 2 ? run(args) : inProcess(args))));
    results.forEach((result, i) => {
      expect(result.code, cases[i][0].join(' ')).toBe(2);
      expect(result.stderr).toContain(cases[i][1]);
    });
    expect(readFileSync(`${data}/devices.json`, 'utf8')).toBe(before);
    const replaced = json(await run(['devices', 'add', 'sensor-1', '--replace', '--data-dir', data, '--json']));
    expect(replaced.devices).toEqual([{ deviceId: 'sensor-1', password: expect.any(String), replaced: true }]);
  });

  it("finds the edge's file as the edge does: auth.credentialsFile in the config, else <dataDir>/devices.json, else .data/<edgeId>", async () => {
    const config = `${dir.path}/edge.yaml`;
    writeFileSync(config, `edgeId: plant-9\nauth:\n  credentialsFile: ${dir.path}/from-config.json\n`);
    expect(json(await run(['devices', 'add', 'a1', '--config', config, '--json'])).file).toBe(`${dir.path}/from-config.json`);
    writeFileSync(config, `edgeId: plant-9\ndataDir: ${dir.path}/plant-9-data\n`);
    expect(json(await run(['devices', 'list', '--config', config, '--json'])).file).toBe(`${dir.path}/plant-9-data/devices.json`);
    writeFileSync(config, 'edgeId: plant-9\n');
    expect(json(await run(['devices', 'list', '--config', config, '--json'], { cwd: dir.path })).file).toBe(`${dir.path}/.data/plant-9/devices.json`);
    const badConfig = await run(['devices', 'list', '--edge-id', 'bad/id']);
    expect(badConfig.code).toBe(2);
    expect(badConfig.stderr).toContain('flag --edge-id: must be 1-64 letters');
  });

  it('warns once when others may read the file, and a change makes it private', async () => {
    const file = `${dir.path}/loose/devices.json`;
    json(await run(['devices', 'add', 'sensor-1', '--credentials', file, '--json']));
    chmodSync(file, 0o644);
    const list = await run(['devices', 'list', '--credentials', file]);
    expect(list.code).toBe(0);
    expect(list.stderr.match(/warning/g)).toHaveLength(1);
    expect(list.stderr).toContain(`tributary: warning: ${file} holds credentials but other users may read or change it (mode 644); make it private: chmod 600 ${file}`);
    const add = await run(['devices', 'add', 'sensor-2', '--credentials', file]);
    expect(add.code).toBe(0);
    expect(add.stderr).toContain('this command rewrites it with mode 600');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect((await run(['devices', 'list', '--credentials', file])).stderr).toBe('');
  });
});

describe('tributary edges', () => {
  const dir = tempDir('tributary-cli-edges-');
  afterAll(() => dir.remove());

  it('makes a token the cloud accepts, writes it to a private file, rotates it, lists without it, and removes the edge', async () => {
    const config = `${dir.path}/cloud.yaml`;
    writeFileSync(config, `dataDir: ${dir.path}/cloud\n`);
    const tokenFile = `${dir.path}/secrets/plant-7.token`;
    const added = await run(['edges', 'add', 'plant-7', '--config', config, '--token-file', tokenFile]);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain(`${dir.path}/cloud/edges.json: added edge plant-7`);
    const token = readFileSync(tokenFile, 'utf8').trim();
    expect(added.stdout).not.toContain(token);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const cloud = await EdgeCredentials.open(`${dir.path}/cloud/edges.json`);
    expect(cloud.check('plant-7', token)).toBe('ok');

    const rotated = json(await run(['edges', 'add', 'plant-7', '--config', config, '--json']));
    const [entry] = rotated.edges as { edgeId: string; tokenId: string; token: string; replaced: boolean }[];
    expect(entry.replaced).toBe(true);
    await cloud.refresh({ force: true });
    expect(cloud.check('plant-7', token)).toBe('wrong-token');
    expect(cloud.check('plant-7', entry.token)).toBe('ok');

    const list = await run(['edges', 'list', '--config', config]);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(entry.tokenId);
    expect(list.stdout).not.toContain(entry.token.slice(-43));
    expect((json(await run(['edges', 'list', '--config', config, '--json'])).edges as unknown[]).length).toBe(1);

    expect((await run(['edges', 'remove', 'plant-7', '--config', config])).code).toBe(0);
    await cloud.refresh({ force: true });
    expect(cloud.check('plant-7', entry.token)).toBe('unknown-edge');
  });

  it('refuses bad edge ids and a token file for several edges', async () => {
    const [badId, twoFiles] = await Promise.all([
      run(['edges', 'add', 'plant/7', '--data-dir', dir.path]),
      inProcess(['edges', 'add', 'a', 'b', '--token-file', `${dir.path}/t`, '--data-dir', dir.path]),
    ]);
    expect(badId.code).toBe(2);
    expect(badId.stderr).toContain('tributary: invalid edge id "plant/7": an edge id is 1-64 letters, digits, "-", "_" or ".", starting with a letter or digit');
    expect(twoFiles.code).toBe(2);
    expect(twoFiles.stderr).toContain('--token-file takes the token of one edge');
  });
});

describe('tributary tokens', () => {
  const dir = tempDir('tributary-cli-tokens-');
  afterAll(() => dir.remove());

  it('makes a scoped, expiring token the API accepts, lists it by id only, and removes it by name', async () => {
    const data = `${dir.path}/cloud`;
    const added = json(await run(['tokens', 'add', 'dashboard', '--scopes', 'events:read,commands:send', '--expires', '30d', '--data-dir', data, '--json']));
    expect(added).toMatchObject({ file: `${data}/tokens.json`, name: 'dashboard', scopes: ['events:read', 'commands:send'] });
    const expiresIn = Date.parse(added.expiresAt as string) - Date.now();
    expect(expiresIn).toBeGreaterThan(29 * 86_400_000);
    expect(expiresIn).toBeLessThanOrEqual(30 * 86_400_000);
    const token = added.token as string;
    const api = await ApiTokens.open(`${data}/tokens.json`);
    expect(api.check(token)).toEqual({ ok: true, tokenId: added.id, name: 'dashboard', scopes: ['events:read', 'commands:send'] });

    const list = await run(['tokens', 'list', '--data-dir', data]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`${added.id as string}\\s+dashboard\\s+events:read,commands:send`));
    const listed = json(await run(['tokens', 'list', '--data-dir', data, '--json']));
    for (const out of [list.stdout, JSON.stringify(listed)]) expect(out).not.toContain(token.slice(-43));

    const removed = await run(['tokens', 'remove', 'dashboard', '--data-dir', data]);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain('removed 1 token (dashboard)');
    await api.refresh({ force: true });
    expect(api.check(token)).toMatchObject({ ok: false, reason: 'revoked' });
  });

  it('names the valid scopes, the accepted expiry forms and the name rule when they are wrong', async () => {
    const data = `${dir.path}/errors`;
    const cases: [string[], string][] = [
      [['tokens', 'add', 'x', '--scopes', 'events:read,everything'], 'tributary: unknown scope "everything"; the scopes are events:read, subscriptions:manage, commands:send, admin (admin implies all)'],
      [['tokens', 'add', 'x'], 'tributary: flag --scopes is required: one or more of events:read, subscriptions:manage, commands:send, admin'],
      [['tokens', 'add', 'x', '--scopes', 'admin', '--expires', 'soon'], 'tributary: flag --expires takes a duration such as 30d, 12h or 90m, or an ISO date such as 2026-01-31, got "soon"'],
      [['tokens', 'add', 'my token', '--scopes', 'admin'], 'tributary: invalid token name "my token": a token name is 1-64 letters, digits, "-", "_" or "."'],
      [['tokens', 'remove', 'ghost'], 'tributary: no token with id or name ghost'],
    ];
    const results = await Promise.all(cases.map(([args], i) => (i === 0 ? run : inProcess)([...args, '--data-dir', data])));
    results.forEach((result, i) => {
      expect(result.code, cases[i][0].join(' ')).toBe(i === cases.length - 1 ? 1 : 2);
      expect(result.stderr).toContain(cases[i][1]);
    });
  });
});

describe('help', () => {
  it('explains every credentials command and each of its verbs, with examples', async () => {
    const runs: [string[], string][] = [];
    for (const [command, verbs] of Object.entries({ devices: ['add', 'remove', 'list'], edges: ['add', 'remove', 'list'], tokens: ['add', 'remove', 'list'] })) {
      runs.push([[command, '--help'], `Usage: tributary ${command} <add|remove|list>`]);
      for (const verb of verbs) runs.push([[command, verb, '--help'], `Usage: tributary ${command} ${verb}`]);
    }
    const results = await Promise.all(runs.map(([args], i) => (i === 1 ? run : inProcess)(args)));
    results.forEach((result, i) => {
      expect(result.code, runs[i][0].join(' ')).toBe(0);
      expect(result.stdout).toContain(runs[i][1]);
      expect(result.stdout).toContain('Examples:');
    });
    const top = await run(['--help']);
    expect(top.stdout).toMatch(/devices\s+Add, remove and list the devices/);
    expect(top.stdout).toMatch(/edges\s+Add, remove and list the edges/);
    expect(top.stdout).toMatch(/tokens\s+Add, remove and list bearer tokens/);
  });
});

describe('on Deno', () => {
  const dir = tempDir('tributary-cli-deno-');
  afterAll(() => dir.remove());

  it('adds a device and a token from the TypeScript source, which Node then reads', async () => {
    const device = json(await run(['devices', 'add', 'sensor-deno', '--data-dir', `${dir.path}/edge`, '--json'], { runtime: 'deno' }));
    const [{ password }] = device.devices as { password: string }[];
    expect(await (await DeviceCredentials.open(`${dir.path}/edge/devices.json`)).check('sensor-deno', password)).toBe('ok');
    const token = json(await run(['tokens', 'add', 'deno', '--scopes', 'events:read', '--data-dir', `${dir.path}/cloud`, '--json'], { runtime: 'deno' }));
    expect((await ApiTokens.open(`${dir.path}/cloud/tokens.json`)).check(token.token as string).ok).toBe(true);
    const bad = await run(['tokens', 'add', 'deno', '--scopes', 'root', '--data-dir', `${dir.path}/cloud`], { runtime: 'deno' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('tributary: unknown scope "root"');
  });
});
