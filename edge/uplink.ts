/**
 * The uplink: forwards the buffer to the cloud over MQTT. The edge dials out (gateways sit behind NAT), sends
 * each batch as one QoS 1 publish, and releases a batch from the buffer only when the cloud's PUBACK says the
 * batch is committed there. Several batches are in flight at once. On any link failure the in-flight batches
 * are forgotten and, after a reconnect with exponential backoff and jitter, each lane re-sends from its oldest
 * unacknowledged event; the cloud drops what it already has (a high-water mark per edge and lane).
 *
 * The buffer has priority lanes, each with its own sequence numbers. A batch holds events of one lane, and the
 * window is filled from the highest lane that has events to send, so alerts overtake a backlog of telemetry.
 * Events past their time to live never come out of the buffer's read; events past their own `expirytime` are
 * not sent, and are counted and released with the batch they were read in.
 *
 * The edge proves who it is with its token (MQTT user name = edge id, password = token) or a TLS client
 * certificate, and always verifies the cloud's certificate on `mqtts://`, `tls://` and `wss://` URLs. A cloud that
 * refuses the edge (CONNACK 2, 4 or 5) is logged once as an error saying what to do, and retried with backoff: the
 * operator may fix the cloud's side without restarting the edge.
 */
import { setTimeout as delay } from 'node:timers';
import { readFile } from 'node:fs/promises';
import type { ConnectionOptions } from 'node:tls';
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { parseToken } from '../shared/access-token.ts';
import type { Backoff } from '../shared/backoff.ts';
import { ConfigError } from '../shared/errors.ts';
import { loadTlsClientOptions } from '../shared/tls-config.ts';
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import { encodeEntries, uplinkTopic } from '../shared/uplink-wire.ts';
import type { EdgeConfig } from './config.ts';
import type { BufferEntry, EdgeBuffer } from './edge-buffer.ts';
import { isExpired } from './expiry.ts';
import type { Lane } from './lanes.ts';
import { LANE_COUNT, LANE_NAMES } from './lanes.ts';

export interface UplinkOptions {
  url: string;
  edgeId: string;
  buffer: EdgeBuffer;
  batchMaxEvents: number;
  batchMaxBytes: number;
  /** Batches awaiting the cloud's acknowledgement at once, all lanes together. */
  inflight: number;
  keepaliveSeconds: number;
  /** This edge's token for the cloud (`tributary edges add <edgeId>` on the cloud); sent as the MQTT password, the edge id as user name. */
  token?: string;
  /** TLS client options (shared/tls-config.ts `loadTlsClientOptions`) for `mqtts://`, `tls://` and `wss://` URLs. */
  tls?: ConnectionOptions;
  backoff: Backoff;
  logger: Logger;
  metrics: Metrics;
  /** The wall clock (ms since the epoch), for expiry and the link's state times; `Date.now` by default. */
  now?: () => number;
  /**
   * Called after every successful (re)connect, before the first batch is sent on it. The client may be used to
   * subscribe and publish on the same connection (cloud → edge commands); the uplink ignores messages it gets.
   */
  onConnected?: (client: MqttClient) => void;
  /** Called when a connection that was up goes down, or the uplink stops while connected. */
  onDisconnected?: () => void;
}

export type LinkState = 'connecting' | 'connected' | 'waiting' | 'stopped';

export interface LinkInfo {
  state: LinkState;
  url: string;
  /** When the state last changed (ms since the epoch). */
  sinceMs: number;
  /** Successful connections since the uplink was created. */
  connects: number;
  /** Why the link last went down or could not come up; null until it first did. */
  lastError: string | null;
  /** Batches sent and not yet acknowledged. */
  inflightBatches: number;
}

/** A run of one lane's events that was read together: sent as one batch, or skipped when all had expired. */
interface LaneBatch {
  /** Last sequence number of the run, expired events included. */
  last: number;
  /** Events sent; the rest of the run had expired. */
  sent: number;
  expired: number;
  acked: boolean;
  /** Reached the lane's committed end with room to spare: sent because nothing more was committed yet. */
  partial: boolean;
}

