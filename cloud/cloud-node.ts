/**
 * The cloud mesh node: uplink ingress → cloud log → HTTP API and streams. No side effects until `start()`.
 *
 * Closed by default (docs/security.md): edges authenticate with their token or a client certificate
 * (edge-auth.ts), API requests with a bearer token that has the route's scope (api-auth.ts). `auth.allowAnonymous`
 * opens both, with a warning at start-up.
 */
import type { Hono } from 'hono';
import type { Logger } from '../shared/logger.ts';
import { Metrics } from '../shared/metrics.ts';
import type { RunningMqttServer } from '../shared/mqtt-server.ts';
import { startMqttServer } from '../shared/mqtt-server.ts';
import { CloudCommands } from './commands.ts';
import { createCommandsApi } from './commands-api.ts';
import type { CloudConfig } from './config.ts';
import type { CloudLog } from './cloud-log.ts';
import { createHttpApi } from './http-api.ts';
import type { RunningHttpServer } from '../shared/http-server.ts';
import { startHttpServer } from '../shared/http-server.ts';
import { Ingress } from './ingress.ts';
import { LevelCloudLog } from './level-cloud-log.ts';
import { loadTlsServerOptions } from '../shared/tls-config.ts';
import { ApiAuth } from './api-auth.ts';
import { ApiTokens, defaultTokensFile } from './api-tokens.ts';
import { EdgeAuth } from './edge-auth.ts';
import { defaultEdgesFile, EdgeCredentials } from './edge-credentials.ts';
import { compileDenyList } from './webhook-target.ts';

export interface CloudStatus {
  edges: number;
  committed: number;
  duplicates: number;
  lastOffset: number;
  streams: number;
}

export class CloudNode {
  readonly config: CloudConfig;
  readonly metrics = new Metrics();
  readonly #logger: Logger;
  #log: CloudLog | null = null;
  #listener: RunningMqttServer | null = null;
  #http: RunningHttpServer | null = null;
  #commands: CloudCommands | null = null;
  #edgeAuth: EdgeAuth | null = null;
  #apiAuth: ApiAuth | null = null;
  app: Hono | null = null;
  /** The config file the node was started with, to name it in errors. */
  readonly #configFile: string | undefined;

  constructor(config: CloudConfig, logger: Logger, options: { configFile?: string } = {}) {
    this.config = config;
    this.#configFile = options.configFile;
    this.#logger = logger.child({ component: 'cloud' });
  }

