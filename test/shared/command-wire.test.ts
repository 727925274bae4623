import { describe, expect, it } from 'vitest';
import type { Command } from '../../shared/command-wire.ts';
import {
  advances,
  CommandTopic,
  ControlTopic,
  controlTopic,
  decodeCloudMessage,
  decodeCommandUpdates,
  decodeDeviceCommand,
  decodeDeviceReport,
  encodeCommandMessage,
  encodeCommandUpdates,
  encodeDeviceCommand,
  encodeDeviceReport,
  encodeHello,
  filterMatches,
  parseControlTopic,
} from '../../shared/command-wire.ts';
import { encode } from '../../shared/codec.ts';
import { WireError } from '../../shared/errors.ts';

const command: Command = {
  id: '01890a5d-ac96-774b-bcce-b302099a8057',
  device: 'sim-0001',
  edge: 'edge-1',
  name: 'set-interval',
  data: { seconds: 5, tags: ['a', 'b'], nested: { on: true, off: null } },
  createdAt: '2025-01-01T00:00:00.000Z',
  expiresAt: '2025-01-01T01:00:00.000Z',
};

describe('command wire format', () => {
  it('round-trips a command, reports and device lists through MessagePack', () => {
    expect(decodeCloudMessage(encodeCommandMessage(command))).toEqual({ command });
    const { name: _name, ...unnamed } = command;
    expect(decodeCloudMessage(encodeCommandMessage({ ...unnamed, data: null }))).toEqual({ command: { ...unnamed, data: null } });
    expect(decodeCloudMessage(encodeHello())).toEqual({ hello: true });
    const updates = [
      { id: command.id, state: 'sent' as const, at: '2025-01-01T00:00:01.000Z' },
      { id: command.id, state: 'replied' as const, at: '2025-01-01T00:00:02.000Z' },
    ];
    expect(decodeCommandUpdates(encodeCommandUpdates(updates))).toEqual(updates);
    expect(decodeDeviceReport(encodeDeviceReport({ devices: ['sim-0001', 'sensor.7'], full: true }))).toEqual({ devices: ['sim-0001', 'sensor.7'], full: true });
  });

  it('round-trips the JSON a device receives, without cloud-side fields', () => {
    const payload = encodeDeviceCommand(command);
    expect(JSON.parse(new TextDecoder().decode(payload))).toEqual({ id: command.id, name: command.name, data: command.data, expiresAt: command.expiresAt });
    expect(decodeDeviceCommand(payload)).toEqual({ id: command.id, name: command.name, data: command.data, expiresAt: command.expiresAt });
  });

  it.each([
    ['not a map', encode([1, 2]), /not a map/],
    ['neither a hello nor a command', encode({ v: 1, hello: false }), /"command" is not a map/],
    ['another wire version', encode({ v: 2, command }), /wire version 2; this node speaks 1/],
    ['a command id that is not a UUID', encode({ v: 1, command: { ...command, id: 'abc' } }), /"id" must be a command id/],
    ['a device id with a slash', encode({ v: 1, command: { ...command, device: 'a/b' } }), /"device" must be a device id/],
    ['a device id that is a $ topic level', encode({ v: 1, command: { ...command, device: '$SYS' } }), /"device" must be a device id/],
    ['a bad edge id', encode({ v: 1, command: { ...command, edge: '' } }), /"edge" must be an edge id/],
    ['no data', encode({ v: 1, command: { ...command, data: undefined } }), /"data" is missing/],
    ['a bad expiry', encode({ v: 1, command: { ...command, expiresAt: 'tomorrow' } }), /"expiresAt" must be an RFC 3339 time/],
    ['a name with a control character', encode({ v: 1, command: { ...command, name: 'a\nb' } }), /"name" must not contain control characters/],
  ])('refuses a command message with %s', (_what, bytes, message) => {
    expect(() => decodeCloudMessage(bytes)).toThrow(WireError);
    expect(() => decodeCloudMessage(bytes)).toThrow(message);
  });

  it.each([
    ['no updates', encode({ v: 1, updates: [] }), /non-empty "updates" array/],
    ['an unknown state', encode({ v: 1, updates: [{ id: command.id, state: 'pending', at: command.createdAt }] }), /"state" must be one of sent, delivered, replied, expired, got "pending"/],
    ['a missing time', encode({ v: 1, updates: [{ id: command.id, state: 'sent' }] }), /update 0: "at" must be an RFC 3339 time/],
    ['an update that is not a map', encode({ v: 1, updates: ['sent'] }), /update 0 is not a map/],
  ])('refuses a command acknowledgement with %s', (_what, bytes, message) => {
    expect(() => decodeCommandUpdates(bytes)).toThrow(message);
  });

  it('refuses a device report with a bad device id or no "full"', () => {
    expect(() => decodeDeviceReport(encode({ v: 1, devices: ['ok', 'a+b'], full: false }))).toThrow(/device 1 is not a device id/);
    expect(() => decodeDeviceReport(encode({ v: 1, devices: [] }))).toThrow(/"full" must be true or false/);
    expect(() => decodeDeviceReport(new Uint8Array([0xc1]))).toThrow(WireError);
  });

  it('refuses a device payload that is not a JSON command', () => {
    expect(() => decodeDeviceCommand(new TextEncoder().encode('{"id":'))).toThrow(/command payload is not JSON/);
    expect(() => decodeDeviceCommand(new TextEncoder().encode('{"id":"x","expiresAt":"2025-01-01T00:00:00Z"}'))).toThrow(/"id" must be a command id/);
  });
});

