import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { env, moduleCommand, moduleExtension, runtimeKey, runtimeVersion } from '../../shared/runtime.ts';
import { tempDir } from '../helpers/temp-dir.ts';

describe('runtimeKey and runtimeVersion', () => {
  it('report Node.js, with its version, when the tests run on Node', () => {
    expect(runtimeKey()).toBe('node');
    expect(runtimeVersion()).toBe(`node ${process.versions.node}`);
  });
});

describe('moduleCommand', () => {
  let tmp: ReturnType<typeof tempDir> | undefined;
  let dir: string | undefined;
  afterEach(() => {
    tmp?.remove();
    dir = undefined;
  });

  it('runs a module file with the current Node executable', () => {
    const cmd = moduleCommand(new URL('file:///opt/tributary/dist/edge/main.js'));
    expect(cmd).toEqual({ command: process.execPath, args: ['/opt/tributary/dist/edge/main.js'] });
  });

  it('passes a path that exists on disk even when the directory name has a space', () => {
    tmp = tempDir();
    dir = tmp.path;
    const file = path.join(dir, 'my project', 'main.js');
    fs.mkdirSync(path.dirname(file));
    fs.writeFileSync(file, '');
    const cmd = moduleCommand(pathToFileURL(file));
    expect(cmd.args).toEqual([file]);
    expect(fs.existsSync(cmd.args[0])).toBe(true);
  });
});

describe('moduleExtension', () => {
  it('tells TypeScript source from compiled output by the module URL', () => {
    expect(moduleExtension('file:///repo/shared/cli/tributary.ts')).toBe('.ts');
    expect(moduleExtension('file:///repo/dist/shared/cli/tributary.js')).toBe('.js');
    expect(moduleExtension(import.meta.url)).toBe('.ts');
  });
});

describe('env', () => {
  const name = 'TRIBUTARY_RUNTIME_TEST_VARIABLE';
  afterEach(() => {
    delete process.env[name];
  });

  it('reads the process environment, including variables set after start', () => {
    expect(env[name]).toBeUndefined();
    process.env[name] = 'edge-7';
    expect(env[name]).toBe('edge-7');
    expect(env.PATH).toBe(process.env.PATH);
  });
});
