import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cloudConfigSchema } from '../../cloud/config.ts';
import { defaultEdgesFile, EdgeCredentials } from '../../cloud/edge-credentials.ts';
import { generateToken } from '../../shared/access-token.ts';
import { UsageError } from '../../shared/errors.ts';
import { freshFiles } from '../helpers/temp-file.ts';

describe('EdgeCredentials', () => {
  const fresh = freshFiles('tributary-edges-', 'edges.json');

  it("accepts an edge's token and tells unknown edges, malformed and wrong tokens apart", async () => {
    const edges = await EdgeCredentials.open(fresh());
    const { token } = await edges.add('plant-7');
    expect(token).toMatch(/^trb_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(edges.check('plant-7', token)).toBe('ok');
    expect(edges.check('plant-7', Buffer.from(token))).toBe('ok');
    expect(edges.check('plant-8', token)).toBe('unknown-edge');
    expect(edges.check('plant-7', undefined)).toBe('malformed-token');
    expect(edges.check('plant-7', 'hunter2')).toBe('malformed-token');
    expect(edges.check('plant-7', generateToken().token)).toBe('wrong-token');
    // The right id with another secret.
    const id = token.slice(4, 16);
    expect(edges.check('plant-7', `trb_${id}_${generateToken().token.slice(-43)}`)).toBe('wrong-token');
    const text = readFileSync(edges.path, 'utf8');
    expect(text).not.toContain(token.slice(-43));
    expect(text).toContain(id);
  });

  it('gives an edge that has a token a new one, and the old one stops working (rotation)', async () => {
    const edges = await EdgeCredentials.open(fresh());
    const old = await edges.add('plant-7');
    const [rotated] = await edges.addMany(['plant-7']);
    expect(rotated.replaced).toBe(true);
    expect(edges.check('plant-7', old.token)).toBe('wrong-token');
    expect(edges.check('plant-7', rotated.token)).toBe('ok');
    expect(edges.list()).toEqual([{ edgeId: 'plant-7', tokenId: rotated.tokenId, createdAt: expect.any(String) }]);
  });

  it("refuses edge ids that the edge's config would refuse", async () => {
    const edges = await EdgeCredentials.open(fresh());
    for (const id of ['', '-plant', 'plant/7', 'plant 7', 'x'.repeat(65)]) {
      const err = await edges.add(id).catch((e: unknown) => e);
      expect(err, id).toBeInstanceOf(UsageError);
      expect((err as Error).message).toContain('1-64 letters, digits, "-", "_" or ".", starting with a letter or digit');
    }
    await expect(edges.addMany(['plant-1', 'bad/id'])).rejects.toThrow(UsageError);
    expect(edges.size).toBe(0); // nothing of a refused batch is written
  });

  it('sees edges removed or rotated by the CLI and reports them, so their connections can be closed', async () => {
    const path = fresh();
    let now = 0;
    const cloud = await EdgeCredentials.open(path, { clock: () => now });
    const cli = await EdgeCredentials.open(path);
    const [a, , c] = await cli.addMany(['edge-a', 'edge-b', 'edge-c']);
    now += 1000;
    expect(await cloud.refresh()).toEqual([]);
    expect(cloud.check('edge-a', a.token)).toBe('ok');
    expect(await cli.remove('edge-b')).toBe(true);
    expect(await cli.remove('edge-b')).toBe(false);
    await cli.add('edge-c');
    now += 1000;
    expect((await cloud.refresh()).sort()).toEqual(['edge-b', 'edge-c']);
    expect(cloud.check('edge-b', a.token)).toBe('unknown-edge');
    expect(cloud.check('edge-c', c.token)).toBe('wrong-token');
    expect(cloud.check('edge-a', a.token)).toBe('ok');
  });
});

describe('defaultEdgesFile', () => {
  it('is auth.edgesFile when set, else edges.json in the data directory', () => {
    expect(defaultEdgesFile(cloudConfigSchema.parse({}))).toBe('.data/cloud/edges.json');
    expect(defaultEdgesFile(cloudConfigSchema.parse({ dataDir: '/var/lib/t' }))).toBe('/var/lib/t/edges.json');
    expect(defaultEdgesFile(cloudConfigSchema.parse({ auth: { edgesFile: '/etc/t/edges.json' } }))).toBe('/etc/t/edges.json');
  });
});
