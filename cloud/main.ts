/**
 * `tributary cloud`: run a cloud mesh node until SIGINT/SIGTERM.
 */
import type { CommandSpec } from '../shared/cli/args.ts';
import { runNodeCommand } from '../shared/cli/node-command.ts';
import { CloudNode } from './cloud-node.ts';
import { cloudConfigSchema, cloudFlags } from './config.ts';

export const spec: CommandSpec = {
  name: 'cloud',
  summary: 'Run a cloud mesh node: the uplink listener for edges, the durable event log, the HTTP API and live streams.',
  description:
    'Closed by default: an edge connects with its token (tributary edges add <edgeId>) or a client certificate, and\nAPI requests carry a bearer token with a scope (tributary tokens add <name> --scopes events:read). --allow-anonymous\nopens both (for trials only). See docs/security.md.',
  flags: cloudFlags,
  examples: ['tributary cloud', 'tributary cloud --config cloud.yaml', 'tributary cloud --http-port 8080 --uplink-port 1884'],
};

export function main(argv: string[]): Promise<number> {
  return runNodeCommand(
    {
      spec,
      schema: cloudConfigSchema,
      logSettings: (c) => c.log,
      statusIntervalMs: (c) => c.statusIntervalMs,
      create: (c, logger, context) => new CloudNode(c, logger, context),
      rateKeys: ['committed'],
    },
    argv,
  );
}
