/**
 * `tributary tokens add|remove|list`: bearer tokens for the cloud's HTTP API and streams, with scopes and an
 * optional expiry (cloud/api-tokens.ts). The file is found as the cloud finds it: `--tokens-file`, else the
 * config's `auth.tokensFile`, else `<dataDir>/tokens.json` (dataDir from `--data-dir`, the config, or
 * `.data/cloud`). `list` shows ids and names, never tokens.
 */
import { UsageError } from '../shared/errors.ts';
import type { FlagSpec } from '../shared/cli/args.ts';
import type { CliIo, Verb, VerbCommand } from '../shared/cli/credential-command.ts';
import { credentialsLocation, jsonFlag, listVerb, plural, requireIds, runVerbCommand, shortTime, writeJson, writeSecretFile } from '../shared/cli/credential-command.ts';
import { ApiTokens, defaultTokensFile, parseScopes, SCOPES, tokenNameProblem } from './api-tokens.ts';
import { cloudConfigSchema } from './config.ts';

const fileFlags: FlagSpec[] = [
  { name: 'config', type: 'string', value: 'FILE', help: "The cloud's config file (YAML or JSON), to find its tokens file." },
  { name: 'tokens-file', type: 'string', value: 'FILE', config: 'auth.tokensFile', default: '<dataDir>/tokens.json', help: 'The tokens file.' },
  { name: 'data-dir', type: 'string', value: 'DIR', config: 'dataDir', default: '.data/cloud', help: "The cloud's data directory." },
  jsonFlag,
];

const tokensFile = credentialsLocation({ schema: cloudConfigSchema, pathIn: defaultTokensFile, open: (path) => ApiTokens.open(path) });

/** The tokens file the cloud with these flags (and config file) uses. */
export const tokensFileOf = tokensFile.pathOf;

const UNITS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * `30d`, `12h`, `90m` (from `now`) or an ISO date or time (`2026-01-31`, `2026-01-31T18:00:00Z`) → the time a
 * token expires. A UsageError for anything else, or for a time not in the future.
 */
export function parseExpiry(text: string, now: number = Date.now()): Date {
  const relative = /^(\d{1,6})([mhd])$/.exec(text.trim());
  let at: number;
  if (relative) {
    at = now + Number(relative[1]) * UNITS[relative[2] as keyof typeof UNITS];
  } else if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim())) {
    at = Date.parse(text.trim());
  } else {
    at = Number.NaN;
  }
  if (Number.isNaN(at)) throw new UsageError(`flag --expires takes a duration such as 30d, 12h or 90m, or an ISO date such as 2026-01-31, got "${text}"`);
  if (at <= now) throw new UsageError(`flag --expires: ${new Date(at).toISOString()} is not in the future`);
  return new Date(at);
}

