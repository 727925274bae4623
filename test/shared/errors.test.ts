import { describe, expect, it } from 'vitest';
import {
  ClosedError,
  ConfigError,
  ErrorCode,
  errorMessage,
  InvalidEventError,
  StorageError,
  TributaryError,
  UsageError,
  WireError,
} from '../../shared/errors.ts';

describe('TributaryError subclasses', () => {
  const cases = [
    { make: () => new ConfigError('bad'), cls: ConfigError, code: ErrorCode.Config },
    { make: () => new InvalidEventError('r', 'bad'), cls: InvalidEventError, code: ErrorCode.InvalidEvent },
    { make: () => new StorageError('bad'), cls: StorageError, code: ErrorCode.Storage },
    { make: () => new ClosedError('the thing'), cls: ClosedError, code: ErrorCode.Closed },
    { make: () => new WireError('bad'), cls: WireError, code: ErrorCode.Wire },
    { make: () => new UsageError('bad'), cls: UsageError, code: ErrorCode.Usage },
  ];

  it('gives every class its own stable code, its class name and the Error prototype chain', () => {
    for (const { make, cls, code } of cases) {
      const err = make();
      expect(err).toBeInstanceOf(cls);
      expect(err).toBeInstanceOf(TributaryError);
      expect(err).toBeInstanceOf(Error);
      expect(err.name).toBe(cls.name);
      expect(err.code).toBe(code);
      expect(err.stack).toContain(cls.name);
    }
    const codes = cases.map((c) => c.make().code);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(code).toMatch(/^ERR_[A-Z_]+$/);
  });

  it('chains the cause it is given', () => {
    const cause = new Error('ENOSPC');
    expect(new StorageError('write failed', { cause }).cause).toBe(cause);
    expect(new WireError('bad batch', { cause }).cause).toBe(cause);
    expect(new InvalidEventError('invalid-json', 'bad', { cause }).cause).toBe(cause);
    expect(new ConfigError('bad', { file: 'a.yaml' }, { cause }).cause).toBe(cause);
  });
});

describe('ConfigError', () => {
  it('prefixes the message with the file and the key and keeps them as properties', () => {
    const err = new ConfigError('must be a number', { file: '/etc/tributary/edge.yaml', key: 'mqtt.port' });
    expect(err.message).toBe('/etc/tributary/edge.yaml: mqtt.port: must be a number');
    expect(err.file).toBe('/etc/tributary/edge.yaml');
    expect(err.key).toBe('mqtt.port');
  });

  it('names only what it knows when the file or the key is missing', () => {
    expect(new ConfigError('bad', { key: 'edgeId' }).message).toBe('edgeId: bad');
    expect(new ConfigError('bad', { file: 'x.json' }).message).toBe('x.json: bad');
    const bare = new ConfigError('bad');
    expect(bare.message).toBe('bad');
    expect(bare.file).toBeUndefined();
    expect(bare.key).toBeUndefined();
  });
});

describe('InvalidEventError', () => {
  it('carries a machine-readable reason separate from its message', () => {
    const err = new InvalidEventError('invalid-json', 'payload does not parse');
    expect(err.reason).toBe('invalid-json');
    expect(err.message).toBe('payload does not parse');
  });
});

describe('ClosedError', () => {
  it('says which component is closed', () => {
    expect(new ClosedError('the store').message).toBe('the store is closed');
  });
});

describe('errorMessage', () => {
  it('returns the message of an Error and the string form of anything else', () => {
    expect(errorMessage(new UsageError('unknown flag --x'))).toBe('unknown flag --x');
    expect(errorMessage('plain string')).toBe('plain string');
    expect(errorMessage(42)).toBe('42');
    expect(errorMessage(undefined)).toBe('undefined');
  });
});
