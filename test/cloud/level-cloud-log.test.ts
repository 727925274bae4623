import { describe, expect, it } from 'vitest';
import { LevelCloudLog } from '../../cloud/level-cloud-log.ts';
import type { CloudLog } from '../../cloud/cloud-log.ts';
import { metaKey, seqKey } from '../../shared/append-log.ts';
import { LevelStore } from '../../shared/level-store.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { batch, cloudLogContract, HIGH, LOW, NORMAL } from './cloud-log.contract.ts';

cloudLogContract('LevelCloudLog', async () => {
  const dir = tempDir('tributary-cloud-log-');
  const opened: CloudLog[] = [];
  const open = async (): Promise<CloudLog> => {
    const log = await LevelCloudLog.open({ path: dir.path, durability: 'crash-safe' });
    opened.push(log);
    return log;
  };
  return {
    log: await open(),
    reopen: open,
    async cleanup() {
      // Closing twice is allowed, so every instance the test opened is closed without bookkeeping.
      for (const log of opened) await log.close();
      dir.remove();
    },
  };
});

describe('LevelCloudLog', () => {
  it('keeps the high-water mark a cloud log stored before lanes as the normal lane mark', async () => {
    const dir = tempDir('tributary-cloud-log-');
    try {
      // What a cloud node from before lanes wrote for an edge that had sent events 1-42.
      const store = await LevelStore.open(dir.path, { durability: 'crash-safe' });
      await store.writeAsync([[metaKey('hwm/edge-1'), seqKey(0, 42)]]);
      await store.close();

      const log = await LevelCloudLog.open({ path: dir.path, durability: 'crash-safe' });
      try {
        expect([await log.highWaterMark('edge-1', HIGH), await log.highWaterMark('edge-1', NORMAL), await log.highWaterMark('edge-1', LOW)]).toEqual([0, 42, 0]);
        expect(await log.commitBatch('edge-1', ...batch([41, 42, 43]))).toEqual({ appended: 1, duplicates: 2 });
        expect(await log.commitBatch('edge-1', ...batch([1, 2], undefined, HIGH))).toEqual({ appended: 2, duplicates: 0 });
      } finally {
        await log.close();
      }
    } finally {
      dir.remove();
    }
  });
});
