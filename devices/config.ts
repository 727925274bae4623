/**
 * The device simulator's configuration (`tributary simulate`): its schema, defaults, the flags that override it,
 * and how it becomes `FleetOptions`.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { ConfigError } from '../shared/errors.ts';
import { nodeSettings } from '../shared/config.ts';
import type { FlagSpec } from '../shared/cli/args.ts';
import type { FleetOptions } from './fleet.ts';
import { PROFILE_NAMES } from './profiles.ts';

export const simulatorConfigSchema = z.strictObject({
  edge: z
    .strictObject({
      url: z
        .string()
        .regex(/^(mqtts?|wss?|tcp|tls):\/\/.+/, 'must be an MQTT URL such as mqtt://127.0.0.1:1883 or ws://127.0.0.1:9001')
        .default('mqtt://127.0.0.1:1883'),
      /** One username and password for every device; prefer `credentialsFile`. */
      username: z.string().optional(),
      password: z.string().optional(),
      /** Per-device passwords: the JSON that `tributary devices add --json` prints (`{"devices": [{"deviceId", "password"}]}`). */
      credentialsFile: z.string().min(1).optional(),
      /** CA certificate (PEM file) for `mqtts://` and `wss://` edges. */
      caFile: z.string().min(1).optional(),
    })
    .prefault({}),
  devices: z.number().int().min(1).max(100_000).default(20),
  /** Messages per second per device; fractional rates are fine (0.1: one every 10 s). */
  rate: z.number().positive().max(10_000).default(1),
  qos: z.literal([0, 1]).default(1),
  seed: z.number().int().default(1),
  /** Device ids are `{prefix}0001`, `{prefix}0002`, ... and the device's topic level. */
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{0,40}$/, 'must be at most 40 letters, digits, "-", "_" or "."')
    .default('sim-'),
  /** What every device measures; `mixed` assigns the profiles round-robin. */
  profile: z.enum(['mixed', ...PROFILE_NAMES]).default('mixed'),
  /** Each device stops after this many messages, and the simulator exits once all are acknowledged. */
  messagesPerDevice: z.number().int().min(1).optional(),
  /** MQTT clean session; false keeps a persistent session per device. */
  clean: z.boolean().default(false),
  /** Unacknowledged publishes per device before it pauses. */
  inflight: z.number().int().min(1).max(65_535).default(32),
  keepaliveSeconds: z.number().int().min(0).max(65_535).default(30),
  /** New connections per second while starting. */
  connectRate: z.number().positive().default(250),
  reconnectPeriodMs: z.number().int().min(10).default(1000),
  ...nodeSettings,
});

export type SimulatorConfig = z.output<typeof simulatorConfigSchema>;

export const simulatorFlags: FlagSpec[] = [
  { name: 'config', type: 'string', value: 'FILE', help: 'YAML or JSON config file.' },
  { name: 'edge', type: 'string', value: 'URL', config: 'edge.url', default: 'mqtt://127.0.0.1:1883', help: "The edge node's MQTT URL (mqtt:// or ws://)." },
  { name: 'credentials', type: 'string', value: 'FILE', config: 'edge.credentialsFile', help: 'Per-device passwords, as printed by "tributary devices add --json".' },
  { name: 'ca', type: 'string', value: 'FILE', config: 'edge.caFile', help: 'CA certificate for an mqtts:// edge.' },
  { name: 'devices', type: 'number', value: 'N', config: 'devices', default: 20, help: 'How many devices.' },
  { name: 'rate', type: 'number', value: 'R', config: 'rate', default: 1, help: 'Messages per second per device (fractional is fine).' },
  { name: 'qos', type: 'number', value: '0|1', config: 'qos', default: 1, help: 'MQTT QoS of every publish.' },
  { name: 'seed', type: 'number', value: 'N', config: 'seed', default: 1, help: 'Seed of the readings: the same seed gives the same values.' },
  { name: 'messages', type: 'number', value: 'N', config: 'messagesPerDevice', help: 'Messages per device; exit once all are acknowledged (QoS 0: sent).' },
  { name: 'prefix', type: 'string', config: 'prefix', default: 'sim-', help: 'Device id prefix (ids are {prefix}0001, ...).' },
  { name: 'profile', type: 'string', value: 'NAME', config: 'profile', default: 'mixed', help: `What the devices measure: mixed, ${PROFILE_NAMES.join(', ')}.` },
  { name: 'inflight', type: 'number', value: 'N', config: 'inflight', default: 32, help: 'Unacknowledged publishes per device before it pauses.' },
  { name: 'clean', type: 'boolean', config: 'clean', default: false, help: 'Use MQTT clean sessions instead of persistent ones.' },
  { name: 'connect-rate', type: 'number', value: 'N', config: 'connectRate', default: 250, help: 'New connections per second while starting.' },
  { name: 'ack-file', type: 'string', value: 'FILE', help: 'Append "deviceId seq" for every acknowledged message to FILE.' },
  { name: 'status-interval', type: 'number', value: 'MS', config: 'statusIntervalMs', default: 5000, help: 'How often to log a status line (0: never).' },
  { name: 'log-level', type: 'string', value: 'LEVEL', config: 'log.level', default: 'info', help: 'debug, info, warn, error or silent.' },
  { name: 'log-format', type: 'string', value: 'FORMAT', config: 'log.format', default: 'json', help: 'json (one object per line) or pretty.' },
];

/** The fleet a configuration describes (without the hooks: logger, ackLog), with its credential files read. */
export async function toFleetOptions(config: SimulatorConfig, configFile?: string): Promise<FleetOptions> {
  return {
    url: config.edge.url,
    username: config.edge.username,
    password: config.edge.password,
    credentials: config.edge.credentialsFile === undefined ? undefined : await readDeviceCredentials(config.edge.credentialsFile, configFile),
    ca: config.edge.caFile === undefined ? undefined : await readText(config.edge.caFile, 'edge.caFile', configFile),
    devices: config.devices,
    rate: config.rate,
    qos: config.qos,
    seed: config.seed,
    prefix: config.prefix,
    profile: config.profile === 'mixed' ? undefined : config.profile,
    messagesPerDevice: config.messagesPerDevice,
    clean: config.clean,
    inflight: config.inflight,
    keepalive: config.keepaliveSeconds,
    connectRate: config.connectRate,
    reconnectPeriodMs: config.reconnectPeriodMs,
  };
}

/** Reads `{"devices": [{"deviceId", "password"}]}` (the output of `tributary devices add --json`). */
async function readDeviceCredentials(file: string, configFile: string | undefined): Promise<Map<string, string>> {
  const text = await readText(file, 'edge.credentialsFile', configFile);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file} is not JSON: ${(err as Error).message}`, { file: configFile, key: 'edge.credentialsFile' }, { cause: err });
  }
  const devices = (parsed as { devices?: unknown }).devices;
  const valid = Array.isArray(devices) && devices.every((d) => typeof d?.deviceId === 'string' && typeof d?.password === 'string');
  if (!valid) {
    throw new ConfigError(`${file} must hold {"devices": [{"deviceId": "...", "password": "..."}]}, as "tributary devices add --json" prints`, { file: configFile, key: 'edge.credentialsFile' });
  }
  return new Map((devices as { deviceId: string; password: string }[]).map((d) => [d.deviceId, d.password]));
}

async function readText(file: string, key: string, configFile: string | undefined): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file: configFile, key }, { cause: err });
  }
}
