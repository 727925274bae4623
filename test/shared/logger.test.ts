import process from 'node:process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StorageError } from '../../shared/errors.ts';
import type { LoggerOptions, LogSink } from '../../shared/logger.ts';
import { Logger, silentLogger } from '../../shared/logger.ts';

const NOW = Date.UTC(2024, 4, 1, 12, 34, 56, 789);

function capture(options: LoggerOptions = {}): { logger: Logger; lines: string[]; records: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const sink: LogSink = { write: (line) => void lines.push(line) };
  const logger = new Logger({ clock: () => NOW, sink, ...options });
  return { logger, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('Logger in JSON format', () => {
  it('writes one JSON object per line with time, level, msg and the fields', () => {
    const { logger, lines, records } = capture();
    logger.info('edge node started', { edgeId: 'gw-1', port: 1883, tls: false });
    expect(lines).toHaveLength(1);
    expect(lines[0].endsWith('\n')).toBe(true);
    expect(lines[0].indexOf('\n')).toBe(lines[0].length - 1);
    expect(records()[0]).toEqual({ time: '2024-05-01T12:34:56.789Z', level: 'info', msg: 'edge node started', edgeId: 'gw-1', port: 1883, tls: false });
  });

  it('keeps a record with a multi-line message or field on one line', () => {
    const { logger, lines, records } = capture();
    logger.warn('line one\nline two', { detail: 'a\nb' });
    expect(lines[0].split('\n')).toHaveLength(2);
    expect(records()[0].msg).toBe('line one\nline two');
  });

  it('adds the bindings of child loggers to every record, inner ones last', () => {
    const { logger, records } = capture();
    const edge = logger.child({ component: 'edge', edgeId: 'gw-1' });
    const uplink = edge.child({ component: 'uplink' });
    uplink.info('connected', { attempt: 3 });
    edge.info('started');
    logger.info('root');
    const [a, b, c] = records();
    expect(a).toMatchObject({ component: 'uplink', edgeId: 'gw-1', msg: 'connected', attempt: 3, level: 'info' });
    expect(b).toMatchObject({ component: 'edge', edgeId: 'gw-1', msg: 'started' });
    expect(c).not.toHaveProperty('component');
    expect(c).not.toHaveProperty('edgeId');
  });

  it('writes bigints as decimal strings', () => {
    const { logger, records } = capture();
    logger.info('offset', { offset: 2n ** 64n });
    expect(records()[0].offset).toBe('18446744073709551616');
  });

  it('serializes Error values with name, message, code and cause', () => {
    const { logger, records } = capture();
    const cause = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    logger.error('buffer write failed', { err: new StorageError('LevelDB write of 3 operations failed', { cause }) });
    expect(records()[0].err).toEqual({
      name: 'StorageError',
      message: 'LevelDB write of 3 operations failed',
      code: 'ERR_STORAGE',
      cause: { name: 'Error', message: 'no space left on device', code: 'ENOSPC' },
    });
  });

  it('serializes an Error without a code or cause to its name and message', () => {
    const { logger, records } = capture();
    logger.error('boom', { err: new TypeError('bad thing') });
    expect(records()[0].err).toEqual({ name: 'TypeError', message: 'bad thing' });
  });
});

describe('Logger level filtering', () => {
  function levelsWritten(options: LoggerOptions, child = false): string[] {
    const { logger, records } = capture(options);
    const log = child ? logger.child({ component: 'x' }) : logger;
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    return records().map((r) => r.level as string);
  }

  it('writes info and above by default', () => {
    expect(levelsWritten({})).toEqual(['info', 'warn', 'error']);
  });

  it('writes only records at or above the configured level', () => {
    expect(levelsWritten({ level: 'debug' })).toEqual(['debug', 'info', 'warn', 'error']);
    expect(levelsWritten({ level: 'warn' })).toEqual(['warn', 'error']);
    expect(levelsWritten({ level: 'error' })).toEqual(['error']);
    expect(levelsWritten({ level: 'silent' })).toEqual([]);
  });

  it('gives child loggers the level of their parent', () => {
    expect(levelsWritten({ level: 'debug' }, true)).toEqual(['debug', 'info', 'warn', 'error']);
    expect(levelsWritten({ level: 'warn' }, true)).toEqual(['warn', 'error']);
    expect(levelsWritten({ level: 'silent' }, true)).toEqual([]);
  });
});

describe('Logger in pretty format', () => {
  it('writes the time of day, the level, the component, the message and key=value fields', () => {
    const { logger, lines } = capture({ format: 'pretty' });
    logger.child({ component: 'uplink' }).warn('uplink down; reconnecting', { reason: 'connection closed', retryInMs: 500, peer: { host: 'cloud' } });
    expect(lines).toHaveLength(1);
    const line = lines[0];
    expect(line.endsWith('\n')).toBe(true);
    expect(line.startsWith('12:34:56 WARN')).toBe(true);
    expect(line).toContain(' uplink: uplink down; reconnecting ');
    expect(line).toContain('reason=connection closed');
    expect(line).toContain('retryInMs=500');
    expect(line).toContain('peer={"host":"cloud"}');
    expect(() => JSON.parse(line)).toThrow();
  });

  it('leaves out the component when there is none', () => {
    const { logger, lines } = capture({ format: 'pretty' });
    logger.error('stopped');
    expect(lines[0]).toMatch(/^12:34:56 ERROR\s+stopped\n$/);
  });

  it('writes Error fields in their serialized form', () => {
    const { logger, lines } = capture({ format: 'pretty' });
    logger.error('failed', { err: new StorageError('disk full') });
    expect(lines[0]).toContain('err={"name":"StorageError","message":"disk full","code":"ERR_STORAGE"}');
  });
});

describe('Logger redaction', () => {
  const secrets = { password: 'hunter2', mqttPassword: 'pw-2', pass: 'p3', token: 'tok-4', accessToken: 'tok-5', secret: 's6', clientSecret: 's7', authorization: 'Bearer 8', apiKey: 'k9' };

  it('replaces the values of secret-looking fields in JSON records', () => {
    const { logger, lines, records } = capture();
    logger.info('connecting', { ...secrets, username: 'device-1', port: 8883 });
    const record = records()[0];
    for (const key of Object.keys(secrets)) expect(record[key]).toBe('[redacted]');
    expect(record.username).toBe('device-1');
    expect(record.port).toBe(8883);
    for (const value of Object.values(secrets)) expect(lines[0]).not.toContain(value);
  });

  it('replaces the values of secret-looking fields in pretty records', () => {
    const { logger, lines } = capture({ format: 'pretty' });
    logger.info('connecting', { ...secrets, username: 'device-1' });
    for (const value of Object.values(secrets)) expect(lines[0]).not.toContain(value);
    expect(lines[0]).toContain('password=[redacted]');
    expect(lines[0]).toContain('username=device-1');
  });

  it('keeps secrets in nested objects out of the log line', () => {
    const { logger, lines } = capture();
    logger.info('config loaded', { config: { mqtt: { url: 'mqtts://cloud:8883', password: 'hunter2' }, uplink: { token: 'tok-xyz' } } });
    expect(lines[0]).not.toContain('hunter2');
    expect(lines[0]).not.toContain('tok-xyz');
    expect(lines[0]).toContain('mqtts://cloud:8883');
  });

  it('keeps secrets in child bindings out of the log line', () => {
    const { logger, lines } = capture();
    logger.child({ component: 'uplink', token: 'tok-bound' }).info('connected');
    expect(lines[0]).not.toContain('tok-bound');
  });
});

describe('silentLogger', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('writes nothing at any level, nor do its children', () => {
    const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    silentLogger.error('nothing');
    silentLogger.child({ component: 'x' }).error('still nothing');
    expect(write).not.toHaveBeenCalled();
  });
});
