/**
 * The edge node's configuration: its schema, defaults and the flags that override it.
 */
import { z } from 'zod';
import { nodeSettings } from '../shared/config.ts';
import type { FlagSpec } from '../shared/cli/args.ts';
import { compileTopicRules, DEFAULT_TOPIC_RULES } from '../shared/topic-mapping.ts';
import { tlsClientSchema, tlsServerSchema } from '../shared/tls-config.ts';
import { DEFAULT_LANE_RULES, LANE_NAMES, topicFilterRegExp } from './lanes.ts';

const port = z.number().int().min(0).max(65535);
const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be 1-64 letters, digits, "-", "_" or ".", starting with a letter or digit');

export const edgeConfigSchema = z.strictObject({
  /** This edge's name: part of every event's `source` and its identity towards the cloud. */
  edgeId: id.default('edge-1'),
  /** Where the buffer's LevelDB lives. */
  dataDir: z.string().min(1).optional(),
  mqtt: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      /** Plain MQTT over TCP; null turns it off (devices then connect over TLS only). */
      port: port.nullable().default(1883),
      /** MQTT over WebSocket; null turns it off. */
      wsPort: port.nullable().default(9001),
      /** MQTT over TLS for devices (port 8883 by convention); null (the default) turns it off. */
      tls: tlsServerSchema.extend({ port: port.default(8883) }).nullable().default(null),
    })
    .prefault({}),
  /** Who may connect, and what each device may publish and subscribe to (docs/security.md). */
  auth: z
    .strictObject({
      /** Let devices connect without credentials (the ACL still applies, by client id). Off by default; the node warns at start-up when it is on. */
      allowAnonymous: z.boolean().default(false),
      /** Device credentials (`tributary devices add|remove|list`); default `<dataDir>/devices.json`. Re-read when it changes. */
      credentialsFile: z.string().min(1).optional(),
      /**
       * Extra grants on top of each device's own topics (it may always publish to the ingest topics and command
       * replies of its own id, and subscribe to its own command topic). `{deviceId}` in a filter is the device's id.
       */
      acl: z
        .array(
          z.strictObject({
            /** Device ids this grant is for: an exact id, or a prefix ending in `*` (`gateway-*`); `*` is every device. */
            devices: z.string().min(1).default('*'),
            publish: z.array(z.string().min(1)).default([]),
            subscribe: z.array(z.string().min(1)).default([]),
          }),
        )
        .default([]),
    })
    .prefault({}),
  /** Limits against abuse; each breach is logged with the client and counted. 0 turns a limit off. */
  limits: z
    .strictObject({
      /** Largest MQTT packet a client may send; a larger one closes its connection before it is read. */
      maxPacketBytes: z.number().int().min(0).default(1024 * 1024),
      /** Largest publish payload; a larger one is dropped (dead letter without its payload, counted). */
      maxPayloadBytes: z.number().int().min(0).default(256 * 1024),
      /** Longest topic name or filter, in bytes. */
      maxTopicLength: z.number().int().min(0).default(256),
      /** Most levels in a topic name or filter. */
      maxTopicLevels: z.number().int().min(0).max(100).default(16),
      /** Longest client id; a longer one is refused with CONNACK 2 (identifier rejected). */
      maxClientIdLength: z.number().int().min(0).max(65535).default(128),
      /** Most connections from one IP address; more are refused with CONNACK 3 (server unavailable). */
      maxConnectionsPerIp: z.number().int().min(0).default(256),
      /** Sustained publishes per second per device (token bucket); above it QoS 1 is slowed down, QoS 0 dropped. */
      publishRatePerSecond: z.number().min(0).default(200),
      /** Publishes a device may burst above its rate. */
      publishBurst: z.number().int().min(0).default(1000),
      /** Most QoS 1 publishes from one client awaiting their PUBACK; more disconnect it. */
      maxInflight: z.number().int().min(0).default(65535),
      /** A client that reads nothing for this long while the edge writes to it (a slow consumer) is disconnected. */
      drainTimeoutMs: z.number().int().min(0).default(30_000),
      /** Time a new connection has to send CONNECT. */
      connectTimeoutMs: z.number().int().min(100).default(10_000),
    })
    .prefault({}),
  ingest: z
    .strictObject({
      topics: z
        .array(z.strictObject({ topic: z.string().min(1), type: z.string().min(1) }))
        .min(1)
        .default([...DEFAULT_TOPIC_RULES])
        .superRefine((rules, ctx) => {
          try {
            compileTopicRules(rules);
          } catch (err) {
            ctx.addIssue({ code: 'custom', message: (err as Error).message });
          }
        }),
    })
    .prefault({}),
  buffer: z
    .strictObject({
      durability: z.enum(['power-safe', 'crash-safe']).default('power-safe'),
      /** Most bytes of events the buffer holds (the events' encoded size; LevelDB's files add some overhead). */
      maxBytes: z.number().int().min(1024 * 1024).default(256 * 1024 * 1024),
      /** Default time to live of a buffered event, in seconds; 0 keeps events until the cloud has them. An event's own `expirytime` wins when it is sooner. */
      maxAgeSeconds: z.number().int().min(0).default(7 * 24 * 3600),
      /** What happens when the buffer is full: `backpressure` (QoS 1 devices get no PUBACK until there is room; nothing acknowledged is dropped) or `drop-oldest` (the oldest events of the lowest lane go first, counted). */
      overflow: z.enum(['backpressure', 'drop-oldest']).default('backpressure'),
      /** Which lane an event travels in, by type prefix or topic filter; the first rule that matches wins, the default lane is `normal`. */
      lanes: z
        .array(
          z
            .strictObject({
              /** CloudEvent `type` prefix, e.g. `io.tributary.alert.`. */
              type: z.string().min(1).optional(),
              /** MQTT topic filter (`+` and `#` wildcards), e.g. `alarms/#`. */
              topic: z.string().min(1).optional(),
              lane: z.enum(LANE_NAMES),
            })
            .refine((r) => r.type !== undefined || r.topic !== undefined, 'a lane rule needs "type" or "topic"')
            .superRefine((r, ctx) => {
              if (r.topic === undefined) return;
              try {
                topicFilterRegExp(r.topic);
              } catch (err) {
                ctx.addIssue({ code: 'custom', path: ['topic'], message: (err as Error).message });
              }
            }),
        )
        .default([...DEFAULT_LANE_RULES]),
    })
    .prefault({}),
  commands: z
    .strictObject({
      /** Topic the edge publishes a device's commands on ({deviceId} is replaced). Devices subscribe to it. */
      topic: z.string().min(1).default('commands/{deviceId}'),
      /** Topic a device replies on; {commandId} is the id of the command it answers. */
      replyTopic: z.string().min(1).default('commands/{deviceId}/replies/{commandId}'),
    })
    .prefault({}),
  http: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      /** Status endpoint (`/v1/status` JSON, `/metrics` Prometheus text); null turns it off. */
      port: port.nullable().default(8081),
    })
    .prefault({}),
  uplink: z
    .strictObject({
      url: z.string().regex(/^(mqtts?|wss?|tcp|tls):\/\/.+/, 'must be an MQTT URL such as mqtt://cloud.example:1884').default('mqtt://127.0.0.1:1884'),
      batchMaxEvents: z.number().int().min(1).max(100_000).default(1000),
      batchMaxBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
      inflight: z.number().int().min(1).max(64).default(8),
      keepaliveSeconds: z.number().int().min(1).max(3600).default(30),
      reconnectInitialMs: z.number().int().min(10).default(500),
      reconnectMaxMs: z.number().int().min(100).default(10_000),
      /** This edge's token for the cloud (`tributary edges add <edgeId>` on the cloud prints it). Prefer `tokenFile`. */
      token: z.string().min(1).optional(),
      /** A file holding the token (first line). */
      tokenFile: z.string().min(1).optional(),
      /** TLS for `mqtts://`, `tls://` and `wss://` URLs: the CA that signed the cloud's certificate, and a client certificate if the cloud asks for one. */
      tls: tlsClientSchema.prefault({}),
    })
    .refine((u) => u.token === undefined || u.tokenFile === undefined, { message: 'give "token" or "tokenFile", not both', path: ['token'] })
    .prefault({}),
  ...nodeSettings,
});

