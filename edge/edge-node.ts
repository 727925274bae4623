/**
 * The edge node: broker → ingest → buffer → uplink, composed and started as one unit. No side effects until
 * `start()`; `stop()` closes listeners, the uplink and the store, in that order, so nothing acknowledged is
 * left half-written.
 */
import { join } from 'node:path';
import { Backoff } from '../shared/backoff.ts';
import type { RunningHttpServer } from '../shared/http-server.ts';
import { LevelStore } from '../shared/level-store.ts';
import type { Logger } from '../shared/logger.ts';
import { Metrics } from '../shared/metrics.ts';
import { TopicMapper } from '../shared/topic-mapping.ts';
import type { RunningMqttServer } from '../shared/mqtt-server.ts';
import { startMqttServer } from '../shared/mqtt-server.ts';
import { loadTlsServerOptions } from '../shared/tls-config.ts';
import { Acl } from './acl.ts';
import { EdgeCommands } from './commands.ts';
import type { EdgeConfig } from './config.ts';
import { DeadLetters } from './dead-letters.ts';
import { DeviceAuth } from './device-auth.ts';
import { EdgeBuffer } from './edge-buffer.ts';
import { EdgeStatusReporter } from './edge-status.ts';
import { Ingest } from './ingest.ts';
import { LaneRouter } from './lanes.ts';
import { MqttLimits } from './mqtt-limits.ts';
import type { PublishRoute } from './mqtt-limits.ts';
import { ResendGuard } from './resend-guard.ts';
import { startStatusServer } from './status-api.ts';
import type { LinkState } from './uplink.ts';
import { loadUplinkCredentials, Uplink } from './uplink.ts';

export interface EdgeStatus {
  edgeId: string;
  devices: number;
  accepted: number;
  rejected: number;
  buffered: number;
  bufferedBytes: number;
  forwarded: number;
  deadLetters: number;
  link: LinkState;
}

export class EdgeNode {
  readonly config: EdgeConfig;
  readonly metrics = new Metrics();
  readonly #logger: Logger;
  #store: LevelStore | null = null;
  #broker: RunningMqttServer | null = null;
  #uplink: Uplink | null = null;
  #buffer: EdgeBuffer | null = null;
  #ingest: Ingest | null = null;
  #deadLetters: DeadLetters | null = null;
  #commands: EdgeCommands | null = null;
  #statusReporter: EdgeStatusReporter | null = null;
  #http: RunningHttpServer | null = null;
  #deviceAuth: DeviceAuth | null = null;
  #limits: MqttLimits | null = null;
  /** The config file the node was started with, to name it in errors. */
  readonly #configFile: string | undefined;

  constructor(config: EdgeConfig, logger: Logger, options: { configFile?: string } = {}) {
    this.config = config;
    this.#configFile = options.configFile;
    this.#logger = logger.child({ component: 'edge', edgeId: config.edgeId });
  }

  get dataDir(): string {
    return this.config.dataDir ?? join('.data', this.config.edgeId);
  }

