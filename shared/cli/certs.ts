/**
 * `tributary certs dev`: a development CA and the certificates to try TLS out with on one machine: one server
 * certificate for every listener (the edge's MQTT over TLS, the cloud's uplink listener and its HTTPS API), a
 * client certificate per device and per edge (CN = its id, which is its identity), and the config keys to set.
 * Private keys are written mode 0600; an existing CA is never replaced without --force, since every certificate
 * it signed would stop being trusted.
 *
 * Exit status: 0 when the files were written; 1 when they could not be (an existing CA, a write error); 2 for flags
 * that cannot be used.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import process from 'node:process';
import { stringify } from 'yaml';
import { isDeviceId, isEdgeId, DEVICE_ID_RULE, EDGE_ID_RULE } from '../command-wire.ts';
import { createDevCa, issueCertificate } from '../dev-certs.ts';
import type { CertificateAndKey } from '../dev-certs.ts';
import { errorMessage, UsageError } from '../errors.ts';
import type { CommandSpec } from './args.ts';
import { formatHelp, parseArgs } from './args.ts';

export const DEFAULT_CERTS_DIR = '.data/certs';
const DEFAULT_HOSTS = ['localhost', '127.0.0.1'];
const DEFAULT_DAYS = 365;
const CA_DAYS = 3650;

export const spec: CommandSpec = {
  name: 'certs dev',
  summary: 'Make a development CA and certificates for trying TLS out on this machine.',
  description: [
    'Writes ca.pem and ca-key.pem (the CA), server.pem and server-key.pem (for the edge\'s MQTT over TLS',
    "listener, the cloud's uplink listener and its HTTPS API), and a client certificate per device and per edge",
    '(device-<id>.pem, edge-<id>.pem, each with its -key.pem; the certificate\'s CN is the id). Keys are written',
    'readable by this user only. Then prints the config keys to set. For development only: in production use',
    'certificates from your own CA or ACME.',
  ].join('\n'),
  flags: [
    { name: 'dir', type: 'string', value: 'DIR', default: DEFAULT_CERTS_DIR, help: 'Where to write the files.' },
    { name: 'hosts', type: 'string', value: 'LIST', default: DEFAULT_HOSTS.join(','), help: 'Comma-separated host names and IP addresses the server certificate is valid for.' },
    { name: 'devices', type: 'string', value: 'IDS', help: 'Comma-separated device ids to make client certificates for.' },
    { name: 'edges', type: 'string', value: 'IDS', help: 'Comma-separated edge ids to make client certificates for (for the uplink to the cloud).' },
    { name: 'days', type: 'number', value: 'N', default: DEFAULT_DAYS, help: `How long the certificates are valid (the CA: ${CA_DAYS} days, or N if longer).` },
    { name: 'force', type: 'boolean', help: 'Replace an existing CA and its certificates (those it signed stop being trusted).' },
  ],
  examples: [
    'tributary certs dev',
    'tributary certs dev --devices sensor-1,sensor-2 --edges edge-1',
    'tributary certs dev --dir /etc/tributary/certs --hosts gateway-7.local,192.168.1.20 --days 30',
    'tributary certs dev --force   # a new CA: give the new ca.pem to every client',
  ],
};

export interface CertsIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

export interface DevCertsRequest {
  dir: string;
  hosts: string[];
  devices: string[];
  edges: string[];
  days: number;
  force: boolean;
}

/** A file written: its name in the directory and what it is for. */
export interface WrittenFile {
  name: string;
  purpose: string;
}

/** An existing CA in the directory, and no --force. */
export class ExistingCaError extends Error {
  constructor(dir: string) {
    super(
      `${dir} already holds a CA (ca.pem or ca-key.pem); replacing it would make every certificate it signed untrusted. ` +
        'Choose another --dir, or pass --force to make a new CA and certificates (then give the new ca.pem to every client).',
    );
    this.name = 'ExistingCaError';
  }
}

export async function main(argv: string[], io: CertsIo = process): Promise<number> {
  let request: DevCertsRequest;
  try {
    const args = parseArgs(spec, argv);
    if (args.help) {
      io.stdout.write(formatHelp(spec));
      return 0;
    }
    request = requestOf(args.flags, args.positionals);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`tributary: ${err.message}\n`);
    return 2;
  }
  try {
    const written = await writeDevCertificates(request);
    io.stdout.write(report(request, written));
    return 0;
  } catch (err) {
    io.stderr.write(`tributary certs dev: ${errorMessage(err)}\n`);
    return 1;
  }
}

