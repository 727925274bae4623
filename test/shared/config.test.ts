import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConfig, parseConfig } from '../../shared/config.ts';
import { ConfigError } from '../../shared/errors.ts';
import { tempDir } from '../helpers/temp-dir.ts';

const schema = z.strictObject({
  edgeId: z.string().min(1),
  mqtt: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(1).max(65_535).default(1883),
    })
    .prefault({}),
  buffer: z
    .strictObject({
      maxBytes: z.number().positive().default(64 * 1024 * 1024),
      fsync: z.boolean().default(true),
    })
    .prefault({}),
});

describe('loadConfig', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dir: string;
  beforeEach(() => {
    tmp = tempDir();
    dir = tmp.path;
  });
  afterEach(() => tmp.remove());

  function file(name: string, text: string): string {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  }

  /** Runs `loadConfig` and returns the ConfigError it throws. */
  async function failure(options: Parameters<typeof loadConfig>[1]): Promise<ConfigError> {
    try {
      await loadConfig(schema, options);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe('ERR_CONFIG');
      return err as ConfigError;
    }
    throw new Error('expected loadConfig to fail');
  }

  it('loads a YAML file and fills in the defaults', async () => {
    const f = file('edge.yaml', 'edgeId: gw-1\nmqtt:\n  host: broker.local\n');
    expect(await loadConfig(schema, { file: f })).toEqual({
      edgeId: 'gw-1',
      mqtt: { host: 'broker.local', port: 1883 },
      buffer: { maxBytes: 64 * 1024 * 1024, fsync: true },
    });
  });

  it('loads a .yml file and a JSON file the same way', async () => {
    const yml = file('edge.yml', 'edgeId: gw-2\nbuffer: { fsync: false }\n');
    const json = file('edge.json', JSON.stringify({ edgeId: 'gw-2', buffer: { fsync: false } }));
    const fromYml = await loadConfig(schema, { file: yml });
    expect(fromYml.buffer.fsync).toBe(false);
    expect(await loadConfig(schema, { file: json })).toEqual(fromYml);
  });

  it('loads an empty file as if it set nothing', async () => {
    const f = file('empty.yaml', '# nothing here\n');
    expect((await loadConfig(schema, { file: f, overrides: { edgeId: 'e' } })).mqtt.port).toBe(1883);
  });

  it('builds the configuration from flags alone when there is no file', async () => {
    const cfg = await loadConfig(schema, { overrides: { edgeId: 'flag-edge', 'mqtt.port': 2000 } });
    expect(cfg.edgeId).toBe('flag-edge');
    expect(cfg.mqtt).toEqual({ host: '127.0.0.1', port: 2000 });
  });

  it('lets overrides replace file values by dotted key and keeps their siblings', async () => {
    const f = file('edge.yaml', 'edgeId: gw-1\nmqtt:\n  host: broker.local\n  port: 1884\n');
    const cfg = await loadConfig(schema, { file: f, overrides: { 'mqtt.port': 2883, edgeId: 'gw-9', 'buffer.fsync': false, 'mqtt.host': undefined } });
    expect(cfg).toEqual({ edgeId: 'gw-9', mqtt: { host: 'broker.local', port: 2883 }, buffer: { maxBytes: 64 * 1024 * 1024, fsync: false } });
  });

  it('replaces a scalar in the file when an override needs an object there', async () => {
    const f = file('edge.yaml', 'edgeId: gw-1\nmqtt: 7\n');
    const cfg = await loadConfig(schema, { file: f, overrides: { 'mqtt.port': 1999 } });
    expect(cfg.mqtt).toEqual({ host: '127.0.0.1', port: 1999 });
  });

  it('names the file, the key path and what is wrong', async () => {
    const f = file('edge.yaml', 'edgeId: gw-1\nmqtt:\n  port: "eighty"\n');
    const err = await failure({ file: f });
    expect(err.file).toBe(f);
    expect(err.key).toBe('mqtt.port');
    expect(err.message.startsWith(`${f}: mqtt.port: invalid configuration`)).toBe(true);
    expect(err.message).toContain('key "mqtt.port"');
    expect(err.message).toMatch(/expected number/i);
  });

  it('lists every problem, not only the first', async () => {
    const f = file('edge.json', JSON.stringify({ edgeId: '', mqtt: { port: 0 }, buffer: { maxBytes: -1 } }));
    const err = await failure({ file: f });
    expect(err.message).toContain('key "edgeId"');
    expect(err.message).toContain('key "mqtt.port"');
    expect(err.message).toContain('key "buffer.maxBytes"');
    expect(err.message.split('\n')).toHaveLength(4);
  });

  it('names the flag when a bad value came from an override', async () => {
    const f = file('edge.yaml', 'edgeId: gw-1\n');
    const err = await failure({ file: f, overrides: { 'mqtt.port': 70_000 }, flagOf: { 'mqtt.port': 'port', edgeId: 'edge-id' } });
    expect(err.message).toContain('flag --port');
    expect(err.message).not.toContain('key "mqtt.port"');
    expect(err.message).toMatch(/65535/);
  });

  it('names the key, not the flag, when the bad value came from the file', async () => {
    const f = file('edge.yaml', 'edgeId: gw-1\nmqtt:\n  port: 70000\n');
    const err = await failure({ file: f, flagOf: { 'mqtt.port': 'port' } });
    expect(err.message).toContain('key "mqtt.port"');
    expect(err.message).not.toContain('--port');
  });

  it('reports unknown keys with their names', async () => {
    const f = file('edge.yaml', 'edgeId: gw-1\ncolour: blue\nmqtt:\n  prot: 1883\n');
    const err = await failure({ file: f });
    expect(err.message).toContain('top level');
    expect(err.message).toContain('colour');
    expect(err.message).toContain('key "mqtt"');
    expect(err.message).toContain('prot');
  });

  it('reports a missing required key', async () => {
    const err = await failure({ file: file('edge.yaml', 'mqtt:\n  port: 1\n') });
    expect(err.message).toContain('key "edgeId"');
  });

  it('says when the file does not exist', async () => {
    const missing = path.join(dir, 'nope.yaml');
    const err = await failure({ file: missing });
    expect(err.message).toBe(`${missing}: cannot read config file: the file does not exist`);
    expect(err.file).toBe(missing);
    expect((err.cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('reports the line and column of invalid YAML', async () => {
    const misindented = await failure({ file: file('edge.yaml', 'edgeId: gw-1\nmqtt:\n  port: 1\n bad: 2\n') });
    expect(misindented.message).toContain('not valid YAML at line 4, column 1: ');
    expect(misindented.message.split('\n')).toHaveLength(1);
    expect(misindented.cause).toBeInstanceOf(Error);
    const duplicate = await failure({ file: file('dup.yaml', 'edgeId: gw-1\nedgeId: gw-2\n') });
    expect(duplicate.message).toContain('not valid YAML at line 2, column 1: ');
    expect(duplicate.message).toMatch(/unique/);
  });

  it('reports invalid JSON in a .json file', async () => {
    const err = await failure({ file: file('edge.json', '{"edgeId": "gw-1",}') });
    expect(err.message).toMatch(/^.*edge\.json: not valid JSON: /);
  });

  it('rejects a file whose top level is a list or a scalar', async () => {
    for (const [name, text] of [['list.yaml', '- edgeId: gw-1\n'], ['scalar.yaml', 'just text\n'], ['list.json', '[1]']]) {
      const err = await failure({ file: file(name, text) });
      expect(err.message).toContain('the file must hold a mapping of settings at its top level');
    }
  });
});

describe('parseConfig', () => {
  it('returns the parsed value of a good object', () => {
    expect(parseConfig(schema, { edgeId: 'e' }).mqtt.port).toBe(1883);
  });

  it('says there was no file when the problem is in defaults and flags', () => {
    let caught: unknown;
    try {
      parseConfig(schema, {});
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).message).toContain('(no config file; defaults and flags)');
    expect((caught as ConfigError).key).toBe('edgeId');
  });
});
