/**
 * The devices that may connect to an edge with a password: `<dataDir>/devices.json` (or `auth.credentialsFile`),
 * one entry per device id with a scrypt hash of its password (shared/password-hash.ts). The edge reads it
 * (`check` on every CONNECT, `refresh` to see changes), `tributary devices add|remove|list` writes it
 * (edge/devices-command.ts).
 *
 * A check costs one scrypt (about 50 ms of one thread-pool thread), so successful checks are cached: a reconnect
 * storm of known devices after a gateway reboot costs no scrypt. The cache holds, per device id, an HMAC-SHA256 of
 * the password under a random key of this process (never the password), and the stored hash it was checked
 * against, so a changed or removed entry is never answered from the cache.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { CredentialFile, CredentialStore } from '../shared/credential-file.ts';
import { UsageError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { silentLogger } from '../shared/logger.ts';
import type { ScryptParams } from '../shared/password-hash.ts';
import { hashPassword, parsePasswordHash, verifyPassword } from '../shared/password-hash.ts';
import type { EdgeConfig } from './config.ts';

export type DeviceCheck = 'ok' | 'unknown-device' | 'wrong-password';

/**
 * Device ids: the simulator's and the edge's rule. They become MQTT client ids, usernames and topic levels
 * (`telemetry/{deviceId}/...`), so the topic wildcards `+` and `#` and the level separator `/` are out: a device
 * named `a/#` would be granted other devices' topics by the ACL.
 */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9_.:@-]{1,128}$/;
export const DEVICE_ID_RULE = '1-128 letters, digits, "-", "_", ".", ":" or "@" (no "/", "+" or "#": they would break topic ACLs)';

/** What is wrong with `deviceId`, or undefined when it is a valid device id. */
export function deviceIdProblem(deviceId: string): string | undefined {
  if (DEVICE_ID_PATTERN.test(deviceId)) return undefined;
  return `invalid device id ${JSON.stringify(deviceId)}: a device id is ${DEVICE_ID_RULE}`;
}

/** Shortest password `add` takes from the user; generated ones are 32 characters. */
export const MIN_PASSWORD_LENGTH = 8;
/** MQTT 3.1.1 carries the password as binary data with a 16-bit length [MQTT-3.1.3.5]. */
const MAX_PASSWORD_BYTES = 65_535;

/** Where the edge and `tributary devices` find the credentials: `auth.credentialsFile`, else `<dataDir>/devices.json`. */
export function defaultCredentialsFile(config: EdgeConfig, dataDir: string): string {
  return config.auth.credentialsFile ?? join(dataDir, 'devices.json');
}

interface DeviceEntry {
  passwordHash: string;
  createdAt: string;
}

export interface DeviceCredentialsOptions {
  logger?: Logger;
  /** scrypt parameters of new passwords (default ln=14, r=8, p=1); tests use cheaper ones. */
  hashParams?: ScryptParams;
  /** Most devices whose last successful check is cached (default 100,000, about 10 MiB). */
  cacheSize?: number;
  /** For the file's once-a-second change check. */
  clock?: () => number;
}

interface CachedCheck {
  passwordHash: string;
  mac: Buffer;
}

export class DeviceCredentials extends CredentialStore<DeviceEntry> {
  readonly #hashParams: ScryptParams;
  readonly #cacheSize: number;
  readonly #cacheKey = randomBytes(32);
  readonly #cache = new Map<string, CachedCheck>();
  /** Verifications running now, so that many connects of one device with one password cost one scrypt. */
  readonly #verifying = new Map<string, Promise<boolean>>();
  #dummyHash: Promise<string> | undefined;
  #scryptChecks = 0;

  private constructor(file: CredentialFile<DeviceEntry>, options: DeviceCredentialsOptions) {
    super(file, options.logger ?? silentLogger, 'device credentials');
    this.#hashParams = options.hashParams ?? {};
    this.#cacheSize = options.cacheSize ?? 100_000;
  }

  static async open(path: string, options: DeviceCredentialsOptions = {}): Promise<DeviceCredentials> {
    return new DeviceCredentials(await CredentialFile.open<DeviceEntry>(path, { parseEntry: parseDeviceEntry, clock: options.clock }), options);
  }

  /** How many checks ran scrypt (those not answered from the cache), for metrics and tests. */
  get scryptChecks(): number {
    return this.#scryptChecks;
  }

  /**
   * Re-reads the file when it changed (cheap: at most one stat a second; call it on every CONNECT). Returns the
   * ids that were removed, and those whose password was replaced: sessions that authenticated with a password
   * that no longer holds should end. A file that became invalid is logged and the devices stay as they were.
   */
  async refresh(options: { force?: boolean } = {}): Promise<string[]> {
    const before = await this.reload(options);
    if (!before) return [];
    const gone = [...before].filter(([id, entry]) => this.file.get(id)?.passwordHash !== entry.passwordHash).map(([id]) => id);
    for (const [id, cached] of this.#cache) {
      if (this.file.get(id)?.passwordHash !== cached.passwordHash) this.#cache.delete(id);
    }
    if (gone.length) this.logger.info('device credentials removed or replaced', { devices: gone.length, file: this.file.path });
    return gone;
  }

  has(deviceId: string): boolean {
    return this.file.has(deviceId);
  }

