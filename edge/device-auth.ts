/**
 * Device identity at the edge: who a connecting client is, and whether it may connect (docs/security.md).
 *
 * A device is the CN of a TLS client certificate the listener verified, or the username of a CONNECT whose
 * password `DeviceCredentials` accepts, or — only with `auth.allowAnonymous` — its client id. With a certificate or
 * credentials the client id must equal the device id: a client id names a session, and a second connection with
 * the same id takes the first one's session over [MQTT-3.1.4-2], so no device may use another's. A device id is
 * therefore always its client id, and the ACL (acl.ts) reads it from there.
 *
 * Refusals answer with the CONNACK return code MQTT 3.1.1 has for them [MQTT-3.2.2-3]: 2 identifier rejected,
 * 3 server unavailable, 4 bad user name or password, 5 not authorized; each is logged (without the password) and
 * counted in `tributary_edge_connections_refused_total{reason}`.
 */
import type { Aedes, AuthenticateError, Client } from 'aedes';
import { errorMessage } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { LogThrottle } from '../shared/log-throttle.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import { verifiedPeerName } from '../shared/tls-config.ts';
import type { EdgeConfig } from './config.ts';
import { defaultCredentialsFile, DeviceCredentials } from './device-credentials.ts';

export interface DeviceAuthOptions {
  config: EdgeConfig;
  /** The edge's data directory (default home of the credentials file). */
  dataDir: string;
  metrics: Metrics;
  logger: Logger;
  /** Path of the config file, to name it in errors. */
  configFile?: string;
  /** Already opened credentials; default: the credentials file of `config`. */
  credentials?: DeviceCredentials;
  /** How often the credentials file is checked for removed devices, to disconnect them. Default 1000 ms. */
  refreshIntervalMs?: number;
}

export const REFUSAL_REASONS = ['bad-credentials', 'unknown-device', 'anonymous', 'client-id', 'certificate', 'too-many-connections'] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** How a connected client proved who it is. */
export type IdentityKind = 'certificate' | 'password' | 'anonymous';

/** The CONNACK return codes of MQTT 3.1.1 §3.2.2.3 that a refusal uses. */
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const BAD_USER_NAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

interface Refusal {
  returnCode: 2 | 3 | 4 | 5;
  reason: RefusalReason;
  /** What was wrong and what to do; sent to nobody but the log (the device sees only the return code). */
  message: string;
}