/** Makes the CA and certificates and writes them to `request.dir` (created, mode 0700, if missing). */
export async function writeDevCertificates(request: DevCertsRequest): Promise<WrittenFile[]> {
  const dir = resolve(request.dir);
  if (!request.force && ((await exists(join(dir, 'ca.pem'))) || (await exists(join(dir, 'ca-key.pem'))))) throw new ExistingCaError(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await createDevCa({ days: Math.max(CA_DAYS, request.days) });
  const server = await issueCertificate(ca, { commonName: request.hosts[0], hosts: request.hosts, usage: 'server', days: request.days });
  const written: WrittenFile[] = [];
  const save = async (base: string, pair: CertificateAndKey, purpose: string): Promise<void> => {
    await writeAtomically(join(dir, `${base}.pem`), pair.certPem, 0o644);
    await writeAtomically(join(dir, `${base}-key.pem`), pair.keyPem, 0o600);
    written.push({ name: `${base}.pem`, purpose }, { name: `${base}-key.pem`, purpose: 'its private key' });
  };
  // The CA last: a run that fails half-way leaves no CA behind, so the next run needs no --force.
  await save('server', server, `server certificate for ${request.hosts.join(', ')}`);
  for (const id of request.devices) await save(`device-${id}`, await issueCertificate(ca, { commonName: id, usage: 'client', days: request.days }), `client certificate of device ${id}`);
  for (const id of request.edges) await save(`edge-${id}`, await issueCertificate(ca, { commonName: id, usage: 'client', days: request.days }), `client certificate of edge ${id}`);
  await writeAtomically(join(dir, 'ca-key.pem'), ca.keyPem, 0o600);
  await writeAtomically(join(dir, 'ca.pem'), ca.certPem, 0o644);
  written.unshift({ name: 'ca.pem', purpose: 'the CA certificate: every client and listener that checks certificates needs it' }, { name: 'ca-key.pem', purpose: 'the CA key: signs certificates; keep it off devices' });
  return written;
}

function requestOf(flags: Record<string, string | number | boolean | undefined>, positionals: string[]): DevCertsRequest {
  if (positionals[0] !== 'dev') {
    throw new UsageError(
      positionals.length === 0 ? 'say what to make: "tributary certs dev"; see "tributary certs dev --help"' : `unknown certs command "${positionals[0]}"; the one there is: "tributary certs dev"`,
    );
  }
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"; see "tributary certs dev --help"`);
  const hosts = list(flags.hosts as string | undefined) ?? DEFAULT_HOSTS;
  if (hosts.length === 0) throw new UsageError('--hosts needs at least one host name or IP address');
  for (const host of hosts) {
    if (isIP(host) === 0 && !/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*\.?$/.test(host)) {
      throw new UsageError(`--hosts: "${host}" is neither a host name nor an IP address`);
    }
  }
  const devices = list(flags.devices as string | undefined) ?? [];
  for (const id of devices) {
    // The id names the files too: no control characters or backslashes in a file name.
    // eslint-disable-next-line no-control-regex
    if (!isDeviceId(id) || /[\u0000-\u001f\u007f\\]/.test(id)) throw new UsageError(`--devices: "${id}" is not a device id (${DEVICE_ID_RULE}, no control characters or "\\")`);
  }
  const edges = list(flags.edges as string | undefined) ?? [];
  for (const id of edges) if (!isEdgeId(id)) throw new UsageError(`--edges: "${id}" is not an edge id (${EDGE_ID_RULE})`);
  for (const [flag, ids] of [['devices', devices], ['edges', edges]] as const) {
    const twice = ids.find((id, i) => ids.indexOf(id) !== i);
    if (twice !== undefined) throw new UsageError(`--${flag}: "${twice}" is named twice`);
  }
  const days = (flags.days as number | undefined) ?? DEFAULT_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > 100 * 365) throw new UsageError(`--days takes a whole number of days from 1 to ${100 * 365}, got ${days}`);
  return { dir: (flags.dir as string | undefined) ?? DEFAULT_CERTS_DIR, hosts, devices, edges, days, force: flags.force === true };
}

function list(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** What was written, and the config keys that use it. */
function report(request: DevCertsRequest, written: WrittenFile[]): string {
  const dir = resolve(request.dir);
  const path = (name: string): string => join(dir, name);
  const host = request.hosts[0];
  const uplinkHost = isIP(host) === 6 ? `[${host}]` : host;
  const server = { certFile: path('server.pem'), keyFile: path('server-key.pem') };
  const edge: Record<string, unknown> = {
    mqtt: { tls: { port: 8883, ...server, ...(request.devices.length > 0 ? { caFile: path('ca.pem'), clientCertificates: 'optional' } : {}) } },
    uplink: {
      url: `mqtts://${uplinkHost}:1884`,
      tls: { caFile: path('ca.pem'), ...(request.edges.length > 0 ? { certFile: path(`edge-${request.edges[0]}.pem`), keyFile: path(`edge-${request.edges[0]}-key.pem`) } : {}) },
    },
  };
  if (request.edges.length > 0) edge.edgeId = request.edges[0];
  const cloud = {
    uplink: { tls: { ...server, ...(request.edges.length > 0 ? { caFile: path('ca.pem'), clientCertificates: 'optional' } : {}) } },
    http: { tls: server },
  };
  const width = Math.max(...written.map((f) => f.name.length)) + 2;
  const lines = [
    `Wrote a development CA and certificates to ${dir} (certificates valid ${request.days} days; private keys readable by this user only):`,
    ...written.map((f) => `  ${f.name.padEnd(width)}${f.purpose}`),
    '',
    `Edge config (tributary edge --config edge.yaml)${request.edges.length > 1 ? `; for the other edges use their edge-<id>.pem and edgeId` : ''}:`,
    indent(stringify(request.edges.length > 0 ? { edgeId: edge.edgeId, mqtt: edge.mqtt, uplink: edge.uplink } : edge)),
    'Cloud config (tributary cloud --config cloud.yaml):',
    indent(stringify(cloud)),
  ];
  if (request.devices.length > 0) {
    const id = request.devices[0];
    lines.push(
      `A device connects with its certificate (client id = its id), e.g. with mosquitto:`,
      `  mosquitto_pub -h ${host} -p 8883 --cafile ${path('ca.pem')} --cert ${path(`device-${id}.pem`)} --key ${path(`device-${id}-key.pem`)} -i ${id} -q 1 -t telemetry/${id}/temperature -m 21.5`,
      '',
    );
  }
  lines.push(`HTTPS clients trust the API with the CA, e.g.: curl --cacert ${path('ca.pem')} https://${uplinkHost}:8080/healthz`, '');
  return lines.join('\n');
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n') + '\n';
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Temp file and rename: a crash leaves the old file or the new one, and the new one has its mode from the start. */
async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temp, text, { mode, flag: 'wx' });
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}
