// A fresh directory under the OS temp dir for a test, and its removal.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function makeTempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-'));
}

export function removeTempDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
