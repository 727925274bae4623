/**
 * `tributary devices add|remove|list`: the devices that may connect to an edge with a password
 * (edge/device-credentials.ts). The file is found as the edge finds it: `--credentials`, else the config's
 * `auth.credentialsFile`, else `<dataDir>/devices.json` with dataDir from `--data-dir`, the config, or
 * `.data/<edgeId>`. A running edge sees the change within a second; a removed device is disconnected.
 */
import { join } from 'node:path';
import { UsageError } from '../shared/errors.ts';
import type { FlagSpec } from '../shared/cli/args.ts';
import type { CliIo, Verb, VerbCommand } from '../shared/cli/credential-command.ts';
import { credentialsLocation, formatTable, jsonFlag, listVerb, plural, readStdin, removeVerb, requireIds, runVerbCommand, shortTime, writeJson } from '../shared/cli/credential-command.ts';
import { edgeConfigSchema } from './config.ts';
import { defaultCredentialsFile, DEVICE_ID_RULE, DeviceCredentials, deviceIdProblem } from './device-credentials.ts';

const fileFlags: FlagSpec[] = [
  { name: 'config', type: 'string', value: 'FILE', help: "The edge's config file (YAML or JSON), to find its credentials file." },
  { name: 'credentials', type: 'string', value: 'FILE', config: 'auth.credentialsFile', default: '<dataDir>/devices.json', help: 'The credentials file.' },
  { name: 'data-dir', type: 'string', value: 'DIR', config: 'dataDir', default: '.data/<edgeId>', help: "The edge's data directory." },
  { name: 'edge-id', type: 'string', value: 'ID', config: 'edgeId', default: 'edge-1', help: "The edge's name (for the default data directory)." },
  jsonFlag,
];

const credentialsFile = credentialsLocation({
  schema: edgeConfigSchema,
  pathIn: (config) => defaultCredentialsFile(config, config.dataDir ?? join('.data', config.edgeId)),
  open: (path) => DeviceCredentials.open(path),
});

/** The credentials file the edge with these flags (and config file) uses. */
export const credentialsFileOf = credentialsFile.pathOf;

const add: Verb = {
  args: '<deviceId>...',
  spec: {
    name: 'devices add',
    summary: 'Add devices, each with a generated password (printed once), or give existing ones a new password.',
    description: `A device id is ${DEVICE_ID_RULE}.\nA device connects with username and client id = its device id, and its password.\nOnly a scrypt hash of each password is stored.`,
    flags: [
      { name: 'password-stdin', type: 'boolean', help: 'Read the passwords from stdin instead of generating them: one line per device, in order.' },
      { name: 'replace', type: 'boolean', help: 'Give devices that exist a new password (their connections are closed).' },
      ...fileFlags,
    ],
    examples: [
      'tributary devices add sensor-1 --config edge.yaml',
      'tributary devices add sensor-2 --password-stdin < password.txt',
      'tributary devices add sim-0001 sim-0002 --json > simulator-credentials.json',
      'tributary devices add sensor-1 --replace --data-dir /var/lib/tributary',
    ],
  },
  async run(args, io) {
    const ids = requireIds(args, 'deviceId', 'devices add', deviceIdProblem);
    const credentials = await credentialsFile.open(args, io, true);
    const existing = ids.filter((id) => credentials.has(id));
    if (existing.length && args.flags.replace !== true) {
      throw new UsageError(`${existing.length === 1 ? 'device' : 'devices'} ${existing.join(', ')} already ${existing.length === 1 ? 'exists' : 'exist'} in ${credentials.path}; add --replace to give ${existing.length === 1 ? 'it' : 'them'} a new password`);
    }
    let passwords: (string | undefined)[] = ids.map(() => undefined);
    if (args.flags['password-stdin'] === true) {
      passwords = passwordLines(await readStdin(io, `type ${ids.length === 1 ? 'the password' : `${ids.length} passwords, one per line`}`), ids.length);
    }
    const added = await credentials.addMany(ids.map((deviceId, i) => ({ deviceId, password: passwords[i] })));
    if (args.flags.json === true) {
      writeJson(io, { file: credentials.path, devices: added.map((d) => ({ deviceId: d.deviceId, ...(d.generated ? { password: d.password } : {}), replaced: d.replaced })) });
      return 0;
    }
    const fresh = added.filter((d) => !d.replaced).map((d) => d.deviceId);
    const replaced = added.filter((d) => d.replaced).map((d) => d.deviceId);
    const lines: string[] = [];
    if (fresh.length) lines.push(`${credentials.path}: added ${plural(fresh.length, 'device')}: ${fresh.join(', ')}`);
    if (replaced.length) lines.push(`${credentials.path}: new password for ${replaced.join(', ')} (connections using the old one are closed)`);
    const generated = added.filter((d) => d.generated);
    if (generated.length) {
      lines.push('', formatTable(['DEVICE', 'PASSWORD'], generated.map((d) => [d.deviceId, d.password])).trimEnd(), '');
      lines.push(`${generated.length === 1 ? 'The password is' : 'Passwords are'} shown only this once. A device connects with username and client id = its device id.`);
    }
    io.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};

const remove = removeVerb({
  id: 'deviceId',
  what: 'device',
  spec: {
    name: 'devices remove',
    summary: 'Remove devices; a running edge disconnects them within a second.',
    flags: fileFlags,
    examples: ['tributary devices remove sensor-1 --config edge.yaml', 'tributary devices remove sim-0001 sim-0002 --json'],
  },
  file: credentialsFile,
});

const list = listVerb({
  what: 'device',
  spec: {
    name: 'devices list',
    summary: 'List the devices and when each was added (never their passwords).',
    flags: fileFlags,
    examples: ['tributary devices list --config edge.yaml', 'tributary devices list --json | jq -r ".devices[].deviceId"'],
  },
  hint: 'add one with "tributary devices add <deviceId>"',
  columns: ['DEVICE', 'ADDED'],
  row: (d) => [d.deviceId, shortTime(d.createdAt)],
  file: credentialsFile,
});

export const devicesCommand: VerbCommand = {
  name: 'devices',
  summary: 'Add, remove and list the devices that may connect to an edge node, and their passwords.',
  description:
    'The credentials file is found as the edge finds it: --credentials, else auth.credentialsFile in the\nconfig file, else <dataDir>/devices.json. A running edge re-reads it within a second.',
  verbs: { add, remove, list },
  examples: ['tributary devices add sensor-1 --config edge.yaml', 'tributary devices list --config edge.yaml', 'tributary devices remove sensor-1 --config edge.yaml'],
};

export function main(argv: string[], io?: CliIo): Promise<number> {
  return runVerbCommand(devicesCommand, argv, io);
}

/** One password per line (a final newline is not a line; `\r\n` is fine), as many as devices. */
function passwordLines(text: string, count: number): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length !== count || (count === 1 && lines[0] === '')) {
    const got = text === '' ? 'nothing' : plural(lines.length, 'line');
    throw new UsageError(`--password-stdin needs ${count === 1 ? 'one password' : `${count} passwords, one per line in the order of the devices,`} on stdin; got ${got}`);
  }
  return lines;
}