const add: Verb = {
  args: '<name>',
  spec: {
    name: 'tokens add',
    summary: 'Make an API token with scopes (printed once).',
    description: `Scopes: ${SCOPES.join(', ')} (admin implies all).\nA name is 1-64 letters, digits, "-", "_" or "."; names need not be unique (rotate: add, then remove the old id).\nSend the token as "Authorization: Bearer <token>". Only a SHA-256 of it is stored.`,
    flags: [
      { name: 'scopes', type: 'string', value: 'LIST', help: `Comma-separated scopes: ${SCOPES.join(', ')}.` },
      { name: 'expires', type: 'string', value: 'WHEN', help: 'When the token stops working: 30d, 12h, 90m, or an ISO date (default: never).' },
      { name: 'token-file', type: 'string', value: 'FILE', help: 'Write the token to FILE (mode 600) instead of printing it.' },
      ...fileFlags,
    ],
    examples: [
      'tributary tokens add dashboard --scopes events:read --expires 90d --config cloud.yaml',
      'tributary tokens add ops --scopes commands:send,events:read --token-file ops.token',
      'tributary tokens add ci --scopes admin --expires 2026-01-31 --json',
    ],
  },
  async run(args, io) {
    if (args.positionals.length === 0) throw new UsageError(`name the token: tributary tokens add <name> --scopes ${SCOPES[0]}`);
    const [name, ...extra] = args.positionals;
    if (extra.length) throw new UsageError(`tokens add makes one token; unexpected argument "${extra[0]}"`);
    const problem = tokenNameProblem(name);
    if (problem) throw new UsageError(problem);
    if (args.flags.scopes === undefined) throw new UsageError(`flag --scopes is required: one or more of ${SCOPES.join(', ')}, comma-separated`);
    const scopes = parseScopes(String(args.flags.scopes));
    const expiresAt = args.flags.expires === undefined ? undefined : parseExpiry(String(args.flags.expires));
    const tokenFile = args.flags['token-file'] as string | undefined;
    const tokens = await tokensFile.open(args, io, true);
    const { id, token } = await tokens.add(name, scopes, { expiresAt });
    if (tokenFile !== undefined) {
      await writeSecretFile(tokenFile, token, async (reason) => {
        await tokens.remove(id);
        return `${reason}; the token was not kept`;
      });
    }
    const expires = expiresAt?.toISOString();
    if (args.flags.json === true) {
      writeJson(io, { file: tokens.path, id, name, scopes, ...(expires ? { expiresAt: expires } : {}), ...(tokenFile === undefined ? { token } : { tokenFile }) });
      return 0;
    }
    const lines = [`${tokens.path}: added token ${name} (id ${id}, scopes ${scopes.join(',')}, ${expires ? `expires ${shortTime(expires)}` : 'does not expire'})`];
    if (tokenFile !== undefined) {
      lines.push(`The token is in ${tokenFile} (mode 600). Send it as "Authorization: Bearer <token>".`);
    } else {
      lines.push('', token, '', 'Send it as "Authorization: Bearer <token>"; it is shown only this once.');
    }
    io.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};

const remove: Verb = {
  args: '<id|name>...',
  spec: {
    name: 'tokens remove',
    summary: 'Remove tokens by id, or every token with a name; they stop working at once.',
    flags: fileFlags,
    examples: ['tributary tokens remove dashboard --config cloud.yaml', 'tributary tokens remove 0a1b2c3d4e5f'],
  },
  async run(args, io) {
    const names = requireIds(args, 'id|name', 'tokens remove');
    const tokens = await tokensFile.open(args, io, true);
    const counts: Record<string, number> = {};
    for (const idOrName of names) counts[idOrName] = await tokens.remove(idOrName);
    const missing = names.filter((n) => counts[n] === 0);
    if (args.flags.json === true) {
      writeJson(io, { file: tokens.path, removed: counts, missing });
    } else {
      for (const n of names) if (counts[n] > 0) io.stdout.write(`${tokens.path}: removed ${plural(counts[n], 'token')} (${n})\n`);
      if (missing.length) io.stderr.write(`tributary: no token with id or name ${missing.join(', ')} in ${tokens.path}\n`);
    }
    return missing.length ? 1 : 0;
  },
};

const list = listVerb({
  what: 'token',
  spec: {
    name: 'tokens list',
    summary: 'List tokens: ids, names, scopes and expiry (never the tokens).',
    flags: fileFlags,
    examples: ['tributary tokens list --config cloud.yaml', 'tributary tokens list --json'],
  },
  hint: `make one with "tributary tokens add <name> --scopes ${SCOPES[0]}"`,
  columns: ['ID', 'NAME', 'SCOPES', 'MADE', 'EXPIRES'],
  row: (t) => [t.id, t.name, t.scopes.join(','), shortTime(t.createdAt), t.expiresAt === undefined ? 'never' : `${shortTime(t.expiresAt)}${t.expired ? ' (expired)' : ''}`],
  file: tokensFile,
});

export const tokensCommand: VerbCommand = {
  name: 'tokens',
  summary: "Add, remove and list the bearer tokens of a cloud node's HTTP API and streams.",
  description: 'The tokens file is found as the cloud finds it: --tokens-file, else auth.tokensFile in the config\nfile, else <dataDir>/tokens.json. A running cloud re-reads it within a second.',
  verbs: { add, remove, list },
  examples: ['tributary tokens add dashboard --scopes events:read --expires 90d --config cloud.yaml', 'tributary tokens list --config cloud.yaml', 'tributary tokens remove dashboard --config cloud.yaml'],
};

export function main(argv: string[], io?: CliIo): Promise<number> {
  return runVerbCommand(tokensCommand, argv, io);
}