  /** Ports actually bound (useful with port 0). `http` (the status endpoint) is null when it is off. */
  get ports(): { mqtt: number | null; ws: number | null; tls: number | null; http: number | null } {
    if (!this.#broker) throw new Error('the edge node is not started');
    return { mqtt: this.#broker.port, ws: this.#broker.wsPort, tls: this.#broker.tlsPort, http: this.#http?.port ?? null };
  }

  get buffer(): EdgeBuffer {
    if (!this.#buffer) throw new Error('the edge node is not started');
    return this.#buffer;
  }

  async start(): Promise<void> {
    const { config } = this;
    const store = await LevelStore.open(this.dataDir, { durability: config.buffer.durability });
    this.#store = store;
    try {
      const buffer = await EdgeBuffer.open(store, {
        maxBytes: config.buffer.maxBytes,
        maxAgeSeconds: config.buffer.maxAgeSeconds,
        overflow: config.buffer.overflow,
        metrics: this.metrics,
        logger: this.#logger.child({ component: 'buffer' }),
      });
      const deadLetters = await DeadLetters.open(store);
      this.#buffer = buffer;
      this.#deadLetters = deadLetters;
      const resendGuard = await ResendGuard.open(store);
      const commands = await EdgeCommands.open({
        edgeId: config.edgeId,
        store,
        buffer,
        topics: config.commands,
        deadLetters,
        resendGuard,
        metrics: this.metrics,
        logger: this.#logger.child({ component: 'commands' }),
      });
      this.#commands = commands;
      const ingest = new Ingest({
        mapper: new TopicMapper({ edgeId: config.edgeId, rules: config.ingest.topics }),
        buffer,
        resendGuard,
        deadLetters,
        metrics: this.metrics,
        logger: this.#logger.child({ component: 'ingest' }),
        lanes: new LaneRouter(config.buffer.lanes),
        overflow: config.buffer.overflow,
      });
      this.#ingest = ingest;
      const deviceAuth = await DeviceAuth.open({ config, dataDir: this.dataDir, metrics: this.metrics, logger: this.#logger.child({ component: 'auth' }), configFile: this.#configFile });
      this.#deviceAuth = deviceAuth;
      const acl = new Acl({ config, deviceOf: (client) => deviceAuth.deviceOf(client), metrics: this.metrics, logger: this.#logger.child({ component: 'acl' }) });
      const limits = new MqttLimits({ limits: config.limits, deadLetters, metrics: this.metrics, logger: this.#logger.child({ component: 'limits' }) });
      this.#limits = limits;
      const tls = config.mqtt.tls;
      // Where a publish within the limits goes: one function for all publishes, not a closure per message.
      const route: PublishRoute = (client, packet, done) => {
        if (!acl.allowPublish(client, packet, done)) return;
        if (!commands.authorizePublish(client, packet, done)) ingest.authorizePublish(client, packet, done);
      };
      this.#broker = await startMqttServer({
        host: config.mqtt.host,
        port: config.mqtt.port,
        wsPort: config.mqtt.wsPort,
        tls: tls ? { port: tls.port, options: await loadTlsServerOptions(tls, { file: this.#configFile, key: 'mqtt.tls' }) } : null,
        // Aedes' own client id check (MQTT 3.1 only) is off: DeviceAuth checks limits.maxClientIdLength for every version, and logs and counts it.
        broker: { drainTimeout: config.limits.drainTimeoutMs, connectTimeout: config.limits.connectTimeoutMs, maxClientsIdLength: 65535 },
        // A WebSocket message is buffered whole before the packet-size guard sees it: keep it near the packet limit.
        maxWebSocketBytes: config.limits.maxPacketBytes > 0 ? config.limits.maxPacketBytes + 64 * 1024 : undefined,
        onConnection: (client) => limits.onConnection(client),
        hooks: {
          authenticate: deviceAuth.authenticate,
          // Limits first (size, topic, rate), then the ACL; then command replies (and stray publishes on command
          // topics) are the commands' own, and the rest is ingest's.
          authorizePublish: (client, packet, callback) => {
            if (!client) ingest.authorizePublish(client, packet, callback);
            else limits.admitPublish(client, packet, callback, route);
          },
          authorizeSubscribe: (client, subscription, callback) => {
            const breach = limits.checkSubscribe(client, subscription);
            if (breach !== null) callback(null, null);
            else acl.authorizeSubscribe(client, subscription, callback);
          },
        },
        logger: this.#logger.child({ component: 'broker' }),
      });
      commands.attach(this.#broker.aedes);
      deviceAuth.attach(this.#broker.aedes);
      this.#uplink = new Uplink({
        url: config.uplink.url,
        edgeId: config.edgeId,
        buffer,
        batchMaxEvents: config.uplink.batchMaxEvents,
        batchMaxBytes: config.uplink.batchMaxBytes,
        inflight: config.uplink.inflight,
        keepaliveSeconds: config.uplink.keepaliveSeconds,
        // The token (uplink.token or uplink.tokenFile) and TLS options; a token file that cannot be read stops the start here.
        ...(await loadUplinkCredentials(config.uplink, this.#configFile)),
        backoff: new Backoff({ initialMs: config.uplink.reconnectInitialMs, maxMs: config.uplink.reconnectMaxMs }),
        logger: this.#logger.child({ component: 'uplink' }),
        metrics: this.metrics,
        onConnected: (client) => commands.linkUp(client),
        onDisconnected: () => commands.linkDown(),
      });
      this.#registerGauges();
      this.#uplink.start();
      const reporter = new EdgeStatusReporter({
        edgeId: config.edgeId,
        durability: config.buffer.durability,
        metrics: this.metrics,
        buffer,
        uplink: this.#uplink,
        devicesConnected: () => this.#broker?.aedes.connectedClients ?? 0,
        deadLetters: () => deadLetters.count,
      });
      this.#statusReporter = reporter;
      reporter.registerGauges();
      reporter.start();
      this.#http = await startStatusServer({
        host: config.http.host,
        port: config.http.port,
        report: () => reporter.report(),
        metrics: this.metrics,
        logger: this.#logger.child({ component: 'status' }),
      });
    } catch (err) {
      await this.stop();
      throw err;
    }
    const stats = this.#buffer!.stats();
    this.#logger.info('edge node started', {
      mqtt: this.#broker!.port === null ? null : `mqtt://${config.mqtt.host}:${this.#broker!.port}`,
      ws: this.#broker!.wsPort === null ? null : `ws://${config.mqtt.host}:${this.#broker!.wsPort}`,
      mqtts: this.#broker!.tlsPort === null ? null : `mqtts://${config.mqtt.host}:${this.#broker!.tlsPort}`,
      uplink: config.uplink.url,
      http: this.#http?.url ?? null,
      dataDir: this.dataDir,
      durability: config.buffer.durability,
      buffered: stats.events,
    });
  }

  #registerGauges(): void {
    const m = this.metrics;
    m.gauge('tributary_edge_devices_connected', 'Devices connected to the broker.', () => this.#broker?.aedes.connectedClients ?? 0);
    m.gauge('tributary_edge_buffer_events', 'Events in the buffer awaiting the cloud.', () => this.#buffer?.stats().events ?? 0);
    m.gauge('tributary_edge_buffer_bytes', 'Bytes of events in the buffer.', () => this.#buffer?.stats().bytes ?? 0);
    m.gauge('tributary_edge_dead_letters', 'Dead letters kept.', () => this.#deadLetters?.count ?? 0);
    m.gauge('tributary_edge_publishes_waiting', 'QoS 1 publishes whose PUBACK waits for room in the full buffer.', () => this.#ingest?.waiting ?? 0);
    m.gauge('tributary_edge_uplink_connected', '1 when the uplink is connected.', () => (this.#uplink?.state === 'connected' ? 1 : 0));
  }

  status(): EdgeStatus {
    const m = this.metrics;
    const buffer = this.#buffer?.stats();
    return {
      edgeId: this.config.edgeId,
      devices: this.#broker?.aedes.connectedClients ?? 0,
      accepted: m.total('tributary_edge_events_accepted_total'),
      rejected: m.total('tributary_edge_messages_rejected_total'),
      buffered: buffer?.events ?? 0,
      bufferedBytes: buffer?.bytes ?? 0,
      forwarded: m.total('tributary_edge_events_forwarded_total'),
      deadLetters: this.#deadLetters?.count ?? 0,
      link: this.#uplink?.state ?? 'stopped',
    };
  }

  async stop(): Promise<void> {
    await this.#http?.close();
    this.#http = null;
    this.#statusReporter?.stop();
    this.#statusReporter = null;
    await this.#broker?.close();
    this.#broker = null;
    this.#deviceAuth?.close();
    this.#deviceAuth = null;
    this.#limits?.close();
    this.#limits = null;
    await this.#uplink?.stop();
    this.#uplink = null;
    this.#commands?.close();
    this.#commands = null;
    this.#ingest?.close();
    this.#ingest = null;
    this.#buffer?.close();
    await this.#store?.close();
    this.#store = null;
    this.#logger.info('edge node stopped');
  }
}