/** Characters a device id cannot hold: it is one level of the topics its ACL is made of. */
const NOT_A_TOPIC_LEVEL = /[/+#]/;

/** The address a client connected from, without the IPv4-mapped IPv6 prefix; undefined when the transport has none. */
export function remoteAddressOf(client: Client): string | undefined {
  const address = (client.conn as { remoteAddress?: string }).remoteAddress ?? client.req?.socket?.remoteAddress;
  return address?.startsWith('::ffff:') ? address.slice(7) : address;
}

export class DeviceAuth {
  readonly #config: EdgeConfig;
  readonly #credentials: DeviceCredentials;
  readonly #credentialsFile: string;
  readonly #logger: Logger;
  readonly #refused = new Map<RefusalReason, Counter>();
  readonly #refusalLog = new LogThrottle();
  readonly #identities = new WeakMap<Client, IdentityKind>();
  /** Open connections per remote address, counted from CONNECT to the connection's close. */
  readonly #perAddress = new Map<string, number>();
  readonly #refreshIntervalMs: number;
  #refreshing: Promise<void> | null = null;
  #refreshErrorLoggedAt = -Infinity;
  #aedes: Aedes | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;

  private constructor(options: DeviceAuthOptions, credentials: DeviceCredentials, credentialsFile: string) {
    this.#config = options.config;
    this.#credentials = credentials;
    this.#credentialsFile = credentialsFile;
    this.#logger = options.logger;
    this.#refreshIntervalMs = options.refreshIntervalMs ?? 1000;
    for (const reason of REFUSAL_REASONS) {
      this.#refused.set(reason, options.metrics.counter('tributary_edge_connections_refused_total', 'Device connections refused at CONNECT, by reason.', { reason }));
    }
  }

  static async open(options: DeviceAuthOptions): Promise<DeviceAuth> {
    const file = defaultCredentialsFile(options.config, options.dataDir);
    const credentials = options.credentials ?? (await DeviceCredentials.open(file, { logger: options.logger }));
    const auth = new DeviceAuth(options, credentials, file);
    auth.#warnIfOpenOrClosed(options.configFile);
    return auth;
  }

  /** Connections counted for `address` (those that sent CONNECT and are still open). */
  connectionsFrom(address: string): number {
    return this.#perAddress.get(address) ?? 0;
  }

  /** How a connected client proved its identity; undefined before it is authenticated. */
  identityOf(client: Client): IdentityKind | undefined {
    return this.#identities.get(client);
  }

  /** The Aedes `authenticate` hook; runs on every CONNECT. */
  readonly authenticate = (client: Client, username: Readonly<string | undefined>, password: Readonly<Buffer | undefined>, done: (error: AuthenticateError | null, success: boolean | null) => void): void => {
    const address = remoteAddressOf(client);
    const early = this.#admit(client, address) ?? this.#checkClientId(client);
    if (early) {
      this.#refuse(client, address, early, done);
      return;
    }
    this.#identify(client, username, password).then(
      (result) => {
        if (typeof result === 'string') {
          this.#identities.set(client, result);
          done(null, true);
        } else {
          this.#refuse(client, address, result, done);
        }
      },
      (err: unknown) => {
        // Not the device's fault: answer "server unavailable" so it retries, and say why in the log.
        this.#logger.error('could not check a device', { clientId: client.id, address, err });
        done(Object.assign(new Error('server unavailable'), { returnCode: SERVER_UNAVAILABLE as AuthenticateError['returnCode'] }), false);
      },
    );
  };

  /** The device id an authenticated client acts as: its client id (see the module comment). */
  deviceOf(client: Client): string {
    return client.id;
  }

  /** Disconnects devices removed from the credentials file, or given a new password, on this broker (checked every `refreshIntervalMs`). */
  attach(aedes: Aedes): void {
    this.#aedes = aedes;
    this.#timer ??= setInterval(() => void this.#refresh(), this.#refreshIntervalMs);
    this.#timer.unref?.();
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#aedes = null;
  }

  /** Counts the connection against its address; a refusal when the address has too many. */
  #admit(client: Client, address: string | undefined): Refusal | undefined {
    const max = this.#config.limits.maxConnectionsPerIp;
    if (address === undefined || max === 0) return undefined;
    const conn = client.conn;
    if (conn.destroyed) return undefined;
    const open = (this.#perAddress.get(address) ?? 0) + 1;
    this.#perAddress.set(address, open);
    conn.once('close', () => {
      const left = (this.#perAddress.get(address) ?? 1) - 1;
      if (left > 0) this.#perAddress.set(address, left);
      else this.#perAddress.delete(address);
    });
    if (open <= max) return undefined;
    return { returnCode: SERVER_UNAVAILABLE, reason: 'too-many-connections', message: `${address} already has ${max} connections open (limits.maxConnectionsPerIp)` };
  }

  #checkClientId(client: Client): Refusal | undefined {
    const id = client.id;
    // Aedes checks the length only for MQTT 3.1 clients; the limit holds for 3.1.1 as well.
    const max = this.#config.limits.maxClientIdLength;
    if (max > 0 && id.length > max) {
      return { returnCode: IDENTIFIER_REJECTED, reason: 'client-id', message: `client id is ${id.length} characters long; at most ${max} are allowed (limits.maxClientIdLength)` };
    }
    if (NOT_A_TOPIC_LEVEL.test(id)) {
      return { returnCode: IDENTIFIER_REJECTED, reason: 'client-id', message: 'client id contains "/", "+" or "#"; a device id is a level of its topics and cannot' };
    }
    return undefined;
  }

  /** The way the client proved its identity, or why it is refused. */
  async #identify(client: Client, username: string | undefined, password: Buffer | undefined): Promise<IdentityKind | Refusal> {
    await this.#refresh();
    const peer = verifiedPeerName(client.conn);
    if (peer !== undefined) {
      if (username !== undefined && username !== peer) {
        return { returnCode: BAD_USER_NAME_OR_PASSWORD, reason: 'certificate', message: `user name "${username}" is not the device its certificate names ("${peer}"); connect without a user name, or with "${peer}"` };
      }
      if (client.id !== peer) return clientIdMismatch(client.id, peer, 'its certificate names');
      return 'certificate';
    }
    if (this.#config.mqtt.tls?.clientCertificates === 'required') {
      return { returnCode: NOT_AUTHORIZED, reason: 'certificate', message: 'no verified client certificate, and mqtt.tls.clientCertificates is "required": connect over TLS with a certificate signed by mqtt.tls.caFile' };
    }
    if (username !== undefined) {
      // The client id first: a mismatch needs no password check (and no scrypt).
      if (client.id !== username) return clientIdMismatch(client.id, username, 'its user name names');
      const check = await this.#credentials.check(username, password);
      if (check === 'ok') return 'password';
      if (check === 'unknown-device') {
        return { returnCode: BAD_USER_NAME_OR_PASSWORD, reason: 'unknown-device', message: `no device "${username}" in ${this.#credentialsFile}; add it with "tributary devices add ${username}"` };
      }
      return { returnCode: BAD_USER_NAME_OR_PASSWORD, reason: 'bad-credentials', message: `wrong password for device "${username}"` };
    }
    if (!this.#config.auth.allowAnonymous) {
      return { returnCode: NOT_AUTHORIZED, reason: 'anonymous', message: 'no user name, and auth.allowAnonymous is off: connect with user name = device id and its password' };
    }
    if (this.#credentials.has(client.id)) {
      // A device with credentials must use them, or anyone could take its session over anonymously.
      return { returnCode: NOT_AUTHORIZED, reason: 'anonymous', message: `"${client.id}" is a device with credentials: connect with user name "${client.id}" and its password` };
    }
    return 'anonymous';
  }

  #refuse(client: Client, address: string | undefined, refusal: Refusal, done: (error: AuthenticateError | null, success: boolean | null) => void): void {
    this.#refused.get(refusal.reason)!.inc();
    const suppressed = this.#refusalLog.admit(address ?? client.id);
    if (suppressed !== undefined) {
      this.#logger.warn('connection refused', { clientId: client.id, address, reason: refusal.reason, returnCode: refusal.returnCode, error: refusal.message, ...(suppressed > 0 ? { suppressed } : {}) });
    }
    done(Object.assign(new Error(refusal.message), { returnCode: refusal.returnCode as AuthenticateError['returnCode'] }), false);
  }

  /** Re-reads the credentials file if it changed (one read at a time) and disconnects removed devices. */
  #refresh(): Promise<void> {
    if (this.#refreshing) return this.#refreshing;
    const refreshing = this.#credentials
      .refresh()
      .then(
        (removed: string[]) => this.#disconnect(removed),
        (err: unknown) => {
          // A file broken by hand: the edge keeps the credentials it had, and says so (not on every CONNECT).
          const now = Date.now();
          if (now - this.#refreshErrorLoggedAt < 10_000) return;
          this.#refreshErrorLoggedAt = now;
          this.#logger.error('cannot re-read the device credentials; keeping the ones read before', { credentialsFile: this.#credentialsFile, error: errorMessage(err) });
        },
      )
      .finally(() => {
        this.#refreshing = null;
      });
    this.#refreshing = refreshing;
    return refreshing;
  }

  #disconnect(removed: readonly string[]): void {
    for (const deviceId of removed) {
      // Aedes keeps connected clients by id (not in its type declarations).
      const client = (this.#aedes as { clients?: Record<string, Client> } | null)?.clients?.[deviceId];
      if (!client || this.#identities.get(client) !== 'password') continue;
      this.#logger.warn('device removed from the credentials file, or its password replaced: disconnecting it', { clientId: deviceId, address: remoteAddressOf(client) });
      client.close();
    }
  }

  #warnIfOpenOrClosed(configFile: string | undefined): void {
    const { mqtt, auth } = this.#config;
    if (auth.allowAnonymous) {
      const listeners = [`mqtt://${mqtt.host}:${mqtt.port}`];
      if (mqtt.wsPort !== null) listeners.push(`ws://${mqtt.host}:${mqtt.wsPort}`);
      if (mqtt.tls) listeners.push(`mqtts://${mqtt.host}:${mqtt.tls.port}`);
      this.#logger.warn(`anonymous devices are allowed (auth.allowAnonymous); anyone who can reach ${listeners.join(', ')} can publish as any device id`);
      return;
    }
    const certificates = mqtt.tls !== null && mqtt.tls.clientCertificates !== 'none';
    if (this.#credentials.size === 0 && !certificates) {
      const where = configFile !== undefined ? `--config ${configFile}` : `--credentials ${this.#credentialsFile}`;
      this.#logger.warn(`no device can connect yet: ${this.#credentialsFile} has no devices and no TLS client certificates are configured; add one with "tributary devices add <id> ${where}" (the running edge picks it up)`, {
        credentialsFile: this.#credentialsFile,
      });
    }
  }
}

function clientIdMismatch(clientId: string, deviceId: string, what: string): Refusal {
  return { returnCode: IDENTIFIER_REJECTED, reason: 'client-id', message: `client id "${clientId}" is not the device ${what} ("${deviceId}"); connect with client id "${deviceId}"` };
}
