/**
 * `tributary edges add|remove|list`: the edges a cloud node accepts on its uplink, each with its own token
 * (cloud/edge-credentials.ts). The file is found as the cloud finds it: `--edges-file`, else the config's
 * `auth.edgesFile`, else `<dataDir>/edges.json` (dataDir from `--data-dir`, the config, or `.data/cloud`).
 */
import { UsageError } from '../shared/errors.ts';
import type { FlagSpec } from '../shared/cli/args.ts';
import type { CliIo, Verb, VerbCommand } from '../shared/cli/credential-command.ts';
import { credentialsLocation, formatTable, jsonFlag, listVerb, removeVerb, requireIds, runVerbCommand, shortTime, writeJson, writeSecretFile } from '../shared/cli/credential-command.ts';
import { cloudConfigSchema } from './config.ts';
import { defaultEdgesFile, EDGE_ID_RULE, EdgeCredentials, edgeIdProblem } from './edge-credentials.ts';

const fileFlags: FlagSpec[] = [
  { name: 'config', type: 'string', value: 'FILE', help: "The cloud's config file (YAML or JSON), to find its edges file." },
  { name: 'edges-file', type: 'string', value: 'FILE', config: 'auth.edgesFile', default: '<dataDir>/edges.json', help: 'The edges file.' },
  { name: 'data-dir', type: 'string', value: 'DIR', config: 'dataDir', default: '.data/cloud', help: "The cloud's data directory." },
  jsonFlag,
];

const edgesFile = credentialsLocation({ schema: cloudConfigSchema, pathIn: defaultEdgesFile, open: (path) => EdgeCredentials.open(path) });

/** The edges file the cloud with these flags (and config file) uses. */
export const edgesFileOf = edgesFile.pathOf;

const add: Verb = {
  args: '<edgeId>...',
  spec: {
    name: 'edges add',
    summary: 'Let edges connect, each with a new token (printed once); an edge that has a token gets a new one (rotation).',
    description: `An edge id is ${EDGE_ID_RULE}, as edgeId in the edge's config.\nThe edge connects with username = its edge id and the token as password (uplink.tokenFile).\nOnly a SHA-256 of each token is stored; a replaced token stops working at once.`,
    flags: [{ name: 'token-file', type: 'string', value: 'FILE', help: 'Write the token to FILE (mode 600) instead of printing it; for one edge.' }, ...fileFlags],
    examples: ['tributary edges add plant-7 --config cloud.yaml --token-file plant-7.token', 'tributary edges add plant-7 plant-8 --json', 'tributary edges add plant-7 --data-dir /var/lib/tributary/cloud   # rotate its token'],
  },
  async run(args, io) {
    const ids = requireIds(args, 'edgeId', 'edges add', edgeIdProblem);
    const tokenFile = args.flags['token-file'] as string | undefined;
    if (tokenFile !== undefined && ids.length > 1) throw new UsageError('--token-file takes the token of one edge; add the edges one at a time');
    const edges = await edgesFile.open(args, io, true);
    const added = await edges.addMany(ids);
    if (tokenFile !== undefined) {
      const [edge] = added;
      const was = edge.replaced ? 'its old token no longer works' : 'it is in the edges file';
      await writeSecretFile(tokenFile, edge.token, (reason) => `edge ${edge.edgeId} got a new token (${was}), but it could not be saved: ${reason}; run the command again with a --token-file that can be written`);
    }
    if (args.flags.json === true) {
      writeJson(io, {
        file: edges.path,
        edges: added.map((e) => ({ edgeId: e.edgeId, tokenId: e.tokenId, ...(tokenFile === undefined ? { token: e.token } : { tokenFile }), replaced: e.replaced })),
      });
      return 0;
    }
    const lines = added.map((e) => `${edges.path}: ${e.replaced ? 'new token for' : 'added'} edge ${e.edgeId} (token id ${e.tokenId})${e.replaced ? '; the old token no longer works' : ''}`);
    if (tokenFile !== undefined) {
      lines.push(`The token is in ${tokenFile} (mode 600): copy it to the edge and set uplink.tokenFile to its path.`);
    } else {
      lines.push('', formatTable(['EDGE', 'TOKEN'], added.map((e) => [e.edgeId, e.token])).trimEnd(), '');
      lines.push(`Put ${added.length === 1 ? 'the token' : 'each token'} in a file on ${added.length === 1 ? 'the edge' : 'its edge'} and set uplink.tokenFile to its path; it is shown only this once.`);
    }
    io.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};

const remove = removeVerb({
  id: 'edgeId',
  what: 'edge',
  spec: {
    name: 'edges remove',
    summary: 'Remove edges: their tokens stop working, and a running cloud disconnects them.',
    flags: fileFlags,
    examples: ['tributary edges remove plant-7 --config cloud.yaml', 'tributary edges remove plant-7 plant-8 --json'],
  },
  file: edgesFile,
});

const list = listVerb({
  what: 'edge',
  spec: {
    name: 'edges list',
    summary: 'List the edges, their token ids and when each token was made (never the tokens).',
    flags: fileFlags,
    examples: ['tributary edges list --config cloud.yaml', 'tributary edges list --json'],
  },
  hint: 'add one with "tributary edges add <edgeId>"',
  columns: ['EDGE', 'TOKEN ID', 'TOKEN MADE'],
  row: (e) => [e.edgeId, e.tokenId, shortTime(e.createdAt)],
  file: edgesFile,
});

export const edgesCommand: VerbCommand = {
  name: 'edges',
  summary: 'Add, remove and list the edges a cloud node accepts, and their tokens.',
  description: 'The edges file is found as the cloud finds it: --edges-file, else auth.edgesFile in the config\nfile, else <dataDir>/edges.json. A running cloud re-reads it within a second.',
  verbs: { add, remove, list },
  examples: ['tributary edges add plant-7 --config cloud.yaml --token-file plant-7.token', 'tributary edges list --config cloud.yaml', 'tributary edges remove plant-7 --config cloud.yaml'],
};

export function main(argv: string[], io?: CliIo): Promise<number> {
  return runVerbCommand(edgesCommand, argv, io);
}
