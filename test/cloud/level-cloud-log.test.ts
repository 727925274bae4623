import { LevelCloudLog } from '../../cloud/level-cloud-log.ts';
import type { CloudLog } from '../../cloud/cloud-log.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { cloudLogContract } from './cloud-log.contract.ts';

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