export type EdgeConfig = z.output<typeof edgeConfigSchema>;

export const edgeFlags: FlagSpec[] = [
  { name: 'config', type: 'string', value: 'FILE', help: 'YAML or JSON config file.' },
  { name: 'edge-id', type: 'string', value: 'ID', config: 'edgeId', default: 'edge-1', help: "This edge's name." },
  { name: 'data-dir', type: 'string', value: 'DIR', config: 'dataDir', default: '.data/<edgeId>', help: 'Directory of the store-and-forward buffer.' },
  { name: 'host', type: 'string', config: 'mqtt.host', default: '127.0.0.1', help: 'Address the MQTT listeners bind to (0.0.0.0 for the whole network).' },
  { name: 'port', type: 'number', config: 'mqtt.port', default: 1883, help: 'MQTT TCP port for devices.' },
  { name: 'ws-port', type: 'number', config: 'mqtt.wsPort', default: 9001, help: 'MQTT over WebSocket port.' },
  { name: 'cloud', type: 'string', value: 'URL', config: 'uplink.url', default: 'mqtt://127.0.0.1:1884', help: "The cloud node's uplink URL." },
  { name: 'durability', type: 'string', value: 'MODE', config: 'buffer.durability', default: 'power-safe', help: 'power-safe (fsync every group commit) or crash-safe (survives kill -9, not power loss).' },
  { name: 'buffer-max-bytes', type: 'number', value: 'BYTES', config: 'buffer.maxBytes', default: 256 * 1024 * 1024, help: 'Most bytes of events the buffer holds.' },
  { name: 'buffer-max-age', type: 'number', value: 'SECONDS', config: 'buffer.maxAgeSeconds', default: 604800, help: 'Default time to live of a buffered event (0: no limit).' },
  { name: 'overflow', type: 'string', value: 'POLICY', config: 'buffer.overflow', default: 'backpressure', help: 'When the buffer is full: backpressure (no PUBACK until there is room) or drop-oldest.' },
  { name: 'tls-port', type: 'number', config: 'mqtt.tls.port', default: 8883, help: 'MQTT over TLS port (needs mqtt.tls.certFile and keyFile in the config file).' },
  { name: 'allow-anonymous', type: 'boolean', config: 'auth.allowAnonymous', default: false, help: 'Let devices connect without credentials (the ACL still applies, by client id).' },
  { name: 'credentials', type: 'string', value: 'FILE', config: 'auth.credentialsFile', default: '<dataDir>/devices.json', help: 'Device credentials file (tributary devices add|remove|list).' },
  { name: 'publish-rate', type: 'number', value: 'N', config: 'limits.publishRatePerSecond', default: 200, help: 'Sustained publishes per second per device (0: no limit).' },
  { name: 'max-connections-per-ip', type: 'number', value: 'N', config: 'limits.maxConnectionsPerIp', default: 256, help: 'Most device connections from one IP address (0: no limit).' },
  { name: 'uplink-token-file', type: 'string', value: 'FILE', config: 'uplink.tokenFile', help: "File with this edge's token for the cloud (tributary edges add on the cloud)." },
  { name: 'http-port', type: 'number', config: 'http.port', default: 8081, help: 'Status endpoint port (/v1/status, /metrics).' },
  { name: 'status-interval', type: 'number', value: 'MS', config: 'statusIntervalMs', default: 5000, help: 'How often to log a status line (0: never).' },
  { name: 'log-level', type: 'string', value: 'LEVEL', config: 'log.level', default: 'info', help: 'debug, info, warn, error or silent.' },
  { name: 'log-format', type: 'string', value: 'FORMAT', config: 'log.format', default: 'json', help: 'json (one object per line) or pretty.' },
];
