import { describe, expect, it } from 'vitest';
import type { CommandSpec } from '../../../shared/cli/args.ts';
import { formatHelp, parseArgs } from '../../../shared/cli/args.ts';
import { UsageError } from '../../../shared/errors.ts';

const spec: CommandSpec = {
  name: 'edge',
  summary: 'Run an edge node.',
  description: 'Bridges local MQTT devices to the cloud mesh.',
  flags: [
    { name: 'config', type: 'string', help: 'Config file.', value: 'FILE' },
    { name: 'port', type: 'number', help: 'MQTT listener port.', config: 'mqtt.port', default: 1883 },
    { name: 'edge-id', type: 'string', help: 'This edge node\'s id.', config: 'edgeId' },
    { name: 'fsync', type: 'boolean', help: 'Sync every commit.', config: 'buffer.fsync', default: true },
    { name: 'verbose', type: 'boolean', help: 'Log more.' },
  ],
  examples: ['tributary edge --port 1884', 'tributary edge --config edge.yaml'],
};

function usageError(argv: string[]): UsageError {
  try {
    parseArgs(spec, argv);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).code).toBe('ERR_USAGE');
    return err as UsageError;
  }
  throw new Error(`expected ${argv.join(' ')} to be refused`);
}

describe('parseArgs', () => {
  it('parses string, number and boolean flags', () => {
    const args = parseArgs(spec, ['--config', 'edge.yaml', '--port', '1884', '--edge-id', 'gw-1', '--verbose']);
    expect(args.flags).toEqual({ config: 'edge.yaml', port: 1884, 'edge-id': 'gw-1', verbose: true });
    expect(args.help).toBe(false);
    expect(args.positionals).toEqual([]);
  });

  it('accepts the --flag=value form', () => {
    const args = parseArgs(spec, ['--config=a=b.yaml', '--port=2000', '--fsync=false', '--verbose=true', '--edge-id=']);
    expect(args.flags).toEqual({ config: 'a=b.yaml', port: 2000, fsync: false, verbose: true, 'edge-id': '' });
  });

  it('turns a boolean off with --no-<flag>', () => {
    expect(parseArgs(spec, ['--no-fsync']).flags.fsync).toBe(false);
    expect(parseArgs(spec, ['--fsync', '--no-fsync']).flags.fsync).toBe(false);
  });

  it('takes the last value when a flag is repeated', () => {
    expect(parseArgs(spec, ['--port', '1', '--port', '2']).flags.port).toBe(2);
  });

  it('accepts negative and exponent numbers', () => {
    expect(parseArgs(spec, ['--port', '-5']).flags.port).toBe(-5);
    expect(parseArgs(spec, ['--port', '1e3']).flags.port).toBe(1000);
  });

  it('refuses an unknown flag, naming the command and pointing at --help', () => {
    const err = usageError(['--prot', '1883']);
    expect(err.message).toBe('unknown flag --prot for "tributary edge"; see "tributary edge --help"');
  });

  it('does not offer --no- for a flag that is not boolean', () => {
    expect(usageError(['--no-port']).message).toContain('unknown flag --no-port');
  });

  it('refuses a flag that is missing its value, saying what value it needs', () => {
    expect(usageError(['--port']).message).toBe('flag --port needs a value (number)');
    expect(usageError(['--config', '--verbose']).message).toBe('flag --config needs a value (FILE)');
  });

  it('refuses a number flag with a value that is not a number', () => {
    for (const value of ['abc', '12abc', '', ' ', 'Infinity', 'NaN']) {
      expect(usageError([`--port=${value}`]).message).toBe(`flag --port takes a number, got "${value}"`);
    }
  });

  it('refuses a boolean flag with a value other than true or false', () => {
    expect(usageError(['--fsync=yes']).message).toBe('flag --fsync takes true or false, got "yes"');
  });

  it('notices --help and -h anywhere', () => {
    expect(parseArgs(spec, ['--port', '1', '--help']).help).toBe(true);
    expect(parseArgs(spec, ['-h']).help).toBe(true);
  });

  it('collects positionals, and everything after -- as positionals', () => {
    const args = parseArgs(spec, ['run', '--port', '1', 'extra', '--', '--port', '--help']);
    expect(args.positionals).toEqual(['run', 'extra', '--port', '--help']);
    expect(args.flags).toEqual({ port: 1 });
    expect(args.help).toBe(false);
  });

  it('maps flags that set configuration to overrides by config key, and every config flag in flagOf', () => {
    const args = parseArgs(spec, ['--port', '1884', '--no-fsync', '--config', 'x.yaml', '--verbose']);
    expect(args.overrides).toEqual({ 'mqtt.port': 1884, 'buffer.fsync': false });
    expect(args.flagOf).toEqual({ 'mqtt.port': 'port', edgeId: 'edge-id', 'buffer.fsync': 'fsync' });
    expect(parseArgs(spec, []).overrides).toEqual({});
  });
});

describe('formatHelp', () => {
  const help = formatHelp(spec);
  const lines = help.split('\n');

  it('starts with usage, summary and description', () => {
    expect(lines[0]).toBe('Usage: tributary edge [flags]');
    expect(help).toContain('Run an edge node.');
    expect(help).toContain('Bridges local MQTT devices to the cloud mesh.');
  });

  it('lists every flag with its value placeholder, help, config key and default', () => {
    const row = (name: string) => lines.find((l) => l.trimStart().startsWith(`--${name} `) || l.trim() === `--${name}`)!;
    for (const flag of spec.flags) {
      const line = row(flag.name);
      expect(line, `row for --${flag.name}`).toBeDefined();
      expect(line).toContain(flag.help);
      if (flag.config) expect(line).toContain(`config: ${flag.config}`);
      if (flag.default !== undefined) expect(line).toContain(`default: ${String(flag.default)}`);
    }
    expect(row('config')).toMatch(/^ {2}--config FILE\s/);
    expect(row('port')).toMatch(/^ {2}--port NUMBER\s/);
    expect(row('port')).toContain('(config: mqtt.port; default: 1883)');
    expect(row('fsync')).toMatch(/^ {2}--fsync\s+Sync/);
    expect(row('help')).toContain('Show this help');
  });

  it('aligns the help texts in one column', () => {
    const texts = [...spec.flags.map((f) => f.help), 'Show this help and exit.'];
    const columns = texts.map((text) => lines.find((l) => l.startsWith('  --') && l.includes(text))!.indexOf(text));
    expect(columns.every((c) => c > 0)).toBe(true);
    expect(new Set(columns).size).toBe(1);
  });

  it('ends with the examples', () => {
    const at = lines.indexOf('Examples:');
    expect(at).toBeGreaterThan(0);
    expect(lines.slice(at + 1, at + 3)).toEqual(['  tributary edge --port 1884', '  tributary edge --config edge.yaml']);
    expect(help.endsWith('\n')).toBe(true);
  });
});
