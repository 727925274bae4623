/**
 * What `tributary devices`, `tributary edges` and `tributary tokens` share: a command made of verbs
 * (`add`, `remove`, `list`), each with its own flags and `--help`; one error style (`tributary: <message>`, exit
 * status 2 for usage and config errors); finding the credentials file as the node finds it, and the warning
 * about one others may read; the `list` and `remove` verbs; saving a new secret to a file; and the table and
 * time formats of their output.
 */
import process from 'node:process';
import type { z } from 'zod';
import { loadConfig } from '../config.ts';
import { writeFileAtomic } from '../credential-file.ts';
import { ConfigError, UsageError } from '../errors.ts';
import type { CommandSpec, FlagSpec, ParsedArgs } from './args.ts';
import { formatHelp, parseArgs } from './args.ts';

/** Where a command reads and writes; tests pass their own. */
export interface CliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** Read by `--password-stdin`. */
  stdin: AsyncIterable<string | Uint8Array> & { isTTY?: boolean };
}

export interface Verb {
  /** `name` is the whole command, e.g. `devices add`. */
  spec: CommandSpec;
  /** The positional arguments, for the usage line: `<deviceId>...`. */
  args?: string;
  run(args: ParsedArgs, io: CliIo): Promise<number>;
}

export interface VerbCommand {
  name: string;
  summary: string;
  description?: string;
  verbs: Record<string, Verb>;
  examples?: string[];
}

export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin };
}

