/**
 * A record of acknowledged messages: one line `deviceId seq` per PUBACK, appended to a file. Fault tests read it
 * after killing the edge to know which messages the edge promised to keep. Lines are written as they come (the
 * write stream batches what queues up behind a write in progress); there is no fsync, and the rest is flushed on
 * `close`.
 */
import { closeSync, createWriteStream, openSync } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { ConfigError, errorMessage } from '../shared/errors.ts';

export interface AckFile {
  readonly path: string;
  write(deviceId: string, seq: number): void;
  /** Flushes what is buffered and closes the file. */
  close(): Promise<void>;
}

/**
 * Opens `path` for appending (creating it). A file that cannot be opened is a ConfigError, reported before any
 * device connects; a later write error goes to `onError`.
 */
export function openAckFile(path: string, onError: (err: Error) => void): AckFile {
  try {
    closeSync(openSync(path, 'a'));
  } catch (err) {
    throw new ConfigError(`cannot open the ack file: ${errorMessage(err)}`, { file: path }, { cause: err });
  }
  const stream: WriteStream = createWriteStream(path, { flags: 'a' });
  let failed = false;
  stream.on('error', (err) => {
    if (failed) return;
    failed = true;
    onError(err);
  });
  return {
    path,
    write(deviceId, seq) {
      if (!failed) stream.write(`${deviceId} ${seq}\n`);
    },
    close() {
      return new Promise((resolve) => {
        if (stream.closed) return resolve();
        // 'close' follows both a finished flush and an error.
        stream.once('close', () => resolve());
        stream.end();
      });
    },
  };
}
