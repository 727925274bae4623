/**
 * `tributary simulate`: run a fleet of simulated devices against an edge node until SIGINT/SIGTERM or, with
 * `--messages N`, until every device's N messages are acknowledged (QoS 0: sent).
 */
import process from 'node:process';
import type { CommandSpec } from '../shared/cli/args.ts';
import { formatHelp, parseArgs } from '../shared/cli/args.ts';
import { reportUsageError, waitForSignal } from '../shared/cli/node-command.ts';
import { loadConfig } from '../shared/config.ts';
import { UsageError } from '../shared/errors.ts';
import { Logger } from '../shared/logger.ts';
import { openAckFile } from './ack-file.ts';
import type { AckFile } from './ack-file.ts';
import { simulatorConfigSchema, simulatorFlags, toFleetOptions } from './config.ts';
import type { SimulatorConfig } from './config.ts';
import { Fleet } from './fleet.ts';

export const spec: CommandSpec = {
  name: 'simulate',
  summary: 'Run a fleet of simulated devices that publish telemetry to an edge node over MQTT.',
  description:
    'Each device has its own MQTT connection (client id = device id) and publishes JSON readings to\n' +
    'telemetry/{deviceId}/{metric} with "seq" (its message counter, from 0) and "ts" (epoch ms at send).\n' +
    'Profiles: temperature, humidity, vibration, battery, gps. The same --seed gives the same readings.',
  flags: simulatorFlags,
  examples: [
    'tributary simulate',
    'tributary simulate --devices 1000 --rate 0.5 --edge mqtt://gateway.local:1883',
    'tributary simulate --devices 5 --messages 100 --ack-file acks.txt',
  ],
};

export async function main(argv: string[]): Promise<number> {
  let config: SimulatorConfig;
  let ackPath: string | undefined;
  let fleetOptions: Awaited<ReturnType<typeof toFleetOptions>>;
  try {
    const args = parseArgs(spec, argv);
    if (args.help) {
      process.stdout.write(formatHelp(spec));
      return 0;
    }
    if (args.positionals.length) throw new UsageError(`unexpected argument "${args.positionals[0]}"; see "tributary simulate --help"`);
    const configFile = args.flags.config as string | undefined;
    config = await loadConfig(simulatorConfigSchema, { file: configFile, overrides: args.overrides, flagOf: args.flagOf });
    fleetOptions = await toFleetOptions(config, configFile);
    ackPath = args.flags['ack-file'] as string | undefined;
  } catch (err) {
    return reportUsageError(err);
  }
  const logger = new Logger(config.log).child({ component: 'simulate' });
  let acks: AckFile | undefined;
  try {
    acks = ackPath === undefined ? undefined : openAckFile(ackPath, (err) => logger.error('cannot write the ack file', { file: ackPath, err }));
  } catch (err) {
    return reportUsageError(err);
  }

  const fleet = new Fleet({ ...fleetOptions, logger, ackLog: acks?.write });
  const signal = waitForSignal(logger);
  const finished = config.messagesPerDevice === undefined ? new Promise<never>(() => undefined) : fleet.whenDone();
  // A fleet that is stopped first rejects `finished`; the race below has already settled by then.
  finished.catch(() => undefined);
  // From the start: ramping up ten thousand devices takes a while, and the status line shows how far it got.
  const timer = config.statusIntervalMs > 0 ? setInterval(() => logger.info('status', { ...fleet.stats() }), config.statusIntervalMs) : undefined;
  let code = 0;
  try {
    const started = await Promise.race([fleet.start().then(() => true), signal.then(() => false)]);
    if (started) await Promise.race([signal, finished]);
  } catch (err) {
    logger.error('the fleet failed', { err });
    code = 1;
  }
  clearInterval(timer);
  await fleet.stop();
  await acks?.close();
  const stats = fleet.stats();
  logger.info('stopped', { ...stats });
  if (stats.done && config.qos === 1 && stats.acked < stats.devices * config.messagesPerDevice!) {
    logger.error('not every message was acknowledged', { expected: stats.devices * config.messagesPerDevice!, acked: stats.acked, errors: stats.errors });
    code = 1;
  }
  return code;
}
