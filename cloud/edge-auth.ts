/**
 * Which edges may use the cloud's uplink listener, and as whom. An edge is who its credentials say, and its MQTT
 * client id must be that name: everything on the uplink (its batch topic, its commands, its high-water marks) is
 * keyed by the client id, so a client id that is not the authenticated edge would let one edge act as another,
 * and connecting with another's client id would take over its session [MQTT-3.1.4-2].
 *
 * - A TLS client certificate that the uplink listener verified against `uplink.tls.caFile` (`clientCertificates`
 *   `optional` or `required`) names the edge by its CN; no token is needed then.
 * - Otherwise username = edge id and password = the edge's token, checked by `EdgeCredentials`
 *   (`tributary edges add <edgeId>`).
 * - Without a username, the edge is anonymous: accepted only with `auth.allowAnonymous`, as its client id.
 *
 * Refusals answer with the MQTT 3.1.1 CONNACK return codes [MQTT-3.2.2-3]: 4 (bad user name or password) for an
 * unknown edge or a wrong or malformed token, 5 (not authorised) for anonymous edges when they are not allowed and
 * for a missing certificate when one is required, 2 (identifier rejected) for a client id that is not the edge id.
 * Each is a warn log line (client id, address, reason; never the token; a few per address every 10 s) and
 * `tributary_cloud_edges_refused_total{reason}`.
 *
 * The edges file is re-read when it changes (checked on every CONNECT and every few seconds); an edge that was
 * removed, or whose token was replaced, is disconnected, and must connect again with a token that holds.
 */
import type { Aedes, AuthenticateError, Client } from 'aedes';
import { LogThrottle } from '../shared/log-throttle.ts';
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import { verifiedPeerName } from '../shared/tls-config.ts';
import type { EdgeCredentials } from './edge-credentials.ts';

export type EdgeRefusal = 'bad-credentials' | 'unknown-edge' | 'anonymous' | 'client-id' | 'certificate';

/** CONNACK return codes of MQTT 3.1.1 §3.2.2.3. */
const IDENTIFIER_REJECTED = 2;
const BAD_USER_NAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

/** How often the edges file is looked at for removed edges between CONNECTs. */
const DEFAULT_WATCH_MS = 2_000;

export interface EdgeAuthOptions {
  /** The edges and their tokens; null when the node has no edges file (only anonymous edges, if allowed). */
  credentials: EdgeCredentials | null;
  allowAnonymous: boolean;
  /** `uplink.tls.clientCertificates`: with `required`, an edge without a verified certificate is refused. */
  clientCertificates: 'none' | 'optional' | 'required';
  metrics: Metrics;
  logger: Logger;
  /** How often to look for removed edges (ms). Default 2 s. */
  watchMs?: number;
}

export class EdgeAuth {
  readonly #o: EdgeAuthOptions;
  readonly #refused = new Map<EdgeRefusal, Counter>();
  /** A few refusal lines per address every 10 s: a client retrying a bad token in a loop is not a flood of lines. */
  readonly #throttle = new LogThrottle();
  #aedes: Aedes | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;
  #refreshing: Promise<void> | null = null;

  constructor(options: EdgeAuthOptions) {
    this.#o = options;
    for (const reason of ['bad-credentials', 'unknown-edge', 'anonymous', 'client-id', 'certificate'] as const) {
      this.#refused.set(reason, options.metrics.counter('tributary_cloud_edges_refused_total', 'Edge connections to the uplink refused, by reason.', { reason }));
    }
  }

