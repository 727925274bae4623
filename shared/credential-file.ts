/**
 * A small JSON file of credentials, `{ "version": 1, "entries": { "<id>": {...} } }`, shared by a running node
 * (which reads it) and the `tributary devices|edges|tokens` commands (which change it).
 *
 * Writes are atomic (a temp file in the same directory, fsync, rename, fsync of the directory), so a node that
 * re-reads the file, or a crash halfway, never sees half a file; the file is mode 0600 and a directory created
 * for it 0700. A running node notices changes with `reloadIfChanged()`: one `stat` at most once a second, and a
 * re-read only when the inode, size, mtime or ctime moved (every write is a rename, so it brings a new inode).
 *
 * Two commands changing the same file at the same instant may lose one change (each re-reads the file just before
 * it writes, so the window is a few milliseconds); nothing guards against that, as it needs two operators at once.
 */
import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import process from 'node:process';
import { ConfigError, errorMessage } from './errors.ts';
import type { Logger } from './logger.ts';

export const CREDENTIAL_FILE_VERSION = 1;
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

export interface CredentialFileOptions<T> {
  /**
   * Checks one entry as read from the file and returns it typed; throws an Error whose message says what is
   * wrong (the file and the entry's id are added). Default: entries are taken as they are.
   */
  parseEntry?: (id: string, raw: unknown) => T;
  /** `reloadIfChanged()` stats the file at most once per this many ms (default 1000) unless forced. */
  minCheckIntervalMs?: number;
  /** Default `Date.now`. */
  clock?: () => number;
}

export class CredentialFile<T> {
  /** The file's absolute path. */
  readonly path: string;
  readonly #parseEntry: (id: string, raw: unknown) => T;
  readonly #minCheckIntervalMs: number;
  readonly #clock: () => number;
  #entries = new Map<string, T>();
  #signature = '';
  #checkedAt = Number.NEGATIVE_INFINITY;
  #looseMode: number | null = null;
  /** Why the file as it is now (its signature) could not be read; forced reloads report it again. */
  #failure: ConfigError | null = null;
  /** Changes and reloads run one at a time. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(path: string, options: CredentialFileOptions<T>) {
    this.path = resolve(path);
    this.#parseEntry = options.parseEntry ?? ((_id, raw) => raw as T);
    this.#minCheckIntervalMs = options.minCheckIntervalMs ?? 1000;
    this.#clock = options.clock ?? Date.now;
  }

  /** Reads the file; a missing file is an empty one (it is created by the first change). */
  static async open<T>(path: string, options: CredentialFileOptions<T> = {}): Promise<CredentialFile<T>> {
    const file = new CredentialFile<T>(path, options);
    await file.reloadIfChanged({ force: true });
    return file;
  }

  /**
   * The permission bits of the file when it was last read, if users other than its owner may read or write it
   * (e.g. 0o644); null when it is 0600 or stricter, or missing. The next write makes it 0600.
   */
  get looseMode(): number | null {
    return this.#looseMode;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(id: string): T | undefined {
    return this.#entries.get(id);
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }

  entries(): IterableIterator<[string, T]> {
    return this.#entries.entries();
  }

  /**
   * The entries as they are now, as a map that never changes (a reload or a change makes a new one): costs
   * nothing, so a caller can compare before and after a reload.
   */
  snapshot(): ReadonlyMap<string, T> {
    return this.#entries;
  }

  async set(id: string, value: T): Promise<void> {
    await this.update((entries) => void entries.set(id, value));
  }

  async delete(id: string): Promise<boolean> {
    return this.update((entries) => entries.delete(id));
  }

  /**
   * Applies `change` to the entries as they are on disk now (the file is re-read first, so a change made by
   * someone else since this object read it is kept) and writes the file once. `change` runs before anything is
   * written; if it throws, nothing is.
   */
  update<R>(change: (entries: Map<string, T>) => R): Promise<R> {
    return this.#serialized(async () => {
      await this.#reload(true);
      const next = new Map(this.#entries);
      const result = change(next);
      const sorted = [...next.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const text = JSON.stringify({ version: CREDENTIAL_FILE_VERSION, entries: Object.fromEntries(sorted) }, null, 2) + '\n';
      await writeFileAtomic(this.path, text);
      this.#entries = next;
      this.#looseMode = null;
      this.#failure = null;
      this.#signature = signatureOf(await stat(this.path));
      this.#checkedAt = this.#clock();
      return result;
    });
  }

