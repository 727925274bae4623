/**
 * The baseline: a plain Aedes broker on the same MQTT server code as the edge (TCP with Nagle off), with no
 * hooks — no events, no buffer. It is the ceiling of our own stack: the edge's numbers are read as ratios to
 * it. Run by the benchmark on Node (`dist/test/bench/aedes-broker.js`) or Deno (the `.ts` source):
 *
 *     aedes-broker --port N
 *
 * It logs one JSON line `{"msg":"broker started","port":N}` and runs until SIGTERM or SIGINT.
 */
import { Logger } from '../../shared/logger.ts';
import { startMqttServer } from '../../shared/mqtt-server.ts';

const portFlag = process.argv.indexOf('--port');
const port = portFlag >= 0 ? Number(process.argv[portFlag + 1]) : 0;
const logger = new Logger({ level: 'warn' });
const server = await startMqttServer({ host: '127.0.0.1', port, wsPort: null, hooks: {}, logger });
process.stdout.write(`${JSON.stringify({ msg: 'broker started', port: server.port })}\n`);
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void server.close().then(() => process.exit(0));
  });
}