  /**
   * Checks a device's password. An unknown device costs the same scrypt as a wrong password (against a dummy
   * hash), so which ids exist cannot be learnt by timing. A missing password is checked as an empty one.
   */
  async check(deviceId: string, password: string | Buffer | undefined): Promise<DeviceCheck> {
    const bytes = password === undefined ? Buffer.alloc(0) : typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
    const entry = this.file.get(deviceId);
    if (!entry) {
      this.#scryptChecks++;
      await verifyPassword(bytes, await this.#dummy());
      return 'unknown-device';
    }
    const mac = createHmac('sha256', this.#cacheKey).update(bytes).digest();
    const cached = this.#cache.get(deviceId);
    if (cached && cached.passwordHash === entry.passwordHash && timingSafeEqual(cached.mac, mac)) {
      this.#cache.delete(deviceId); // most recently used goes last
      this.#cache.set(deviceId, cached);
      return 'ok';
    }
    const key = `${deviceId}\0${entry.passwordHash}\0${mac.toString('base64')}`;
    let verifying = this.#verifying.get(key);
    if (!verifying) {
      this.#scryptChecks++;
      verifying = verifyPassword(bytes, entry.passwordHash).finally(() => this.#verifying.delete(key));
      this.#verifying.set(key, verifying);
    }
    const ok = await verifying;
    // The entry may have been replaced or removed while scrypt ran; answer for the file as it is now.
    if (this.file.get(deviceId)?.passwordHash !== entry.passwordHash) return this.check(deviceId, password);
    if (!ok) return 'wrong-password';
    this.#cache.delete(deviceId);
    this.#cache.set(deviceId, { passwordHash: entry.passwordHash, mac });
    if (this.#cache.size > this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
    return 'ok';
  }

  /**
   * Adds a device, or gives an existing one a new password. Without `password`, one is generated (24 random
   * bytes, base64url: 32 characters). The password is returned, to be shown once; only its hash is stored.
   */
  async add(deviceId: string, password?: string): Promise<{ password: string; generated: boolean }> {
    const [added] = await this.addMany([{ deviceId, password }]);
    return { password: added.password, generated: added.generated };
  }

  /** `add` for several devices, with one write of the file. Throws a UsageError (nothing written) for a bad id or password. */
  async addMany(devices: readonly { deviceId: string; password?: string }[]): Promise<{ deviceId: string; password: string; generated: boolean; replaced: boolean }[]> {
    for (const { deviceId, password } of devices) {
      const problem = deviceIdProblem(deviceId);
      if (problem) throw new UsageError(problem);
      if (password !== undefined) checkPassword(deviceId, password);
    }
    const prepared = await Promise.all(
      devices.map(async ({ deviceId, password }) => {
        const generated = password === undefined;
        const secret = password ?? randomBytes(24).toString('base64url');
        return { deviceId, password: secret, generated, passwordHash: await hashPassword(secret, this.#hashParams) };
      }),
    );
    const createdAt = new Date().toISOString();
    return this.file.update((entries) =>
      prepared.map(({ deviceId, password, generated, passwordHash }) => {
        const replaced = entries.has(deviceId);
        entries.set(deviceId, { passwordHash, createdAt });
        return { deviceId, password, generated, replaced };
      }),
    );
  }

  async remove(deviceId: string): Promise<boolean> {
    const [removed] = await this.removeMany([deviceId]);
    return removed;
  }

  /** Removes devices with one write of the file; for each id, whether it was there. */
  async removeMany(deviceIds: readonly string[]): Promise<boolean[]> {
    const removed = await this.file.update((entries) => deviceIds.map((id) => entries.delete(id)));
    for (const id of deviceIds) this.#cache.delete(id);
    return removed;
  }

  list(): { deviceId: string; createdAt: string }[] {
    return [...this.file.entries()].map(([deviceId, entry]) => ({ deviceId, createdAt: entry.createdAt })).sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
  }

  /** A hash of a random password with this edge's parameters, for checks of unknown devices to take as long. */
  #dummy(): Promise<string> {
    this.#dummyHash ??= hashPassword(randomBytes(24).toString('base64url'), this.#hashParams);
    return this.#dummyHash;
  }
}

function checkPassword(deviceId: string, password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) {
    throw new UsageError(`the password for device ${deviceId} is too short (${password.length} characters): use at least ${MIN_PASSWORD_LENGTH}, or let tributary generate one`);
  }
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) {
    throw new UsageError(`the password for device ${deviceId} is longer than MQTT allows (${MAX_PASSWORD_BYTES} bytes)`);
  }
}

function parseDeviceEntry(id: string, raw: unknown): DeviceEntry {
  const problem = deviceIdProblem(id);
  if (problem) throw new Error(problem);
  const { passwordHash, createdAt } = (raw ?? {}) as Partial<Record<keyof DeviceEntry, unknown>>;
  if (typeof raw !== 'object' || raw === null || typeof passwordHash !== 'string' || typeof createdAt !== 'string') {
    throw new Error('expected {"passwordHash": "$scrypt$...", "createdAt": "<ISO time>"}');
  }
  try {
    parsePasswordHash(passwordHash);
  } catch (err) {
    throw new Error(`passwordHash: ${(err as Error).message}`, { cause: err });
  }
  return { passwordHash, createdAt };
}
