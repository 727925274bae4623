#!/usr/bin/env node
/**
 * The `tributary` command. Each subcommand lives with the part of the system it runs (edge/main.ts,
 * cloud/main.ts, devices/main.ts); this dispatcher loads only the one asked for, by path, so `shared/` has no
 * static dependency on the folders that depend on it (docs/decisions/0001-cli-dispatcher.md).
 */
import process from 'node:process';
import { moduleExtension } from '../runtime.ts';

interface Subcommand {
  module: string;
  summary: string;
}

const SUBCOMMANDS: Record<string, Subcommand> = {
  up: { module: './up', summary: 'Run a whole mesh on this machine: a cloud node, an edge node and simulated devices.' },
  cloud: { module: '../../cloud/main', summary: 'Run a cloud mesh node: uplink listener, durable log, HTTP API and streams.' },
  edge: { module: '../../edge/main', summary: 'Run an edge node: MQTT broker for devices, store-and-forward buffer, uplink.' },
  simulate: { module: '../../devices/main', summary: 'Run a fleet of simulated devices against an edge node.' },
  status: { module: './status', summary: "Show an edge node's link, devices, buffer per lane, rates and drops." },
  devices: { module: '../../edge/devices-command', summary: 'Add, remove and list the devices that may connect to an edge node (passwords).' },
  edges: { module: '../../cloud/edges-command', summary: 'Add, remove and list the edges a cloud node accepts (tokens).' },
  tokens: { module: '../../cloud/tokens-command', summary: "Add, remove and list bearer tokens for the cloud's HTTP API and streams." },
  certs: { module: './certs', summary: 'Make a development CA and certificates for trying TLS out (certs dev).' },
};

function usage(): string {
  const width = Math.max(...Object.keys(SUBCOMMANDS).map((k) => k.length)) + 2;
  return [
    'Usage: tributary <command> [flags]',
    '',
    'Tributary is an edge-to-cloud event mesh for IoT.',
    '',
    'Commands:',
    ...Object.entries(SUBCOMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`),
    '',
    'Run "tributary <command> --help" for the flags of a command.',
    '',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const sub = SUBCOMMANDS[name];
  if (!sub) {
    process.stderr.write(`tributary: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const url = new URL(sub.module + moduleExtension(import.meta.url), import.meta.url);
  const mod = (await import(url.href)) as { main(argv: string[]): Promise<number> };
  return mod.main(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Open handles of a stopped node must not keep the process alive.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`tributary: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