  /**
   * Re-reads the file if it changed since it was last read (or written by this object). Stats it at most once a
   * second unless `force`. Returns whether the entries were re-read. A file that became unreadable or invalid
   * throws a ConfigError and leaves the entries as they were; it is not re-read until it changes again.
   */
  reloadIfChanged(options: { force?: boolean } = {}): Promise<boolean> {
    const force = options.force === true;
    if (!force && this.#clock() - this.#checkedAt < this.#minCheckIntervalMs) return Promise.resolve(false);
    return this.#serialized(() => this.#reload(force));
  }

  async #reload(force: boolean): Promise<boolean> {
    if (!force && this.#clock() - this.#checkedAt < this.#minCheckIntervalMs) return false;
    this.#checkedAt = this.#clock();
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(this.path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw this.#ioError('cannot read', err);
      this.#failure = null;
      if (this.#signature === 'missing') return false;
      this.#signature = 'missing';
      this.#entries = new Map();
      this.#looseMode = null;
      return true;
    }
    try {
      const stats = await handle.stat();
      const signature = signatureOf(stats);
      if (signature === this.#signature) {
        if (force && this.#failure) throw this.#failure;
        return false;
      }
      // Remember the signature before parsing: an invalid file is reported once, not on every check.
      this.#signature = signature;
      this.#failure = null;
      try {
        this.#entries = this.#parse(await handle.readFile('utf8'));
      } catch (err) {
        this.#failure = err instanceof ConfigError ? err : this.#ioError('cannot read', err);
        throw this.#failure;
      }
      this.#looseMode = (stats.mode & 0o077) !== 0 ? stats.mode & 0o777 : null;
      return true;
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw this.#ioError('cannot read', err);
    } finally {
      await handle.close();
    }
  }

  #parse(text: string): Map<string, T> {
    if (text.trim() === '') return new Map();
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new ConfigError(`not valid JSON (${(err as Error).message}); restore it from a backup or remove it and add the credentials again`, { file: this.path }, { cause: err });
    }
    const { version, entries } = (doc ?? {}) as { version?: unknown; entries?: unknown };
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || typeof entries !== 'object' || entries === null || Array.isArray(entries)) {
      throw new ConfigError(`not a credentials file: expected {"version": ${CREDENTIAL_FILE_VERSION}, "entries": {...}}`, { file: this.path });
    }
    if (version !== CREDENTIAL_FILE_VERSION) {
      throw new ConfigError(`version ${JSON.stringify(version)} is not supported (this tributary reads version ${CREDENTIAL_FILE_VERSION}); was the file written by a newer tributary?`, { file: this.path });
    }
    const parsed = new Map<string, T>();
    for (const [id, raw] of Object.entries(entries)) {
      try {
        parsed.set(id, this.#parseEntry(id, raw));
      } catch (err) {
        throw new ConfigError(`entry "${id}": ${(err as Error).message}`, { file: this.path }, { cause: err });
      }
    }
    return parsed;
  }

  #ioError(what: string, err: unknown): ConfigError {
    return new ConfigError(`${what} the file: ${ioReason(err)}`, { file: this.path }, { cause: err });
  }

  #serialized<R>(task: () => Promise<R>): Promise<R> {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}

/**
 * Writes `data` to `path` atomically with mode 0600 (default): temp file, fsync, rename, fsync of the directory.
 * The directory is created (0700) if missing. When the file exists and belongs to another user (a root operator
 * changing the file of a node that runs as its own user), its owner is kept where the process may do so.
 * Throws a ConfigError naming the file.
 */
export async function writeFileAtomic(path: string, data: string, options: { mode?: number } = {}): Promise<void> {
  const mode = options.mode ?? FILE_MODE;
  const dir = dirname(path);
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    const previous = await stat(path).catch(() => undefined);
    const handle = await open(temp, 'wx', mode);
    try {
      await handle.chmod(mode); // open's mode passes through the umask
      if (previous && typeof process.getuid === 'function' && previous.uid !== process.getuid()) {
        await handle.chown(previous.uid, previous.gid).catch(() => undefined);
      }
      await handle.writeFile(data, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw new ConfigError(`cannot write the file: ${ioReason(err)}`, { file: path }, { cause: err });
  }
  // The rename is durable once the directory is synced; not every platform (or runtime) can open a directory.
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Best effort: the data itself is synced.
  }
}

function signatureOf(stats: Stats): string {
  return `${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;
}

function ioReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied (run the command as the user the node runs as, or with sudo)';
  if (code === 'ENOTDIR') return 'a part of the path is not a directory';
  if (code === 'EISDIR') return 'it is a directory';
  if (code === 'ENOSPC') return 'no space left on the device';
  if (code === 'EROFS') return 'the file system is read-only';
  return (err as Error).message;
}

/**
 * The common part of the classes over one credentials file (device credentials, edge credentials, API tokens):
 * where the file is, a warning when others may read it, and reloading it on change without ever failing the
 * node (a file that became invalid is logged and the entries stay as they were).
 */
export abstract class CredentialStore<T> {
  protected readonly file: CredentialFile<T>;
  protected readonly logger: Logger;
  /** What the file holds, for log lines: "device credentials". */
  readonly #what: string;

  protected constructor(file: CredentialFile<T>, logger: Logger, what: string) {
    this.file = file;
    this.logger = logger;
    this.#what = what;
    if (file.looseMode !== null) {
      logger.warn(`the ${what} file may be read or written by other users; make it private (chmod 600)`, { file: file.path, mode: file.looseMode.toString(8) });
    }
  }

  /** The file's absolute path. */
  get path(): string {
    return this.file.path;
  }

  /** The file's permission bits if others than its owner may read or write it, else null (see CredentialFile). */
  get looseMode(): number | null {
    return this.file.looseMode;
  }

  get size(): number {
    return this.file.size;
  }

  /** Re-reads the file if it changed; returns the entries as they were before, or undefined when nothing was re-read. */
  protected async reload(options: { force?: boolean }): Promise<ReadonlyMap<string, T> | undefined> {
    const before = this.file.snapshot();
    try {
      return (await this.file.reloadIfChanged(options)) ? before : undefined;
    } catch (err) {
      this.logger.error(`cannot re-read the ${this.#what} file; they stay as they were until it is fixed`, { file: this.file.path, err: errorMessage(err) });
      return undefined;
    }
  }
}
