/**
 * The cloud mesh node: uplink ingress → cloud log → HTTP API and streams. No side effects until `start()`.
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
  app: Hono | null = null;

  constructor(config: CloudConfig, logger: Logger) {
    this.config = config;
    this.#logger = logger.child({ component: 'cloud' });
  }

  get log(): CloudLog {
    if (!this.#log) throw new Error('the cloud node is not started');
    return this.#log;
  }

  get ports(): { uplink: number; http: number } {
    if (!this.#listener || !this.#http) throw new Error('the cloud node is not started');
    return { uplink: this.#listener.port, http: this.#http.port };
  }

  async start(): Promise<void> {
    const { config } = this;
    const log = await LevelCloudLog.open({ path: config.dataDir, durability: config.store.durability });
    this.#log = log;
    try {
      const ingress = new Ingress(this.#log, this.metrics, this.#logger.child({ component: 'ingress' }));
      // Commands are kept in the log's LevelDB, under their own namespaces.
      const commands = await CloudCommands.open({ store: log.store, log, metrics: this.metrics, logger: this.#logger.child({ component: 'commands' }) });
      this.#commands = commands;
      this.#listener = await startMqttServer({
        host: config.uplink.host,
        port: config.uplink.port,
        wsPort: null,
        hooks: {
          // Command control messages (acknowledgements, device reports) are the commands'; batches are ingress's.
          authorizePublish: (client, packet, callback) => {
            if (!commands.handlePublish(client, packet, callback)) ingress.authorizePublish(client, packet, callback);
          },
          authorizeSubscribe: commands.authorizeSubscribe,
        },
        logger: this.#logger.child({ component: 'uplink-listener' }),
      });
      commands.attach(this.#listener.aedes);
      this.app = createHttpApi({
        log: this.#log,
        logger: this.#logger.child({ component: 'http' }),
        metrics: this.metrics,
        health: () => ({ edges: this.#listener?.aedes.connectedClients ?? 0 }),
      });
      this.app.route('/', createCommandsApi({ commands, defaultTtlSeconds: config.commands.defaultTtlSeconds, maxTtlSeconds: config.commands.maxTtlSeconds }));
      this.#http = await startHttpServer(this.app, { host: config.http.host, port: config.http.port });
      this.metrics.gauge('tributary_cloud_edges_connected', 'Edges connected to the uplink listener.', () => this.#listener?.aedes.connectedClients ?? 0);
      this.metrics.gauge('tributary_cloud_log_last_offset', 'Offset of the newest event in the cloud log.', () => this.#log?.lastOffset ?? 0);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.#logger.info('cloud node started', {
      uplink: `mqtt://${config.uplink.host}:${this.#listener!.port}`,
      http: `http://${config.http.host}:${this.#http!.port}`,
      dataDir: config.dataDir,
      durability: config.store.durability,
      lastOffset: this.#log.lastOffset,
    });
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
