/**
 * What `tributary edge` and `tributary cloud` share: parse flags, load and check the config, start the node,
 * log a status line with per-second rates every few seconds, and stop cleanly on SIGINT/SIGTERM (a second
 * signal exits at once). Config and usage errors print one clear message and exit with status 2.
 */
import process from 'node:process';
import type { z } from 'zod';
import { loadConfig } from '../config.ts';
import { ConfigError, UsageError } from '../errors.ts';
import type { LogFormat, LogLevelName } from '../logger.ts';
import { Logger } from '../logger.ts';
import type { CommandSpec } from './args.ts';
import { formatHelp, parseArgs } from './args.ts';

export interface RunnableNode {
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): object;
}

export interface NodeCommand<S extends z.ZodType> {
  spec: CommandSpec;
  schema: S;
  logSettings(config: z.output<S>): { level: LogLevelName; format: LogFormat };
  statusIntervalMs(config: z.output<S>): number;
  /** `configFile`: the file the config came from (if any), for error messages that name it. */
  create(config: z.output<S>, logger: Logger, context: { configFile?: string }): RunnableNode;
  /** Status counters shown also as a per-second rate (`<name>PerSec`). */
  rateKeys: readonly string[];
}

export async function runNodeCommand<S extends z.ZodType>(command: NodeCommand<S>, argv: readonly string[]): Promise<number> {
  let config: z.output<S>;
  let configFile: string | undefined;
  try {
    const args = parseArgs(command.spec, argv);
    if (args.help) {
      process.stdout.write(formatHelp(command.spec));
      return 0;
    }
    if (args.positionals.length) throw new UsageError(`unexpected argument "${args.positionals[0]}"; see "tributary ${command.spec.name} --help"`);
    configFile = args.flags.config as string | undefined;
    config = await loadConfig(command.schema, {
      file: configFile,
      overrides: args.overrides,
      flagOf: args.flagOf,
    });
  } catch (err) {
    return reportUsageError(err);
  }
  const logger = new Logger(command.logSettings(config)).child({ component: command.spec.name });
  const node = command.create(config, logger, { configFile });
  try {
    await node.start();
  } catch (err) {
    logger.error(`cannot start: ${(err as Error).message}`, { err });
    return 1;
  }

  const timer = startStatusLine(node, logger, command.rateKeys, command.statusIntervalMs(config));
  await waitForSignal(logger);
  if (timer) clearInterval(timer);
  try {
    await node.stop();
  } catch (err) {
    logger.error('error while stopping', { err });
    return 1;
  }
  return 0;
}

/** Prints a config or usage error as one message (no stack) and returns exit status 2; rethrows others. */
export function reportUsageError(err: unknown): number {
  if (err instanceof ConfigError || err instanceof UsageError) {
    process.stderr.write(`tributary: ${err.message}\n`);
    return 2;
  }
  throw err;
}

function startStatusLine(node: RunnableNode, logger: Logger, rateKeys: readonly string[], intervalMs: number): ReturnType<typeof setInterval> | undefined {
  if (intervalMs <= 0) return undefined;
  let previous = node.status() as Record<string, unknown>;
  let previousAt = Date.now();
  const timer = setInterval(() => {
    const now = Date.now();
    const status = node.status() as Record<string, unknown>;
    const fields: Record<string, unknown> = { ...status };
    for (const key of rateKeys) {
      const delta = Number(status[key]) - Number(previous[key]);
      fields[`${key}PerSec`] = Math.round((delta * 1000) / Math.max(1, now - previousAt));
    }
    logger.info('status', fields);
    previous = status;
    previousAt = now;
  }, intervalMs);
  timer.unref?.();
  return timer;
}

/** Resolves on the first SIGINT or SIGTERM; a second one exits the process at once. */
export function waitForSignal(logger: Logger): Promise<string> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: string) => {
      if (received) {
        logger.warn('second signal: exiting now', { signal });
        process.exit(130);
      }
      received = true;
      logger.info('stopping', { signal });
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
