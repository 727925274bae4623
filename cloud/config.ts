/**
 * The cloud node's configuration: its schema, defaults and the flags that override it.
 */
import { z } from 'zod';
import { nodeSettings } from '../shared/config.ts';
import type { FlagSpec } from '../shared/cli/args.ts';
import { tlsServerSchema } from '../shared/tls-config.ts';

const port = z.number().int().min(0).max(65535);

export const cloudConfigSchema = z.strictObject({
  /** Where the cloud log's LevelDB lives. */
  dataDir: z.string().min(1).default('.data/cloud'),
  store: z
    .strictObject({
      durability: z.enum(['power-safe', 'crash-safe']).default('power-safe'),
    })
    .prefault({}),
  uplink: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: port.default(1884),
      /** TLS for the uplink listener; with `clientCertificates`, an edge may prove its name with a certificate (CN = edge id). */
      tls: tlsServerSchema.nullable().default(null),
    })
    .prefault({}),
  http: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: port.default(8080),
      /** HTTPS for the API and streams; null (the default) serves plain HTTP. */
      tls: tlsServerSchema.nullable().default(null),
    })
    .prefault({}),
  /** Who may use the uplink and the API (docs/security.md). */
  auth: z
    .strictObject({
      /** Accept edges and API requests without credentials. Off by default; the node warns at start-up when it is on. */
      allowAnonymous: z.boolean().default(false),
      /** Edge credentials (`tributary edges add|remove|list`); default `<dataDir>/edges.json`. */
      edgesFile: z.string().min(1).optional(),
      /** API bearer tokens with scopes (`tributary tokens add|remove|list`); default `<dataDir>/tokens.json`. */
      tokensFile: z.string().min(1).optional(),
    })
    .prefault({}),
  webhooks: z
    .strictObject({
      /** URL schemes a webhook sink may use. */
      schemes: z.array(z.enum(['https', 'http'])).min(1).default(['https', 'http']),
      /**
       * Addresses a webhook may not reach: IP addresses, CIDR ranges and host names. The default keeps link-local
       * ranges and cloud metadata endpoints out of reach; add private ranges for a public cloud node.
       */
      denyList: z.array(z.string().min(1)).default(['169.254.0.0/16', 'fe80::/10', 'fd00:ec2::254', 'metadata.google.internal', 'metadata.azure.com', '100.100.100.200']),
    })
    .prefault({}),
  commands: z
    .strictObject({
      /** Time to live of a command when the request names none, in seconds. */
      defaultTtlSeconds: z.number().int().min(1).default(3600),
      /** Longest time to live a request may ask for, in seconds. */
      maxTtlSeconds: z.number().int().min(1).default(7 * 24 * 3600),
    })
    .prefault({}),
  ...nodeSettings,
});

export type CloudConfig = z.output<typeof cloudConfigSchema>;

export const cloudFlags: FlagSpec[] = [
  { name: 'config', type: 'string', value: 'FILE', help: 'YAML or JSON config file.' },
  { name: 'data-dir', type: 'string', value: 'DIR', config: 'dataDir', default: '.data/cloud', help: 'Directory of the cloud log.' },
  { name: 'uplink-host', type: 'string', config: 'uplink.host', default: '127.0.0.1', help: 'Address the edge uplink listener binds to.' },
  { name: 'uplink-port', type: 'number', config: 'uplink.port', default: 1884, help: 'MQTT port that edges connect to.' },
  { name: 'http-host', type: 'string', config: 'http.host', default: '127.0.0.1', help: 'Address the HTTP API binds to.' },
  { name: 'http-port', type: 'number', config: 'http.port', default: 8080, help: 'HTTP API port.' },
  { name: 'allow-anonymous', type: 'boolean', config: 'auth.allowAnonymous', default: false, help: 'Accept edges and API requests without credentials.' },
  { name: 'durability', type: 'string', value: 'MODE', config: 'store.durability', default: 'power-safe', help: 'power-safe (fsync every commit) or crash-safe.' },
  { name: 'status-interval', type: 'number', value: 'MS', config: 'statusIntervalMs', default: 5000, help: 'How often to log a status line (0: never).' },
  { name: 'log-level', type: 'string', value: 'LEVEL', config: 'log.level', default: 'info', help: 'debug, info, warn, error or silent.' },
  { name: 'log-format', type: 'string', value: 'FORMAT', config: 'log.format', default: 'json', help: 'json (one object per line) or pretty.' },
];
