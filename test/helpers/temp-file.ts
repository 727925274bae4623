import { join } from 'node:path';
import { afterAll } from 'vitest';
import { tempDir } from './temp-dir.ts';

/**
 * For a suite that wants a new file in each test: returns a function that names a file `name` in a directory of
 * its own (not made yet), a new one each call, all under one temp dir that is removed after the suite.
 */
export function freshFiles(prefix: string, name: string): () => string {
  const dir = tempDir(prefix);
  afterAll(() => dir.remove());
  let counter = 0;
  return () => join(dir.path, String(++counter), name);
}
