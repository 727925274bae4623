/**
 * A small declarative command-line parser: each command states its flags once, and gets parsing, `--help` text
 * and error messages that name the flag from the same table. Flags that set configuration name the dotted config
 * key they override, so a bad value is reported against the flag.
 */
import { UsageError } from '../errors.ts';

export interface FlagSpec {
  name: string;
  type: 'string' | 'number' | 'boolean';
  help: string;
  /** The dotted config key this flag overrides. */
  config?: string;
  /** Shown in help; the real default lives in the config schema. */
  default?: string | number | boolean;
  /** Placeholder for the value in help. */
  value?: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  description?: string;
  flags: FlagSpec[];
  examples?: string[];
}

export interface ParsedArgs {
  help: boolean;
  flags: Record<string, string | number | boolean | undefined>;
  /** Flag values by config key, for `loadConfig` overrides. */
  overrides: Record<string, unknown>;
  /** Flag name by config key, for error messages. */
  flagOf: Record<string, string>;
  positionals: string[];
}

export function parseArgs(spec: CommandSpec, argv: readonly string[]): ParsedArgs {
  const byName = new Map(spec.flags.map((f) => [f.name, f]));
  const flags: ParsedArgs['flags'] = {};
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    let name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    let inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    let negated = false;
    if (!byName.has(name) && name.startsWith('no-') && byName.get(name.slice(3))?.type === 'boolean') {
      name = name.slice(3);
      negated = true;
    }
    const flag = byName.get(name);
    if (!flag) throw new UsageError(`unknown flag --${name} for "tributary ${spec.name}"; see "tributary ${spec.name} --help"`);
    if (flag.type === 'boolean') {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') {
        throw new UsageError(`flag --${name} takes true or false, got "${inline}"`);
      }
      flags[name] = negated ? false : inline !== 'false';
      continue;
    }
    if (inline === undefined) {
      if (i + 1 >= argv.length || argv[i + 1].startsWith('--')) throw new UsageError(`flag --${name} needs a value (${flag.value ?? flag.type})`);
      inline = argv[++i];
    }
    if (flag.type === 'number') {
      const n = Number(inline);
      if (inline.trim() === '' || !Number.isFinite(n)) throw new UsageError(`flag --${name} takes a number, got "${inline}"`);
      flags[name] = n;
    } else {
      flags[name] = inline;
    }
  }
  const overrides: Record<string, unknown> = {};
  const flagOf: Record<string, string> = {};
  for (const flag of spec.flags) {
    if (!flag.config) continue;
    flagOf[flag.config] = flag.name;
    if (flags[flag.name] !== undefined) overrides[flag.config] = flags[flag.name];
  }
  return { help, flags, overrides, flagOf, positionals };
}

export function formatHelp(spec: CommandSpec, command = `tributary ${spec.name}`): string {
  const lines = [`Usage: ${command} [flags]`, '', spec.summary];
  if (spec.description) lines.push('', spec.description);
  lines.push('', 'Flags:');
  const rows = [...spec.flags, { name: 'help', type: 'boolean', help: 'Show this help and exit.' } as FlagSpec].map((f) => {
    const left = `  --${f.name}${f.type === 'boolean' ? '' : ` ${f.value ?? f.type.toUpperCase()}`}`;
    const extra = [f.config ? `config: ${f.config}` : '', f.default !== undefined ? `default: ${String(f.default)}` : ''].filter(Boolean).join('; ');
    return [left, f.help + (extra ? ` (${extra})` : '')] as const;
  });
  const width = Math.max(...rows.map((r) => r[0].length)) + 2;
  for (const [left, right] of rows) lines.push(left.padEnd(width) + right);
  if (spec.examples?.length) lines.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`));
  return lines.join('\n') + '\n';
}
