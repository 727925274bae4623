/**
 * `tributary edge`: run an edge node until SIGINT/SIGTERM.
 */
import type { CommandSpec } from '../shared/cli/args.ts';
import { runNodeCommand } from '../shared/cli/node-command.ts';
import { edgeConfigSchema, edgeFlags } from './config.ts';
import { EdgeNode } from './edge-node.ts';

export const spec: CommandSpec = {
  name: 'edge',
  summary: 'Run an edge node: an MQTT broker for devices, a durable store-and-forward buffer and the uplink to the cloud.',
  description:
    'Devices publish to telemetry/{deviceId}/{metric}; every message becomes a CloudEvent, is made durable in the\nbuffer before its QoS 1 PUBACK, and is forwarded to the cloud node when the link is up.\nIts status (buffer per lane, link, rates, drops) is served on --http-port: /v1/status (JSON), /metrics (Prometheus).',
  flags: edgeFlags,
  examples: [
    'tributary edge',
    'tributary edge --config edge.yaml',
    'tributary edge --edge-id plant-7 --port 1883 --cloud mqtt://cloud.example:1884',
    'tributary edge --http-port 9081   # then: tributary status --edge http://127.0.0.1:9081',
  ],
};

export function main(argv: string[]): Promise<number> {
  return runNodeCommand(
    {
      spec,
      schema: edgeConfigSchema,
      logSettings: (c) => c.log,
      statusIntervalMs: (c) => c.statusIntervalMs,
      create: (c, logger, context) => new EdgeNode(c, logger, context),
      rateKeys: ['accepted', 'forwarded'],
    },
    argv,
  );
}