interface LaneState {
  /** Next sequence number to read. */
  nextSeq: number;
  /** Every event through this sequence number is acknowledged or expired and has been handed to `release`. */
  releasedThrough: number;
  /** Runs read and not yet released, oldest first. */
  batches: LaneBatch[];
}

export class Uplink {
  readonly #o: UplinkOptions;
  readonly #topic: string;
  readonly #now: () => number;
  #client: MqttClient | null = null;
  #state: LinkState = 'stopped';
  #sinceMs: number;
  #connects = 0;
  #lastError: string | null = null;
  /** Bumped on every (re)connect; callbacks of an older connection are ignored. */
  #generation = 0;
  readonly #lanes: LaneState[] = [];
  /** Batches sent on this connection and not yet acknowledged, all lanes. */
  #unacked = 0;
  #reading = false;
  #retryTimer: ReturnType<typeof delay> | null = null;
  /** The refusal last logged as an error; the same one again is not logged until the link has been up. */
  #refusalLogged: string | null = null;
  #unsubscribe: (() => void) | null = null;
  readonly #forwarded: Counter;
  readonly #batches: Counter;
  readonly #reconnects: Counter;

  constructor(options: UplinkOptions) {
    this.#o = options;
    this.#topic = uplinkTopic(options.edgeId);
    this.#now = options.now ?? Date.now;
    this.#sinceMs = this.#now();
    for (let lane = 0; lane < LANE_COUNT; lane++) this.#lanes.push({ nextSeq: 1, releasedThrough: 0, batches: [] });
    this.#forwarded = options.metrics.counter('tributary_edge_events_forwarded_total', 'Events the cloud acknowledged.');
    this.#batches = options.metrics.counter('tributary_edge_batches_forwarded_total', 'Batches the cloud acknowledged.');
    this.#reconnects = options.metrics.counter('tributary_edge_uplink_connects_total', 'Successful uplink connections.');
  }

  get state(): LinkState {
    return this.#state;
  }

  linkInfo(): LinkInfo {
    return {
      state: this.#state,
      url: this.#o.url,
      sinceMs: this.#sinceMs,
      connects: this.#connects,
      lastError: this.#lastError,
      inflightBatches: this.#unacked,
    };
  }

  start(): void {
    if (this.#state !== 'stopped') return;
    this.#unsubscribe = this.#o.buffer.onCommit(() => this.#pump());
    this.#connect();
  }

  async stop(): Promise<void> {
    const wasConnected = this.#state === 'connected';
    this.#setState('stopped');
    this.#generation++;
    this.#unsubscribe?.();
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    const client = this.#client;
    this.#client = null;
    this.#forget();
    if (wasConnected) this.#hook('onDisconnected', () => this.#o.onDisconnected?.());
    if (client) await client.endAsync(true).catch(() => undefined);
  }

  #setState(state: LinkState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#sinceMs = this.#now();
  }

  /** Drops what this connection had in flight: after a reconnect each lane re-sends from its oldest unreleased event. */
  #forget(): void {
    this.#unacked = 0;
    for (const lane of this.#lanes) lane.batches = [];
  }

