import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeProcess } from '../helpers/node-process.ts';
import { tempDir } from '../helpers/temp-dir.ts';

async function run(args: string[]): Promise<{ code: number | null; out: string }> {
  const p = new NodeProcess('node', args);
  const code = await p.exited;
  return { code, out: p.output.join('\n') };
}

describe('the tributary command', () => {
  const dir = tempDir('tributary-cli-');
  afterAll(() => dir.remove());

  it('prints help for itself and for every subcommand', async () => {
    expect((await run(['--help'])).out).toMatch(/Commands:[\s\S]*up[\s\S]*cloud[\s\S]*edge[\s\S]*simulate/);
    for (const sub of ['up', 'cloud', 'edge', 'simulate']) {
      const { code, out } = await run([sub, '--help']);
      expect(code).toBe(0);
      expect(out).toContain(`Usage: tributary ${sub} [flags]`);
      if (sub !== 'up') expect(out).toContain('--config FILE');
    }
  });

  it('names the file, the key and the problem when the config is wrong, and exits with status 2', async () => {
    const file = `${dir.path}/edge.yaml`;
    writeFileSync(file, 'edgeId: plant-1\nmqtt:\n  port: "eighteen"\nuplink:\n  urll: mqtt://x\n');
    const { code, out } = await run(['edge', '--config', file]);
    expect(code).toBe(2);
    expect(out).toContain(file);
    expect(out).toContain('key "mqtt.port"');
    expect(out).toMatch(/expected number/);
    expect(out).toMatch(/urll/);
  });

  it('names the flag when a flag value is wrong', async () => {
    const { code, out } = await run(['cloud', '--durability', 'maybe']);
    expect(code).toBe(2);
    expect(out).toContain('flag --durability');
    const bad = await run(['edge', '--port', 'abc']);
    expect(bad.code).toBe(2);
    expect(bad.out).toContain('flag --port takes a number, got "abc"');
  });

  it('refuses an unknown subcommand with the list of commands', async () => {
    const { code, out } = await run(['fly']);
    expect(code).toBe(2);
    expect(out).toContain('unknown command "fly"');
  });
});