/** Runs `tributary <command> <verb> [flags]`; returns the exit status. */
export async function runVerbCommand(command: VerbCommand, argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  const [verbName, ...rest] = argv;
  if (verbName === undefined || verbName === '--help' || verbName === '-h' || verbName === 'help') {
    io.stdout.write(verbCommandHelp(command));
    return verbName === undefined ? 2 : 0;
  }
  const verb = Object.hasOwn(command.verbs, verbName) ? command.verbs[verbName] : undefined;
  if (!verb) {
    const names = Object.keys(command.verbs).join(', ');
    const hint = verbName.startsWith('-') ? `give the command first, then its flags: tributary ${command.name} <${Object.keys(command.verbs).join('|')}> [flags]` : `the commands are ${names}`;
    io.stderr.write(`tributary: unknown ${command.name} command "${verbName}"; ${hint}; see "tributary ${command.name} --help"\n`);
    return 2;
  }
  try {
    const args = parseArgs(verb.spec, rest);
    if (args.help) {
      io.stdout.write(formatHelp(verb.spec, `tributary ${verb.spec.name}${verb.args ? ` ${verb.args}` : ''}`));
      return 0;
    }
    return await verb.run(args, io);
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      io.stderr.write(`tributary: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

export function verbCommandHelp(command: VerbCommand): string {
  const names = Object.keys(command.verbs);
  const width = Math.max(...names.map((n) => n.length)) + 3;
  const lines = [`Usage: tributary ${command.name} <${names.join('|')}> [arguments] [flags]`, '', command.summary];
  if (command.description) lines.push('', command.description);
  lines.push('', 'Commands:', ...names.map((n) => `  ${n.padEnd(width)}${command.verbs[n].spec.summary}`));
  if (command.examples?.length) lines.push('', 'Examples:', ...command.examples.map((e) => `  ${e}`));
  lines.push('', `Run "tributary ${command.name} <command> --help" for its arguments and flags.`, '');
  return lines.join('\n');
}

/** `--json`, common to every verb. */
export const jsonFlag: FlagSpec = { name: 'json', type: 'boolean', help: 'Print JSON, for scripts.' };

/**
 * The positionals of a verb: at least one, no duplicates, and (given `problemOf`, which says what is wrong with
 * an id or returns undefined) each one valid.
 */
export function requireIds(args: ParsedArgs, what: string, verb: string, problemOf?: (id: string) => string | undefined): string[] {
  if (args.positionals.length === 0) throw new UsageError(`name at least one ${what}: tributary ${verb} <${what}>...`);
  const seen = new Set<string>();
  for (const id of args.positionals) {
    if (seen.has(id)) throw new UsageError(`${what} "${id}" is named twice`);
    seen.add(id);
  }
  for (const id of args.positionals) {
    const problem = problemOf?.(id);
    if (problem) throw new UsageError(problem);
  }
  return args.positionals;
}

export function noPositionals(args: ParsedArgs, verb: string): void {
  if (args.positionals.length) throw new UsageError(`unexpected argument "${args.positionals[0]}"; see "tributary ${verb} --help"`);
}

/** A credentials file as these commands see it: where it is, and its mode when others may read it. */
export interface CredentialsFile {
  path: string;
  looseMode: number | null;
}

/** Tells once that a credentials file may be read by other users; a command that writes it makes it 0600. */
export function warnIfLoose(io: CliIo, file: CredentialsFile, rewrites: boolean): void {
  if (file.looseMode === null) return;
  const mode = file.looseMode.toString(8).padStart(3, '0');
  const fix = rewrites ? 'this command rewrites it with mode 600' : `make it private: chmod 600 ${file.path}`;
  io.stderr.write(`tributary: warning: ${file.path} holds credentials but other users may read or change it (mode ${mode}); ${fix}\n`);
}

export function writeJson(io: CliIo, value: unknown): void {
  io.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Columns, left-aligned, two spaces apart. */
export function formatTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((cells) => cells[i].length)));
  return all.map((cells) => cells.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n';
}

/** An ISO time without its milliseconds: 2025-03-01T12:00:00Z. */
export function shortTime(iso: string): string {
  return iso.replace(/\.\d{3}Z$/, 'Z');
}

/** All of stdin, as text. A terminal gets a hint, since the command waits for end of input. */
export async function readStdin(io: CliIo, hint: string): Promise<string> {
  if (io.stdin.isTTY) io.stderr.write(`${hint}, then press Ctrl-D\n`);
  const decoder = new TextDecoder();
  let text = '';
  for await (const chunk of io.stdin) text += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
  return text + decoder.decode();
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Where a command finds the credentials file of a node, and how it opens it. */
export interface CredentialsLocation<F extends CredentialsFile> {
  /** The file the node with these flags (and config file) uses. */
  pathOf(args: ParsedArgs): Promise<string>;
  /** Opens that file, with the warning of `warnIfLoose`; `rewrites` when the command writes the file. */
  open(args: ParsedArgs, io: CliIo, rewrites: boolean): Promise<F>;
}

/**
 * Finds the credentials file as the node finds it: its config is loaded the way the node loads it (`--config`,
 * then the flags that stand for config keys), and `pathIn` picks the file from it, so that a command and a
 * running node never disagree about where the file is.
 */
export function credentialsLocation<S extends z.ZodType, F extends CredentialsFile>(options: {
  schema: S;
  pathIn(config: z.output<S>): string;
  open(path: string): Promise<F>;
}): CredentialsLocation<F> {
  const pathOf = async (args: ParsedArgs): Promise<string> =>
    options.pathIn(await loadConfig(options.schema, { file: args.flags.config as string | undefined, overrides: args.overrides, flagOf: args.flagOf }));
  return {
    pathOf,
    async open(args, io, rewrites) {
      const file = await options.open(await pathOf(args));
      warnIfLoose(io, file, rewrites);
      return file;
    },
  };
}

/**
 * Saves a secret that was just made to `file` (mode 600; `--token-file`). When it cannot be written, the
 * UsageError says what became of the secret: `fate` gets the reason, may undo what was done, and returns the
 * message.
 */
export async function writeSecretFile(file: string, secret: string, fate: (reason: string) => string | Promise<string>): Promise<void> {
  try {
    await writeFileAtomic(file, secret + '\n');
  } catch (err) {
    throw new UsageError(await fate((err as Error).message));
  }
}

/**
 * `<command> list` for a file of entries: a line with the count, then a table of `columns` (or
 * `{file, <what>s: [...]}` with --json), or, when the file has none, how to make the first. It never rewrites
 * the file.
 */
export function listVerb<E>(options: {
  spec: CommandSpec;
  /** What one entry is, `device`; its plural, `devices`, is also the key of the --json list. */
  what: string;
  /** How to make the first entry, shown when there is none: `add one with "tributary devices add <deviceId>"`. */
  hint: string;
  columns: readonly string[];
  row(entry: E): string[];
  file: CredentialsLocation<CredentialsFile & { list(): E[] }>;
}): Verb {
  return {
    spec: options.spec,
    async run(args, io) {
      noPositionals(args, options.spec.name);
      const file = await options.file.open(args, io, false);
      const entries = file.list();
      if (args.flags.json === true) {
        writeJson(io, { file: file.path, [`${options.what}s`]: entries });
        return 0;
      }
      if (entries.length === 0) {
        io.stdout.write(`${file.path}: no ${options.what}s (${options.hint})\n`);
        return 0;
      }
      io.stdout.write(`${file.path}: ${plural(entries.length, options.what)}\n\n`);
      io.stdout.write(formatTable(options.columns, entries.map((entry) => options.row(entry))));
      return 0;
    },
  };
}

/**
 * `<command> remove <id>...` for a file of entries keyed by id: removes them with one write, prints what went
 * (or `{file, removed, missing}` with --json) and exits 1 when an id was not there.
 */
export function removeVerb(options: {
  spec: CommandSpec;
  /** The positional's name, `deviceId`, and what it names, `device`. */
  id: string;
  what: string;
  file: CredentialsLocation<CredentialsFile & { removeMany(ids: readonly string[]): Promise<boolean[]> }>;
}): Verb {
  return {
    args: `<${options.id}>...`,
    spec: options.spec,
    async run(args, io) {
      const ids = requireIds(args, options.id, options.spec.name);
      const store = await options.file.open(args, io, true);
      const removed = await store.removeMany(ids);
      const gone = ids.filter((_, i) => removed[i]);
      const missing = ids.filter((_, i) => !removed[i]);
      if (args.flags.json === true) {
        writeJson(io, { file: store.path, removed: gone, missing });
      } else {
        if (gone.length) io.stdout.write(`${store.path}: removed ${plural(gone.length, options.what)}: ${gone.join(', ')}\n`);
        if (missing.length) io.stderr.write(`tributary: no ${missing.length === 1 ? options.what : `${options.what}s`} ${missing.join(', ')} in ${store.path}\n`);
      }
      return missing.length ? 1 : 0;
    },
  };
}