  get log(): CloudLog {
    if (!this.#log) throw new Error('the cloud node is not started');
    return this.#log;
  }

  /** Ports actually bound (useful with port 0); `uplink` is the TLS listener's when `uplink.tls` is set. */
  get ports(): { uplink: number; http: number } {
    if (!this.#listener || !this.#http) throw new Error('the cloud node is not started');
    return { uplink: (this.#listener.tlsPort ?? this.#listener.port)!, http: this.#http.port };
  }

  async start(): Promise<void> {
    const { config } = this;
    const file = this.#configFile;
    // Settings that can be wrong are checked before anything is opened.
    compileDenyList(config.webhooks.denyList, { file });
    const uplinkTls = config.uplink.tls ? await loadTlsServerOptions(config.uplink.tls, { file, key: 'uplink.tls' }) : null;
    const httpTls = config.http.tls ? await loadTlsServerOptions(config.http.tls, { file, key: 'http.tls' }) : undefined;
    const log = await LevelCloudLog.open({ path: config.dataDir, durability: config.store.durability });
    this.#log = log;
    try {
      const ingress = new Ingress(this.#log, this.metrics, this.#logger.child({ component: 'ingress' }));
      const authLogger = this.#logger.child({ component: 'auth' });
      const edges = await EdgeCredentials.open(defaultEdgesFile(config), { logger: authLogger });
      const tokens = await ApiTokens.open(defaultTokensFile(config), { logger: authLogger });
      this.#warnIfOpen(edges, tokens);
      const edgeAuth = new EdgeAuth({
        credentials: edges,
        allowAnonymous: config.auth.allowAnonymous,
        clientCertificates: config.uplink.tls?.clientCertificates ?? 'none',
        metrics: this.metrics,
        logger: authLogger,
      });
      this.#edgeAuth = edgeAuth;
      const apiAuth = new ApiAuth({ tokens, allowAnonymous: config.auth.allowAnonymous, metrics: this.metrics, logger: authLogger });
      this.#apiAuth = apiAuth;
      // Commands are kept in the log's LevelDB, under their own namespaces.
      const commands = await CloudCommands.open({ store: log.store, log, metrics: this.metrics, logger: this.#logger.child({ component: 'commands' }) });
      this.#commands = commands;
      this.#listener = await startMqttServer({
        host: config.uplink.host,
        // With TLS, edges connect to uplink.port over TLS only: no plain listener.
        port: uplinkTls ? null : config.uplink.port,
        wsPort: null,
        tls: uplinkTls ? { port: config.uplink.port, options: uplinkTls } : null,
        hooks: {
          authenticate: edgeAuth.authenticate,
          // Command control messages (acknowledgements, device reports) are the commands'; batches are ingress's.
          authorizePublish: (client, packet, callback) => {
            if (!commands.handlePublish(client, packet, callback)) ingress.authorizePublish(client, packet, callback);
          },
          authorizeSubscribe: commands.authorizeSubscribe,
        },
        logger: this.#logger.child({ component: 'uplink-listener' }),
      });
      commands.attach(this.#listener.aedes);
      edgeAuth.attach(this.#listener.aedes);
      this.app = createHttpApi({
        auth: apiAuth,
        log: this.#log,
        logger: this.#logger.child({ component: 'http' }),
        metrics: this.metrics,
        health: () => ({ edges: this.#listener?.aedes.connectedClients ?? 0 }),
      });
      this.app.route('/', createCommandsApi({ commands, auth: apiAuth, defaultTtlSeconds: config.commands.defaultTtlSeconds, maxTtlSeconds: config.commands.maxTtlSeconds }));
      this.#http = await startHttpServer(this.app, { host: config.http.host, port: config.http.port, tls: httpTls });
      this.metrics.gauge('tributary_cloud_edges_connected', 'Edges connected to the uplink listener.', () => this.#listener?.aedes.connectedClients ?? 0);
      this.metrics.gauge('tributary_cloud_log_last_offset', 'Offset of the newest event in the cloud log.', () => this.#log?.lastOffset ?? 0);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.#logger.info('cloud node started', {
      uplink: `${uplinkTls ? 'mqtts' : 'mqtt'}://${config.uplink.host}:${this.ports.uplink}`,
      http: `${httpTls ? 'https' : 'http'}://${config.http.host}:${this.#http!.port}`,
      anonymous: config.auth.allowAnonymous,
      dataDir: config.dataDir,
      durability: config.store.durability,
      lastOffset: this.#log.lastOffset,
    });
  }

  /** Says at start-up when the node is open to anyone, or closed to everyone. */
  #warnIfOpen(edges: EdgeCredentials, tokens: ApiTokens): void {
    const { config } = this;
    if (config.auth.allowAnonymous) {
      this.#logger.warn(
        'auth.allowAnonymous is on: anyone who can reach the uplink can send events as any edge, and anyone who can reach the HTTP API can read the log and send commands; turn it off outside a trial',
        { uplink: `${config.uplink.host}:${config.uplink.port}`, http: `${config.http.host}:${config.http.port}` },
      );
      return;
    }
    if (edges.size === 0) {
      this.#logger.warn('no edge can connect yet: add one with "tributary edges add <edgeId>" and give the edge its token (uplink.tokenFile)', { file: edges.path });
    }
    if (tokens.size === 0) {
      this.#logger.warn('the HTTP API accepts no requests yet: make a token with "tributary tokens add <name> --scopes events:read,commands:send" (or admin)', { file: tokens.path });
    }
  }

  status(): CloudStatus {
    const m = this.metrics;
    return {
      edges: this.#listener?.aedes.connectedClients ?? 0,
      committed: m.total('tributary_cloud_events_committed_total'),
      duplicates: m.total('tributary_cloud_events_duplicate_total'),
      lastOffset: this.#log?.lastOffset ?? 0,
      streams: m.total('tributary_cloud_streams_connected'),
    };
  }

  async stop(): Promise<void> {
    this.#apiAuth?.close();
    this.#apiAuth = null;
    this.#edgeAuth?.close();
    this.#edgeAuth = null;
    await this.#http?.close();
    this.#http = null;
    await this.#listener?.close();
    this.#listener = null;
    this.#commands?.close();
    this.#commands = null;
    await this.#log?.close();
    this.#log = null;
    this.#logger.info('cloud node stopped');
  }
}
