/**
 * The project's named errors. Every error a user can meet has a stable `code`, a message that says what was
 * wrong and what to do, and the underlying `cause` chained.
 */
export const ErrorCode = {
  Config: 'ERR_CONFIG',
  InvalidEvent: 'ERR_INVALID_EVENT',
  InvalidPayload: 'ERR_INVALID_PAYLOAD',
  Storage: 'ERR_STORAGE',
  Closed: 'ERR_CLOSED',
  Wire: 'ERR_WIRE',
  Usage: 'ERR_USAGE',
  Limit: 'ERR_LIMIT',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class TributaryError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A configuration file or flag is wrong. Names the file and the key. */
export class ConfigError extends TributaryError {
  readonly file: string | undefined;
  readonly key: string | undefined;
  constructor(message: string, where: { file?: string; key?: string } = {}, options?: { cause?: unknown }) {
    const at = [where.file, where.key].filter(Boolean).join(': ');
    super(ErrorCode.Config, at ? `${at}: ${message}` : message, options);
    this.file = where.file;
    this.key = where.key;
  }
}

/** An event does not follow CloudEvents 1.0, or a device payload cannot become one. */
export class InvalidEventError extends TributaryError {
  /** A short machine-readable reason, used as a counter label. */
  readonly reason: string;
  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.InvalidEvent, message, options);
    this.reason = reason;
  }
}

/** The on-disk store failed; the operation was not applied. */
export class StorageError extends TributaryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Storage, message, options);
  }
}

/** The component was closed while the operation was waiting. */
export class ClosedError extends TributaryError {
  constructor(what: string) {
    super(ErrorCode.Closed, `${what} is closed`);
  }
}

/** A message on the edge-cloud link could not be decoded. */
export class WireError extends TributaryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Wire, message, options);
  }
}

/** A command line that cannot be run as given. */
export class UsageError extends TributaryError {
  constructor(message: string) {
    super(ErrorCode.Usage, message);
  }
}

/** A client went past a limit against abuse (edge/mqtt-limits.ts): the error its connection is closed with. */
export class LimitExceededError extends TributaryError {
  /** Which limit, e.g. `packet-size`; the label of its counter. */
  readonly limit: string;
  constructor(limit: string, message: string) {
    super(ErrorCode.Limit, message);
    this.limit = limit;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
