import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { CredentialFile, writeFileAtomic } from '../../shared/credential-file.ts';
import { ConfigError } from '../../shared/errors.ts';
import { tempDir } from '../helpers/temp-dir.ts';

interface Entry {
  n: number;
}

function parseEntry(_id: string, raw: unknown): Entry {
  if (typeof (raw as Entry)?.n !== 'number') throw new Error('expected {"n": <number>}');
  return raw as Entry;
}

describe('CredentialFile', () => {
  const dir = tempDir('tributary-credfile-');
  afterAll(() => dir.remove());
  let counter = 0;
  const fresh = (): string => `${dir.path}/case-${++counter}/sub/creds.json`;

  it('treats a missing file as empty and creates it, mode 0600 in a 0700 directory, on the first change', async () => {
    const path = fresh();
    const file = await CredentialFile.open<Entry>(path, { parseEntry });
    expect(file.size).toBe(0);
    expect(file.path).toBe(path);
    await file.set('b', { n: 2 });
    await file.set('a', { n: 1 });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(`${dir.path}/case-${counter}/sub`).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ version: 1, entries: { a: { n: 1 }, b: { n: 2 } } });
    expect(Object.keys(JSON.parse(readFileSync(path, 'utf8')).entries)).toEqual(['a', 'b']);
    const again = await CredentialFile.open<Entry>(path, { parseEntry });
    expect([...again.entries()]).toEqual([
      ['a', { n: 1 }],
      ['b', { n: 2 }],
    ]);
    expect(await again.delete('a')).toBe(true);
    expect(await again.delete('a')).toBe(false);
    expect(again.get('a')).toBeUndefined();
    expect(readdirSync(`${dir.path}/case-${counter}/sub`)).toEqual(['creds.json']); // no temp files left behind
  });

  it('sees changes made by another writer, at most one stat a second unless forced', async () => {
    const path = fresh();
    let now = 1_000_000;
    const reader = await CredentialFile.open<Entry>(path, { parseEntry, clock: () => now });
    const writer = await CredentialFile.open<Entry>(path, { parseEntry });
    await writer.set('x', { n: 1 });
    now += 500;
    expect(await reader.reloadIfChanged()).toBe(false);
    expect(reader.has('x')).toBe(false);
    now += 600;
    expect(await reader.reloadIfChanged()).toBe(true);
    expect(reader.get('x')).toEqual({ n: 1 });
    expect(await reader.reloadIfChanged({ force: true })).toBe(false); // unchanged: not re-read
    await writer.set('x', { n: 2 });
    expect(await reader.reloadIfChanged({ force: true })).toBe(true);
    expect(reader.get('x')).toEqual({ n: 2 });
  });

  it('keeps a change someone else made since it was read, when it writes', async () => {
    const path = fresh();
    const a = await CredentialFile.open<Entry>(path, { parseEntry });
    const b = await CredentialFile.open<Entry>(path, { parseEntry });
    await a.set('from-a', { n: 1 });
    await b.set('from-b', { n: 2 });
    expect(JSON.parse(readFileSync(path, 'utf8')).entries).toEqual({ 'from-a': { n: 1 }, 'from-b': { n: 2 } });
  });

  it('applies concurrent changes of one process one after another, losing none', async () => {
    const path = fresh();
    const file = await CredentialFile.open<Entry>(path, { parseEntry });
    await Promise.all(Array.from({ length: 20 }, (_, i) => file.set(`id-${i}`, { n: i })));
    const reread = await CredentialFile.open<Entry>(path, { parseEntry });
    expect(reread.size).toBe(20);
  });

  it('writes nothing when a change throws', async () => {
    const path = fresh();
    const file = await CredentialFile.open<Entry>(path, { parseEntry });
    await file.set('keep', { n: 1 });
    const before = readFileSync(path, 'utf8');
    await expect(
      file.update((entries) => {
        entries.set('half', { n: 2 });
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    expect(readFileSync(path, 'utf8')).toBe(before);
    expect(file.has('half')).toBe(false);
  });

  it('names the file and says what is wrong with one that cannot be used', async () => {
    const cases: [string, RegExp][] = [
      ['{"version": 1, "entries": {', /not valid JSON/],
      ['[1, 2]', /not a credentials file: expected \{"version": 1, "entries"/],
      ['{"version": 2, "entries": {}}', /version 2 is not supported.*newer tributary/],
      ['{"version": 1, "entries": {"dev-7": {"n": "seven"}}}', /entry "dev-7": expected \{"n": <number>\}/],
    ];
    for (const [text, message] of cases) {
      const path = fresh();
      await writeFileAtomic(path, text);
      const err = await CredentialFile.open<Entry>(path, { parseEntry }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain(path);
      expect((err as Error).message).toMatch(message);
    }
  });

  it('keeps the entries it has when the file turns invalid, reports that once, and reads it again once fixed', async () => {
    const path = fresh();
    const reader = await CredentialFile.open<Entry>(path, { parseEntry });
    const writer = await CredentialFile.open<Entry>(path, { parseEntry });
    await writer.set('a', { n: 1 });
    await reader.reloadIfChanged({ force: true });
    writeFileSync(path, '{ oops');
    await expect(reader.reloadIfChanged({ force: true })).rejects.toThrow(ConfigError);
    expect(reader.get('a')).toEqual({ n: 1 });
    // A change made while the file is broken is refused rather than written over it.
    await expect(reader.set('b', { n: 2 })).rejects.toThrow(/not valid JSON/);
    expect(readFileSync(path, 'utf8')).toBe('{ oops');
    await writeFileAtomic(path, JSON.stringify({ version: 1, entries: { c: { n: 3 } } }));
    expect(await reader.reloadIfChanged({ force: true })).toBe(true);
    expect([...reader.entries()]).toEqual([['c', { n: 3 }]]);
  });

  it('treats a file that was deleted as empty', async () => {
    const path = fresh();
    const file = await CredentialFile.open<Entry>(path, { parseEntry });
    await file.set('a', { n: 1 });
    const reader = await CredentialFile.open<Entry>(path, { parseEntry });
    const { rmSync } = await import('node:fs');
    rmSync(path);
    expect(await reader.reloadIfChanged({ force: true })).toBe(true);
    expect(reader.size).toBe(0);
  });

  it('tells when others may read the file, and makes it 0600 when it writes', async () => {
    const path = fresh();
    await writeFileAtomic(path, JSON.stringify({ version: 1, entries: {} }));
    chmodSync(path, 0o644);
    const file = await CredentialFile.open<Entry>(path, { parseEntry });
    expect(file.looseMode).toBe(0o644);
    await file.set('a', { n: 1 });
    expect(file.looseMode).toBeNull();
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });
});

describe('writeFileAtomic', () => {
  const dir = tempDir('tributary-atomic-');
  afterAll(() => dir.remove());

  it('replaces a file whole with mode 0600 and leaves no temp file', async () => {
    const path = `${dir.path}/new/token`;
    await writeFileAtomic(path, 'one\n');
    await writeFileAtomic(path, 'two\n');
    expect(readFileSync(path, 'utf8')).toBe('two\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(`${dir.path}/new`)).toEqual(['token']);
  });

  it('fails with a ConfigError naming the file when it cannot write', async () => {
    writeFileSync(`${dir.path}/plain-file`, 'x');
    const err = await writeFileAtomic(`${dir.path}/plain-file/token`, 'x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(`${dir.path}/plain-file/token`);
    expect((err as Error).message).toMatch(/not a directory|cannot write/);
  });
});
