import process from 'node:process';

/**
 * Structured logging: one record per line, JSON by default (for machines and log shippers) or a compact
 * human form for terminals. A record is `{time, level, component, msg, ...fields}`.
 */
export const LogLevel = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevelName = keyof typeof LogLevel;
export type LogFormat = 'json' | 'pretty';
export type LogFields = Record<string, unknown>;

export interface LogSink {
  write(line: string): void;
}

export interface LoggerOptions {
  level?: LogLevelName;
  format?: LogFormat;
  sink?: LogSink;
  clock?: () => number;
}

const stderrSink: LogSink = { write: (line) => void process.stderr.write(line) };

/** Keys whose values never reach a log line (credentials and secrets). */
const SECRET_KEY = /pass(word)?|secret|token|authorization|key$/i;

export class Logger {
  readonly level: number;
  readonly #format: LogFormat;
  readonly #sink: LogSink;
  readonly #clock: () => number;
  readonly #bindings: LogFields;

  constructor(options: LoggerOptions = {}, bindings: LogFields = {}) {
    this.level = LogLevel[options.level ?? 'info'];
    this.#format = options.format ?? 'json';
    this.#sink = options.sink ?? stderrSink;
    this.#clock = options.clock ?? Date.now;
    this.#bindings = bindings;
  }

  /** A logger that adds `fields` to every record (e.g. `{component: 'uplink'}`). */
  child(fields: LogFields): Logger {
    return new Logger(
      { level: levelName(this.level), format: this.#format, sink: this.#sink, clock: this.#clock },
      { ...this.#bindings, ...fields },
    );
  }

  debug(msg: string, fields?: LogFields): void {
    if (this.level <= LogLevel.debug) this.#write('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    if (this.level <= LogLevel.info) this.#write('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    if (this.level <= LogLevel.warn) this.#write('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    if (this.level <= LogLevel.error) this.#write('error', msg, fields);
  }

  #write(level: LogLevelName, msg: string, fields: LogFields | undefined): void {
    const record: LogFields = { time: new Date(this.#clock()).toISOString(), level, ...this.#bindings, msg };
    if (fields) for (const [k, v] of Object.entries(fields)) record[k] = v;
    this.#sink.write(this.#format === 'json' ? JSON.stringify(record, replacer) + '\n' : pretty(record));
  }
}

function levelName(level: number): LogLevelName {
  return (Object.keys(LogLevel) as LogLevelName[]).find((k) => LogLevel[k] === level) ?? 'info';
}

function replacer(key: string, value: unknown): unknown {
  if (key && SECRET_KEY.test(key) && value !== undefined) return '[redacted]';
  if (value instanceof Error) {
    const out: LogFields = { name: value.name, message: value.message };
    if ('code' in value) out.code = (value as { code: unknown }).code;
    if (value.cause !== undefined) out.cause = replacer('', value.cause);
    return out;
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}

function pretty(record: LogFields): string {
  const { time, level, component, msg, ...rest } = record;
  const clock = String(time).slice(11, 19);
  const parts = [clock, String(level).toUpperCase().padEnd(5), component ? `${String(component)}:` : '', msg];
  for (const [k, raw] of Object.entries(rest)) {
    const v = replacer(k, raw);
    const text = typeof v === 'string' ? v : JSON.stringify(v, replacer);
    parts.push(`${k}=${text}`);
  }
  return parts.filter((p) => p !== '').join(' ') + '\n';
}

/** A logger that drops everything (tests and library defaults). */
export const silentLogger = new Logger({ level: 'silent' });
