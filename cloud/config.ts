/**
 * The cloud node's configuration: its schema, defaults and the flags that override it.
 */
import { z } from 'zod';
import { nodeSettings } from '../shared/config.ts';
import type { FlagSpec } from '../shared/cli/args.ts';

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
    })
    .prefault({}),
  http: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: port.default(8080),
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
  { name: 'durability', type: 'string', value: 'MODE', config: 'store.durability', default: 'power-safe', help: 'power-safe (fsync every commit) or crash-safe.' },
  { name: 'status-interval', type: 'number', value: 'MS', config: 'statusIntervalMs', default: 5000, help: 'How often to log a status line (0: never).' },
  { name: 'log-level', type: 'string', value: 'LEVEL', config: 'log.level', default: 'info', help: 'debug, info, warn, error or silent.' },
  { name: 'log-format', type: 'string', value: 'FORMAT', config: 'log.format', default: 'json', help: 'json (one object per line) or pretty.' },
];