  /** The Aedes `authenticate` hook. */
  readonly authenticate = (client: Client, username: Readonly<string | undefined>, password: Readonly<Buffer | undefined>, done: (error: AuthenticateError | null, success: boolean | null) => void): void => {
    // Pick up edges added or removed since the last look (stat-throttled, so a reconnect storm costs little).
    this.#refresh().then(
      () => done(...this.#decide(client, username, password)),
      () => done(...this.#decide(client, username, password)),
    );
  };

  #decide(client: Client, username: string | undefined, password: Buffer | undefined): [AuthenticateError | null, boolean | null] {
    const { credentials, allowAnonymous, clientCertificates } = this.#o;
    const certified = verifiedPeerName((client as { conn?: unknown }).conn);
    if (certified !== undefined) {
      if (client.id !== certified) return this.#refuse(client, 'client-id', IDENTIFIER_REJECTED, `the client id must be the edge id its certificate names ("${certified}")`);
      if (username !== undefined && username !== certified) return this.#refuse(client, 'client-id', IDENTIFIER_REJECTED, `the user name "${username}" is not the edge id its certificate names ("${certified}")`);
      this.#o.logger.debug('edge connected with a certificate', { edgeId: certified });
      return [null, true];
    }
    if (clientCertificates === 'required') return this.#refuse(client, 'certificate', NOT_AUTHORIZED, 'the uplink requires a client certificate (uplink.tls.clientCertificates: required) and the edge showed none that the CA signed');
    if (username === undefined || username === '') {
      if (allowAnonymous) return [null, true];
      return this.#refuse(client, 'anonymous', NOT_AUTHORIZED, 'the edge sent no credentials; set uplink.tokenFile on the edge (tributary edges add <edgeId> on the cloud makes the token)');
    }
    const check = credentials ? credentials.check(username, password) : 'unknown-edge';
    switch (check) {
      case 'unknown-edge':
        return this.#refuse(client, 'unknown-edge', BAD_USER_NAME_OR_PASSWORD, `edge "${username}" is not known to this cloud; add it with "tributary edges add ${username}"`);
      case 'malformed-token':
      case 'wrong-token':
        return this.#refuse(client, 'bad-credentials', BAD_USER_NAME_OR_PASSWORD, `the token of edge "${username}" is ${check === 'wrong-token' ? 'not its current one' : 'malformed'}; give the edge the token "tributary edges add ${username}" printed`);
    }
    if (client.id !== username) return this.#refuse(client, 'client-id', IDENTIFIER_REJECTED, `the client id must be the edge id "${username}"`);
    return [null, true];
  }

  #refuse(client: Client, reason: EdgeRefusal, returnCode: number, message: string): [AuthenticateError, null] {
    this.#refused.get(reason)!.inc();
    const address = remoteAddress(client);
    const suppressed = this.#throttle.admit(address ?? client.id);
    if (suppressed !== undefined) {
      this.#o.logger.warn('edge connection refused', { clientId: client.id, address, reason, detail: message, ...(suppressed > 0 ? { linesSuppressed: suppressed } : {}) });
    }
    const error = new Error(`edge connection refused (${reason})`) as AuthenticateError;
    error.returnCode = returnCode as AuthenticateError['returnCode'];
    return [error, null];
  }

  /** Watches the edges file on this broker: edges removed from it, or given a new token, are disconnected. */
  attach(aedes: Aedes): void {
    this.#aedes = aedes;
    if (!this.#o.credentials || this.#timer) return;
    this.#timer = setInterval(() => void this.#refresh(), this.#o.watchMs ?? DEFAULT_WATCH_MS);
    this.#timer.unref?.();
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#aedes = null;
  }

  /** Re-reads the edges file if it changed and disconnects the edges whose credentials are gone. One at a time. */
  #refresh(): Promise<void> {
    const credentials = this.#o.credentials;
    if (!credentials) return Promise.resolve();
    this.#refreshing ??= credentials
      .refresh()
      .then((gone) => {
        for (const edgeId of gone) this.#disconnect(edgeId);
      })
      .catch((err: unknown) => this.#o.logger.error('cannot re-read the edge credentials', { err }))
      .finally(() => {
        this.#refreshing = null;
      });
    return this.#refreshing;
  }

  #disconnect(edgeId: string): void {
    // Aedes keeps its connected clients by id; its type definitions leave the map out.
    const client = (this.#aedes as unknown as { clients?: Record<string, Client | undefined> } | null)?.clients?.[edgeId];
    if (!client) return;
    // An edge that proved itself with a certificate does not depend on the edges file.
    if (verifiedPeerName((client as { conn?: unknown }).conn) === edgeId) return;
    this.#o.logger.warn('edge disconnected: its credentials were removed or replaced', { edgeId, address: remoteAddress(client) });
    client.close();
  }
}

function remoteAddress(client: Client): string | undefined {
  const conn = (client as { conn?: { remoteAddress?: string } }).conn;
  return conn?.remoteAddress;
}