  #connect(): void {
    const generation = ++this.#generation;
    this.#setState('connecting');
    const client = mqtt.connect(this.#o.url, {
      clientId: this.#o.edgeId,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0, // reconnects are ours: exponential backoff with jitter
      connectTimeout: 10_000,
      keepalive: this.#o.keepaliveSeconds,
      queueQoSZero: false,
      ...(this.#o.token === undefined ? {} : { username: this.#o.edgeId, password: this.#o.token }),
      ...tlsOptions(this.#o.tls),
    });
    this.#client = client;
    client.on('connect', () => {
      if (generation !== this.#generation) return;
      // mqtt.js leaves Nagle's algorithm on; it holds each batch's small packets back by up to 40 ms.
      (client.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
      this.#setState('connected');
      this.#refusalLogged = null;
      this.#connects++;
      this.#o.backoff.reset();
      this.#reconnects.inc();
      const resendFrom: Record<string, number> = {};
      this.#lanes.forEach((state, i) => {
        // An event handed to `release` is never sent again, even when the release has not completed yet.
        state.nextSeq = Math.max(this.#o.buffer.firstSeq(i as Lane), state.releasedThrough + 1);
        resendFrom[LANE_NAMES[i]] = state.nextSeq;
      });
      this.#o.logger.info('uplink connected', { url: this.#o.url, resendFrom, buffered: this.#o.buffer.stats().events });
      this.#hook('onConnected', () => this.#o.onConnected?.(client));
      if (generation === this.#generation) this.#pump();
    });
    const lost = (why: string, alreadyLogged = false) => {
      if (generation !== this.#generation || this.#state === 'stopped') return;
      const wasConnected = this.#state === 'connected';
      this.#generation++;
      this.#forget();
      this.#client = null;
      client.removeAllListeners();
      client.on('error', () => undefined);
      client.end(true);
      const wait = this.#o.backoff.next();
      this.#setState('waiting');
      this.#lastError = why;
      const attempt = this.#o.backoff.attempt;
      // The first failure and every tenth after it are warnings; the status line shows the link state meanwhile.
      const level = !alreadyLogged && (attempt === 1 || attempt % 10 === 0) ? 'warn' : 'debug';
      this.#o.logger[level]('uplink down; reconnecting', { url: this.#o.url, reason: why, retryInMs: wait, attempt });
      if (wasConnected) this.#hook('onDisconnected', () => this.#o.onDisconnected?.());
      this.#retryTimer = delay(() => {
        this.#retryTimer = null;
        if (this.#state === 'waiting') this.#connect();
      }, wait);
    };
    client.on('error', (err) => {
      const refusal = refusalOf(err, this.#o.edgeId);
      if (refusal === undefined) {
        lost(err.message);
        return;
      }
      if (generation !== this.#generation || this.#state === 'stopped') return;
      const first = this.#refusalLogged !== refusal;
      if (first) {
        this.#refusalLogged = refusal;
        this.#o.logger.error(refusal, { url: this.#o.url, edgeId: this.#o.edgeId, error: err.message });
      }
      lost(refusal, true);
    });
    client.on('close', () => lost('connection closed'));
    client.on('offline', () => lost('offline'));
  }

  /** Runs a caller's hook; a hook that throws is logged and does not take the link down. */
  #hook(name: string, call: () => void): void {
    try {
      call();
    } catch (err) {
      this.#o.logger.error(`the uplink's ${name} hook failed`, { err });
    }
  }

  /**
   * Sends batches while the link is up and the window has room, each from the highest lane that has something
   * to send. Full batches (a backlog) fill the whole window; of a lane's partial ones (live traffic, sent as
   * soon as it is committed), only one is in flight at a time, so what commits meanwhile rides in the next one:
   * at moderate rates that is one batch per round trip to the cloud instead of one per group commit, with no
   * added wait.
   */
  #pump(): void {
    if (this.#state !== 'connected' || this.#reading || this.#unacked >= this.#o.inflight) return;
    const lane = this.#laneToSend();
    if (lane === undefined) return;
    const from = this.#lanes[lane].nextSeq;
    const committed = this.#o.buffer.committedSeq(lane);
    const generation = this.#generation;
    this.#reading = true;
    this.#o.buffer.read(lane, from, this.#o.batchMaxEvents, this.#o.batchMaxBytes).then(
      (entries) => {
        this.#reading = false;
        if (generation === this.#generation) this.#send(lane, entries, committed, generation);
        // Also after a reconnect that happened during the read: the new connection's pump waited for it.
        this.#pump();
      },
      (err) => {
        this.#reading = false;
        this.#o.logger.error('cannot read the buffer', { lane: LANE_NAMES[lane], err });
      },
    );
  }

  /**
   * The highest lane with committed events to send. A lane whose few waiting events will ride in the batch
   * after its partial one in flight has nothing to send now, so a lower lane may use the link meanwhile; the
   * slot the partial batch frees goes back to the higher lane first.
   */
  #laneToSend(): Lane | undefined {
    for (let i = 0; i < LANE_COUNT; i++) {
      const lane = i as Lane;
      const state = this.#lanes[lane];
      const waiting = this.#o.buffer.committedSeq(lane) - state.nextSeq + 1;
      if (waiting <= 0) continue;
      if (waiting < this.#o.batchMaxEvents && state.batches.some((b) => b.partial && !b.acked)) continue;
      return lane;
    }
    return undefined;
  }

  /** Sends what was read from `lane` as one batch, leaving out expired events. */
  #send(lane: Lane, entries: BufferEntry[], committed: number, generation: number): void {
    const state = this.#lanes[lane];
    if (entries.length === 0) {
      // Nothing is left between nextSeq and the committed end: the buffer dropped those events meanwhile.
      state.nextSeq = Math.max(state.nextSeq, committed + 1);
      return;
    }
    const now = this.#now();
    let live: BufferEntry[] | undefined;
    for (let i = 0; i < entries.length; i++) {
      if (!isExpired(entries[i].value, now)) live?.push(entries[i]);
      else live ??= entries.slice(0, i);
    }
    const sending = live ?? entries;
    const last = entries[entries.length - 1].seq;
    state.nextSeq = last + 1;
    const batch: LaneBatch = {
      last,
      sent: sending.length,
      expired: entries.length - sending.length,
      acked: sending.length === 0,
      partial: last >= committed && entries.length < this.#o.batchMaxEvents,
    };
    state.batches.push(batch);
    if (sending.length === 0) {
      this.#release(lane);
      return;
    }
    this.#unacked++;
    const payload = encodeEntries(this.#o.edgeId, lane, sending);
    this.#client!.publish(this.#topic, payload, { qos: 1 }, (err) => {
      if (generation !== this.#generation) return;
      if (err) {
        this.#o.logger.warn('batch not acknowledged', { error: err.message, lane: LANE_NAMES[lane], first: sending[0].seq, events: sending.length });
        return;
      }
      batch.acked = true;
      this.#unacked--;
      this.#release(lane);
      this.#pump();
    });
  }

  /** Frees a lane's acknowledged and skipped runs from the buffer, oldest first, up to the first unacknowledged. */
  #release(lane: Lane): void {
    const state = this.#lanes[lane];
    let through = 0;
    let sent = 0;
    let batches = 0;
    let expired = 0;
    while (state.batches.length > 0 && state.batches[0].acked) {
      const batch = state.batches.shift()!;
      through = batch.last;
      sent += batch.sent;
      expired += batch.expired;
      if (batch.sent > 0) batches++;
    }
    if (through === 0) return;
    state.releasedThrough = through;
    this.#forwarded.inc(sent);
    this.#batches.inc(batches);
    if (expired > 0) {
      this.#o.buffer.countDropped('expired', lane, expired);
      this.#o.logger.debug('expired events not forwarded', { lane: LANE_NAMES[lane], events: expired, through });
    }
    this.#o.buffer.release(lane, through).then(
      () => undefined,
      (err) => this.#o.logger.error('cannot release acknowledged events from the buffer (the next release of the lane frees them)', { lane: LANE_NAMES[lane], err }),
    );
  }
}

