/**
 * The commands routes of the cloud's HTTP API (mounted next to those of http-api.ts, whose error handler
 * answers for them):
 *
 * - `POST /v1/devices/{deviceId}/commands` with a JSON body `{data, name?, ttlSeconds?, edge?}` → 202
 *   `{command}` once the command is durable (`Location: /v1/commands/{id}`). `data` is any JSON value (null
 *   for none) and is required; `ttlSeconds` defaults to `commands.defaultTtlSeconds` and may be 1 to
 *   `commands.maxTtlSeconds`; `edge` names the edge that serves the device, needed until an edge has reported it.
 * - `GET /v1/devices/{deviceId}/commands` → `{commands: [...]}`, the device's commands, oldest first.
 * - `GET /v1/commands/{commandId}` → `{command}`, or 404.
 *
 * A command is `{id, device, edge, name?, data, state, createdAt, expiresAt, updatedAt}`; `state` is `pending`
 * (in the cloud), `sent` (stored at the edge), `delivered` (the device acknowledged it), `replied` or `expired`.
 * Bad input gets 400 `{error: {code: 'ERR_BAD_PARAMETER', message, parameter}}` naming what is wrong; a body
 * over 256 KiB gets 413. With `auth`, every route needs a bearer token with the `commands:send` scope.
 */
import { Hono } from 'hono';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { commandNameProblem, DEVICE_ID_RULE, EDGE_ID_RULE, isCommandId, isDeviceId, isEdgeId } from '../shared/command-wire.ts';
import type { CloudCommands, CommandRecord } from './commands.ts';
import type { ApiAuth } from './api-auth.ts';
import { BadParameterError, HttpErrorCode } from './http-api.ts';

export interface CommandsApiOptions {
  commands: CloudCommands;
  /** Bearer tokens and scopes (api-auth.ts): every route here needs `commands:send`. Open without it. */
  auth?: ApiAuth;
  defaultTtlSeconds: number;
  maxTtlSeconds: number;
}

export const MAX_COMMAND_BODY_BYTES = 256 * 1024;
const BODY_MEMBERS = ['data', 'name', 'ttlSeconds', 'edge'];

export function createCommandsApi(options: CommandsApiOptions): Hono {
  const { commands } = options;
  const app = new Hono();

  if (options.auth) {
    // Before the body is read: a request without the scope costs nothing more.
    app.use('/v1/devices/:device/commands', options.auth.requireScope('commands:send'));
    app.use('/v1/commands/*', options.auth.requireScope('commands:send'));
  }

  app.post(
    '/v1/devices/:device/commands',
    bodyLimit({
      maxSize: MAX_COMMAND_BODY_BYTES,
      onError: (c) =>
        c.json({ error: { code: HttpErrorCode.BadParameter, message: `request body is larger than ${MAX_COMMAND_BODY_BYTES} bytes; send smaller command data`, parameter: 'body' } }, 413),
    }),
    async (c) => {
      const device = deviceParam(c);
      const body = await jsonBody(c);
      for (const key of Object.keys(body)) {
        if (!BODY_MEMBERS.includes(key)) throw new BadParameterError(key, `unknown member "${key}" in the request body; a command has ${BODY_MEMBERS.map((m) => `"${m}"`).join(', ')}`);
      }
      if (!('data' in body)) throw new BadParameterError('data', 'the request body needs "data": the command\'s payload, any JSON value (null for none)');
      let name: string | undefined;
      if (body.name !== undefined) {
        const problem = commandNameProblem(body.name);
        if (problem) throw new BadParameterError('name', `"name" ${problem} (got ${JSON.stringify(body.name)})`);
        name = body.name as string;
      }
      const ttlSeconds = body.ttlSeconds === undefined ? options.defaultTtlSeconds : ttlParam(body.ttlSeconds, options.maxTtlSeconds);
      let edge: string;
      if (body.edge !== undefined) {
        if (!isEdgeId(body.edge)) throw new BadParameterError('edge', `"edge" must be an edge id, ${EDGE_ID_RULE} (got ${JSON.stringify(body.edge)})`);
        edge = body.edge;
      } else {
        const known = commands.edgeOf(device);
        if (known === undefined) {
          throw new BadParameterError('edge', `device "${device}" is not known to any edge yet (an edge reports a device once it has connected); name the edge that serves it with "edge"`);
        }
        edge = known;
      }
      const record = await commands.create({ device, edge, name, data: body.data, ttlSeconds });
      c.header('location', `/v1/commands/${record.command.id}`);
      return c.json({ command: view(record) }, 202);
    },
  );

  app.get('/v1/devices/:device/commands', (c) => c.json({ commands: commands.byDevice(deviceParam(c)).map(view) }));

  app.get('/v1/commands/:id', (c) => {
    const id = c.req.param('id');
    if (!isCommandId(id)) throw new BadParameterError('id', `"${id}" is not a command id (a UUID as returned by POST /v1/devices/{deviceId}/commands)`);
    const record = commands.get(id);
    if (!record) return c.json({ error: { code: HttpErrorCode.NotFound, message: `no command "${id}" (finished commands are kept for a limited time)` } }, 404);
    return c.json({ command: view(record) });
  });

  return app;
}

export interface CommandView {
  id: string;
  device: string;
  edge: string;
  name?: string;
  data: unknown;
  state: CommandRecord['state'];
  createdAt: string;
  expiresAt: string;
  updatedAt: string;
}

function view(record: CommandRecord): CommandView {
  const { command } = record;
  const out: CommandView = {
    id: command.id,
    device: command.device,
    edge: command.edge,
    data: command.data,
    state: record.state,
    createdAt: command.createdAt,
    expiresAt: command.expiresAt,
    updatedAt: record.updatedAt,
  };
  if (command.name !== undefined) out.name = command.name;
  return out;
}

function deviceParam(c: Context): string {
  const device = c.req.param('device') ?? '';
  if (!isDeviceId(device)) throw new BadParameterError('device', `"${device}" is not a device id: ${DEVICE_ID_RULE}`);
  return device;
}

async function jsonBody(c: Context): Promise<Record<string, unknown>> {
  const text = await c.req.text();
  if (text.trim() === '') throw new BadParameterError('body', 'the request body is empty; send a JSON object such as {"name": "reboot", "data": null}');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new BadParameterError('body', `the request body is not valid JSON: ${(err as Error).message}`);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new BadParameterError('body', 'the request body must be a JSON object such as {"name": "reboot", "data": null}');
  }
  return body as Record<string, unknown>;
}

function ttlParam(value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new BadParameterError('ttlSeconds', `"ttlSeconds" must be a whole number of seconds from 1 to ${max} (got ${JSON.stringify(value)})`);
  }
  return value;
}