describe('command topics', () => {
  it('names and parses the control topics of an edge', () => {
    expect(controlTopic('edge-1', ControlTopic.Commands)).toBe('tributary/v1/edges/edge-1/commands');
    expect(parseControlTopic('tributary/v1/edges/edge-1/command-acks')).toEqual({ edge: 'edge-1', kind: 'command-acks' });
    expect(parseControlTopic('tributary/v1/edges/edge-1/devices')).toEqual({ edge: 'edge-1', kind: 'devices' });
    expect(parseControlTopic('tributary/v1/edges/edge-1/batches')).toBeUndefined();
    expect(parseControlTopic('tributary/v1/edges//devices')).toBeUndefined();
    expect(parseControlTopic('tributary/v1/edges/a/b/devices')).toBeUndefined();
  });

  it('matches and formats device command topics', () => {
    const reply = new CommandTopic('commands/{deviceId}/replies/{commandId}', ['deviceId', 'commandId']);
    expect(reply.match('commands/d1/replies/c1')).toEqual({ deviceId: 'd1', commandId: 'c1' });
    expect(reply.match('commands/d1/replies')).toBeUndefined();
    expect(reply.match('commands//replies/c1')).toBeUndefined();
    expect(reply.match('telemetry/d1/replies/c1')).toBeUndefined();
    expect(reply.format({ deviceId: 'd1', commandId: 'c1' })).toBe('commands/d1/replies/c1');
  });

  it('refuses topic patterns it could not match', () => {
    expect(() => new CommandTopic('commands/+', ['deviceId'])).toThrow(/level "\+" must be a literal or a whole \{variable\}/);
    expect(() => new CommandTopic('commands/all', ['deviceId'])).toThrow(/must contain \{deviceId\}/);
    expect(() => new CommandTopic('commands/{device}', ['deviceId'])).toThrow(/unknown variable \{device\}/);
  });

  it('matches MQTT topic filters as [MQTT-4.7.1] says', () => {
    expect(filterMatches('tributary/#', 'tributary/v1/edges/x/commands')).toBe(true);
    expect(filterMatches('tributary/v1/edges/+/commands', 'tributary/v1/edges/x/commands')).toBe(true);
    expect(filterMatches('tributary/v1/edges/y/commands', 'tributary/v1/edges/x/commands')).toBe(false);
    expect(filterMatches('a/#', 'a')).toBe(true);
    expect(filterMatches('a/+', 'a')).toBe(false);
    expect(filterMatches('#', '$SYS/x')).toBe(false);
  });
});

describe('command states', () => {
  it('only move forward, and expire only before delivery', () => {
    expect(advances('pending', 'sent')).toBe(true);
    expect(advances('sent', 'delivered')).toBe(true);
    expect(advances('delivered', 'replied')).toBe(true);
    expect(advances('sent', 'replied')).toBe(true);
    expect(advances('sent', 'expired')).toBe(true);
    expect(advances('delivered', 'sent')).toBe(false);
    expect(advances('delivered', 'expired')).toBe(false);
    expect(advances('expired', 'delivered')).toBe(false);
    expect(advances('replied', 'delivered')).toBe(false);
  });
});
