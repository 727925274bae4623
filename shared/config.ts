/**
 * Configuration loading: a YAML or JSON file, then command-line overrides, checked against a zod schema. Every
 * problem is reported with the file, the key (as a dotted path, or the flag that set it) and what is wrong.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.ts';

/** Settings every node and the simulator have: how often to log status, and how to log. */
export const nodeSettings = {
  statusIntervalMs: z.number().int().min(0).default(5000),
  log: z
    .strictObject({
      level: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
      format: z.enum(['json', 'pretty']).default('json'),
    })
    .prefault({}),
};

export interface LoadConfigOptions {
  /** Path of a `.yaml`, `.yml` or `.json` file. */
  file?: string;
  /** Values set on the command line, by dotted config key (`mqtt.port`). */
  overrides?: Record<string, unknown>;
  /** The flag that sets each dotted key, to name it in errors. */
  flagOf?: Record<string, string>;
}

export async function loadConfig<S extends z.ZodType>(schema: S, options: LoadConfigOptions = {}): Promise<z.output<S>> {
  const raw = options.file ? await readConfigFile(options.file) : {};
  for (const [key, value] of Object.entries(options.overrides ?? {})) {
    if (value !== undefined) setPath(raw, key, value);
  }
  return parseConfig(schema, raw, options);
}

/** Checks an already-read config object against `schema`. */
export function parseConfig<S extends z.ZodType>(schema: S, raw: unknown, options: LoadConfigOptions = {}): z.output<S> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const key = issue.path.map(String).join('.');
    const flag = options.flagOf?.[key];
    const fromFlag = flag !== undefined && options.overrides?.[key] !== undefined;
    const where = fromFlag ? `flag --${flag}` : key ? `key "${key}"` : 'top level';
    return `${where}: ${issue.message}`;
  });
  const first = result.error.issues[0];
  const file = options.file ?? '(no config file; defaults and flags)';
  throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`, { file, key: first?.path.map(String).join('.') || undefined });
}

async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'the file does not exist' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new ConfigError(`cannot read config file: ${why}`, { file }, { cause: err });
  }
  let value: unknown;
  try {
    value = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}, column ${err.linePos[0].col}` : '';
    const first = (err as Error).message.split('\n')[0];
    throw new ConfigError(`not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}${where}: ${first}`, { file }, { cause: err });
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError('the file must hold a mapping of settings at its top level', { file });
  }
  return value as Record<string, unknown>;
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]] = value;
}