/**
 * The uplink's credentials from the edge's config, read at start-up: the token (`uplink.token`, or the first line
 * of `uplink.tokenFile`) and the TLS client options (`uplink.tls`). A token file that cannot be read, is empty or
 * holds no token is a ConfigError naming the key and the file (never the file's content).
 */
export async function loadUplinkCredentials(uplink: EdgeConfig['uplink'], configFile?: string): Promise<{ token?: string; tls: ConnectionOptions }> {
  const tls = await loadTlsClientOptions(uplink.tls, { file: configFile, key: 'uplink.tls' });
  if (uplink.tokenFile === undefined) {
    if (uplink.token !== undefined && !parseToken(uplink.token)) {
      throw new ConfigError('is not a token (tokens look like trb_<12 hex digits>_<43 characters>, as "tributary edges add" prints them)', { file: configFile, key: 'uplink.token' });
    }
    return { token: uplink.token, tls };
  }
  const where = { file: configFile, key: 'uplink.tokenFile' };
  let text: string;
  try {
    text = await readFile(uplink.tokenFile, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read by this user' : `cannot be read (${code ?? (err as Error).message})`;
    throw new ConfigError(`the token file "${uplink.tokenFile}" ${why}; write the token "tributary edges add <edgeId>" printed on the cloud into it`, where, { cause: err });
  }
  const token = text.split(/\r?\n/, 1)[0].trim();
  if (token === '') throw new ConfigError(`the token file "${uplink.tokenFile}" is empty; write the token "tributary edges add <edgeId>" printed on the cloud into it`, where);
  if (!parseToken(token)) {
    throw new ConfigError(`the first line of the token file "${uplink.tokenFile}" is not a token (tokens look like trb_<12 hex digits>_<43 characters>, as "tributary edges add" prints them)`, where);
  }
  return { token, tls };
}

/**
 * The TLS settings mqtt.js passes to `tls.connect` (mqtts, tls) and to the WebSocket (wss): only the ones that
 * say whom to trust and who we are, so nothing in them can change where the edge connects. The server is always
 * verified.
 */
function tlsOptions(tls: ConnectionOptions | undefined): Pick<IClientOptions, 'ca' | 'cert' | 'key' | 'servername' | 'rejectUnauthorized'> & { minVersion?: ConnectionOptions['minVersion'] } {
  const out: ReturnType<typeof tlsOptions> = { rejectUnauthorized: true };
  if (!tls) return out;
  if (tls.ca !== undefined) out.ca = tls.ca as IClientOptions['ca'];
  if (tls.cert !== undefined) out.cert = tls.cert as IClientOptions['cert'];
  if (tls.key !== undefined) out.key = tls.key as IClientOptions['key'];
  if (tls.servername !== undefined) out.servername = tls.servername;
  if (tls.minVersion !== undefined) out.minVersion = tls.minVersion;
  return out;
}

/** TLS errors that mean the cloud's certificate is not one this edge trusts (Node's `err.code`). */
const UNTRUSTED_CERTIFICATE = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED']);

/** What to do about an error that retrying alone will not fix (the cloud refused the edge, an untrusted certificate); undefined for others. */
function refusalOf(err: Error, edgeId: string): string | undefined {
  const code = (err as { code?: unknown }).code;
  const addIt = `run "tributary edges add ${edgeId}" on the cloud and put the token it prints in uplink.tokenFile`;
  // CONNACK return codes, MQTT 3.1.1 §3.2.2.3.
  if (code === 4) return `the cloud refused this edge's token (bad user name or password): ${addIt}`;
  if (code === 5) return `the cloud refused this edge (not authorised): it needs a token or a client certificate; ${addIt}`;
  if (code === 2) return `the cloud refused this edge's client id: the edge id "${edgeId}" must be the name its token or certificate was made for`;
  if (typeof code === 'string' && UNTRUSTED_CERTIFICATE.has(code)) return `the cloud's TLS certificate is not trusted (${code}): set uplink.tls.caFile to the CA certificate that signed it`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `the cloud's TLS certificate is not for the host in uplink.url (${err.message}): connect by a name the certificate holds, or set uplink.tls.serverName`;
  if (code === 'CERT_HAS_EXPIRED') return "the cloud's TLS certificate has expired: renew it on the cloud";
  return undefined;
}
