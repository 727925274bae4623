import { describe, expect, it } from 'vitest';
import type { CloudEvent } from '../../shared/cloud-event.ts';
import { decode, encode } from '../../shared/codec.ts';
import { validateCloudEvent } from '../../shared/cloud-event.ts';
import { InvalidEventError } from '../../shared/errors.ts';
import { EventIdGenerator, eventIdTime } from '../../shared/event-id.ts';
import type { MappingResult, TopicRule } from '../../shared/topic-mapping.ts';
import { compileTopicRules, DEFAULT_TOPIC_RULES, MAX_JSON_DEPTH, parsePayload, TopicMapper } from '../../shared/topic-mapping.ts';

const NOW = Date.UTC(2024, 4, 1, 12, 0, 0, 123);
const text = (s: string) => new TextEncoder().encode(s);

function mapper(extra: Partial<ConstructorParameters<typeof TopicMapper>[0]> = {}): TopicMapper {
  return new TopicMapper({ edgeId: 'edge-a', clock: () => NOW, ...extra });
}

function eventOf(result: MappingResult): CloudEvent {
  if (!result.ok) throw new Error(`expected an event, got rejection ${result.error.reason}: ${result.error.message}`);
  return result.event;
}

function errorOf(result: MappingResult): InvalidEventError {
  if (result.ok) throw new Error(`expected a rejection, got event ${JSON.stringify(result.event)}`);
  expect(result.error).toBeInstanceOf(InvalidEventError);
  return result.error;
}

describe('TopicMapper with the default rules', () => {
  it('maps a JSON telemetry publish to a CloudEvent naming the edge, the device and the metric', () => {
    const ev = eventOf(mapper().map('telemetry/dev1/temperature', text('{"celsius":23.5,"ok":true}')));
    expect(ev.specversion).toBe('1.0');
    expect(ev.source).toBe('/edges/edge-a/devices/dev1');
    expect(ev.type).toBe('io.tributary.telemetry.temperature');
    expect(ev.subject).toBe('dev1');
    expect(ev.datacontenttype).toBe('application/json');
    expect(ev.data).toEqual({ celsius: 23.5, ok: true });
    expect(ev.time).toBe('2024-05-01T12:00:00.123Z');
    expect(ev.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(eventIdTime(ev.id)).toBe(NOW);
    expect(validateCloudEvent(ev)).toBe(ev);
  });

  it('maps device events under events/{deviceId}/{name}', () => {
    const ev = eventOf(mapper().map('events/door-7/opened', text('{}')));
    expect(ev.type).toBe('io.tributary.event.opened');
    expect(ev.subject).toBe('door-7');
    expect(ev.source).toBe('/edges/edge-a/devices/door-7');
  });

  it('treats a plain number, string, boolean, null or array payload as JSON', () => {
    const m = mapper();
    const cases: [string, unknown][] = [['23.5', 23.5], ['-4', -4], ['"on"', 'on'], ['true', true], ['false', false], ['null', null], ['[1,2]', [1, 2]], [' \n {"a":1} ', { a: 1 }]];
    for (const [payload, data] of cases) {
      const ev = eventOf(m.map('telemetry/dev1/x', text(payload)));
      expect(ev.datacontenttype).toBe('application/json');
      expect(ev.data).toEqual(data);
    }
  });

  it('keeps opaque bytes as application/octet-stream with the same bytes as data', () => {
    const m = mapper();
    for (const payload of [new Uint8Array([0x00, 0xff, 0x10, 0x7b]), text('hello'), text('12abc'), text('nope'), new Uint8Array(0)]) {
      const ev = eventOf(m.map('telemetry/dev1/raw', payload));
      expect(ev.datacontenttype).toBe('application/octet-stream');
      expect(ev.data).toBeInstanceOf(Uint8Array);
      expect(Array.from(ev.data as Uint8Array)).toEqual(Array.from(payload));
    }
  });

  it('rejects a payload that starts like a JSON object or array but does not parse', () => {
    const m = mapper();
    for (const payload of [text('{"celsius": 23.5'), text('[1, 2'), text('{celsius: 1}'), new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])]) {
      const err = errorOf(m.map('telemetry/dev1/temperature', payload));
      expect(err.reason).toBe('invalid-json');
      expect(err.message).toContain('does not parse');
      expect(err.cause).toBeInstanceOf(Error);
    }
  });

  it('passes a structured-mode CloudEvent through unchanged', () => {
    const original = {
      specversion: '1.0',
      id: 'device-made-id-1',
      source: '/edges/edge-a/devices/dev1/sensor-42',
      type: 'com.acme.reading',
      time: '2023-01-01T00:00:00Z',
      datacontenttype: 'application/json',
      data: { v: 1 },
      acmezone: 'b2',
    };
    const ev = eventOf(mapper().map('telemetry/dev1/temperature', text(JSON.stringify(original))));
    expect(ev).toEqual(original);
  });

  it('rejects an invalid structured-mode CloudEvent with the validation reason', () => {
    const m = mapper();
    const noId = errorOf(m.map('telemetry/dev1/t', text('{"specversion":"1.0","source":"/edges/edge-a/devices/dev1","type":"t"}')));
    expect(noId.reason).toBe('id');
    expect(noId.message).toContain('"id"');
    const oldVersion = errorOf(m.map('telemetry/dev1/t', text('{"specversion":"0.3","id":"1","source":"/edges/edge-a/devices/dev1","type":"t"}')));
    expect(oldVersion.reason).toBe('specversion');
  });

  it('rejects JSON nested deeper than MAX_JSON_DEPTH (encoding it would overflow the call stack), and takes it up to there', () => {
    const m = mapper();
    const nested = (depth: number) => text('{"a":'.repeat(depth) + '1' + '}'.repeat(depth));
    for (const depth of [3_000, MAX_JSON_DEPTH + 1]) {
      for (const result of [m.map('telemetry/dev1/t', nested(depth)), m.mapEncoded('telemetry/dev1/t', nested(depth))]) {
        expect((result as MappingResult).ok).toBe(false);
        expect(errorOf(result as MappingResult).reason).toBe('too-deep');
      }
    }
    expect(m.mapEncoded('telemetry/dev1/t', nested(MAX_JSON_DEPTH)).ok).toBe(true);
    // Brackets inside strings are not nesting.
    expect(m.mapEncoded('telemetry/dev1/t', text(JSON.stringify({ s: '['.repeat(1000) + '\\"{' }))).ok).toBe(true);
  });

  it('accepts a structured-mode CloudEvent only with the source of the device its topic names, or under it', () => {
    const m = mapper();
    const event = (source: string) => text(JSON.stringify({ specversion: '1.0', id: 'e-1', source, type: 't' }));
    expect(eventOf(m.map('telemetry/dev1/t', event('/edges/edge-a/devices/dev1'))).source).toBe('/edges/edge-a/devices/dev1');
    expect(eventOf(m.map('events/dev1/door', event('/edges/edge-a/devices/dev1/door/3'))).source).toBe('/edges/edge-a/devices/dev1/door/3');
    for (const source of ['/s', '/edges/edge-a/devices/dev2', '/edges/edge-a/devices/dev10', '/edges/edge-a/devices/dev1x/a', '/edges/edge-b/devices/dev1', '/edges/edge-a', 'urn:dev1']) {
      for (const result of [m.map('telemetry/dev1/t', event(source)), m.mapEncoded('telemetry/dev1/t', event(source))]) {
        const err = errorOf(result as MappingResult);
        expect([source, err.reason]).toEqual([source, 'foreign-source']);
        expect(err.message).toContain(`"${source}"`);
        expect(err.message).toContain('"/edges/edge-a/devices/dev1"');
      }
    }
  });

  it('rejects a structured-mode CloudEvent on a topic that names no device', () => {
    const err = errorOf(mapper().map('factory/line-1', text(JSON.stringify({ specversion: '1.0', id: 'e-1', source: '/edges/edge-a/devices/dev1', type: 't' }))));
    expect(err.reason).toBe('unmapped-topic');
    expect(err.message).toContain('"factory/line-1"');
  });

  it('rejects a topic that matches no rule, naming the topic', () => {
    const m = mapper();
    for (const topic of ['foo/bar', 'telemetry/dev1', 'telemetry/dev1/temperature/extra', 'telemetry//temperature', 'Telemetry/dev1/t', '']) {
      const err = errorOf(m.map(topic, text('1')));
      expect(err.reason).toBe('unmapped-topic');
      expect(err.message).toContain(`"${topic}"`);
    }
  });

  it('gives each event its own increasing id and the time of the clock at receipt', () => {
    let now = NOW;
    const m = new TopicMapper({ edgeId: 'e', clock: () => now });
    const a = eventOf(m.map('telemetry/d/t', text('1')));
    const b = eventOf(m.map('telemetry/d/t', text('1')));
    now += 1500;
    const c = eventOf(m.map('telemetry/d/t', text('1')));
    expect(a.id < b.id && b.id < c.id).toBe(true);
    expect(a.time).toBe(new Date(NOW).toISOString());
    expect(c.time).toBe(new Date(NOW + 1500).toISOString());
    expect(eventIdTime(c.id)).toBe(NOW + 1500);
  });

  it('uses an injected id generator', () => {
    const ids = new EventIdGenerator(() => Date.UTC(2030, 0, 1));
    const ev = eventOf(mapper({ ids }).map('telemetry/d/t', text('1')));
    expect(eventIdTime(ev.id)).toBe(Date.UTC(2030, 0, 1));
  });
});

describe('TopicMapper.deviceOf', () => {
  it('names the device of a mapped topic and nothing for an unmapped one', () => {
    const m = mapper();
    expect(m.deviceOf('telemetry/pump-3/pressure')).toBe('pump-3');
    expect(m.deviceOf('events/pump-4/started')).toBe('pump-4');
    expect(m.deviceOf('status/pump-3')).toBeUndefined();
  });
});

describe('TopicMapper with custom rules', () => {
  const rules: TopicRule[] = [
    { topic: 'plant/{site}/{deviceId}/alarm', type: 'com.acme.{site}.alarm' },
    { topic: 'plant/{site}/{deviceId}/{metric}', type: 'com.acme.{site}.{metric}' },
  ];

  it('fills the type template from the topic variables', () => {
    const ev = eventOf(mapper({ rules }).map('plant/north/boiler1/pressure', text('2.1')));
    expect(ev.type).toBe('com.acme.north.pressure');
    expect(ev.subject).toBe('boiler1');
    expect(ev.source).toBe('/edges/edge-a/devices/boiler1');
  });

  it('uses the first rule that matches', () => {
    expect(eventOf(mapper({ rules }).map('plant/south/b2/alarm', text('1'))).type).toBe('com.acme.south.alarm');
  });

  it('replaces the default rules', () => {
    expect(errorOf(mapper({ rules }).map('telemetry/dev1/temperature', text('1'))).reason).toBe('unmapped-topic');
  });

  it('refuses to build with an invalid rule', () => {
    expect(() => mapper({ rules: [{ topic: 'telemetry/+/x', type: 't' }] })).toThrow(/rule 0/);
  });
});

describe('compileTopicRules', () => {
  it('compiles the default rules', () => {
    expect(compileTopicRules(DEFAULT_TOPIC_RULES)).toHaveLength(DEFAULT_TOPIC_RULES.length);
  });

  it('rejects a rule whose topic has no {deviceId}, giving its index', () => {
    expect(() => compileTopicRules([DEFAULT_TOPIC_RULES[0], { topic: 'telemetry/{sensor}/{metric}', type: 'x.{metric}' }])).toThrow(
      'rule 1: topic "telemetry/{sensor}/{metric}" must contain {deviceId}',
    );
  });

  it('rejects a type template that uses a variable the topic does not define', () => {
    expect(() => compileTopicRules([{ topic: 'telemetry/{deviceId}/{metric}', type: 'io.x.{room}.{metric}' }])).toThrow(
      'rule 0: type uses {room}, which the topic does not define',
    );
  });

  it('rejects MQTT wildcards and partial variables in the topic', () => {
    for (const topic of ['telemetry/{deviceId}/+', 'telemetry/{deviceId}/#', 'telemetry/dev-{deviceId}/x', 'telemetry/{deviceId}/{bad-name}', 'telemetry/{deviceId}/{x']) {
      expect(() => compileTopicRules([{ topic, type: 't' }])).toThrow(/rule 0: topic level ".*" must be a literal or a whole \{variable\}/);
    }
  });
});

describe('TopicMapper topic cache', () => {
  it('gives the same results after the cache has been cleared', () => {
    const topics = ['telemetry/d1/t', 'telemetry/d2/h', 'nowhere/d3', 'events/d4/boot', 'telemetry/d5/p', 'also/not/mapped/here'];
    const small = mapper({ cacheSize: 2 });
    const large = mapper();
    const summary = (r: MappingResult) => (r.ok ? [r.event.type, r.event.source, r.event.subject] : [r.error.reason]);
    for (let round = 0; round < 4; round++) {
      for (const topic of round % 2 ? [...topics].reverse() : topics) {
        expect(summary(small.map(topic, text('1')))).toEqual(summary(large.map(topic, text('1'))));
        expect(small.deviceOf(topic)).toBe(large.deviceOf(topic));
      }
    }
  });
});

/** Always the same id, so that two mappings of one publish can be compared byte for byte. */
class FixedIds extends EventIdGenerator {
  static readonly ID = '018f3a2b-1c4d-7e5f-8a9b-0c1d2e3f4a5b';
  override next(): string {
    return FixedIds.ID;
  }
  override writeNext(target: Uint8Array, offset: number): void {
    for (let i = 0; i < FixedIds.ID.length; i++) target[offset + i] = FixedIds.ID.charCodeAt(i);
  }
}

describe('TopicMapper.mapEncoded', () => {
  const payloads = [
    '{"celsius":23.5,"ok":true,"tags":["a"]}',
    '{"seq":          12,"ts":     12345.678,"value":21.53,"unit":"celsius","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}',
    '{"a":1,"a":2}', // JSON the fast path leaves to JSON.parse
    '{"1":"x","b":2}',
    '"text"',
    '17',
    'null',
    '   ',
    'ok',
    '-',
    '\ufeff{}',
    'grüße',
  ];

  it('writes the bytes encode(map(...).event) writes, for JSON, opaque bytes and structured-mode events', () => {
    const structured = (deviceId: string) => JSON.stringify({ specversion: '1.0', id: 'x-1', source: `/edges/edge-a/devices/${deviceId}`, type: 't', data: { a: 1 } });
    const binary = [new Uint8Array([0, 1, 2, 0xff]), new Uint8Array(300).fill(0xfe), new Uint8Array(70_000).fill(0xc1)];
    const m = mapper({ ids: new FixedIds() });
    // Aedes hands payloads over as Buffers, often windows on a larger one.
    const buffers = [Buffer.from('{"v":[1,2.5,"x"]}'), Buffer.from('..{"w":true}..').subarray(2, 12), Buffer.from([0xde, 0xad, 0xbe, 0xef])];
    for (const topic of ['telemetry/dev1/temperature', 'events/door-7/opened']) {
      for (const payload of [...payloads.map(text), text(structured(topic.split('/')[1])), ...binary, ...buffers]) {
        const result = m.mapEncoded(topic, payload);
        if (!result.ok) throw result.error;
        expect(Buffer.from(result.bytes).toString('hex')).toBe(Buffer.from(encode(eventOf(m.map(topic, payload)))).toString('hex'));
      }
    }
  });

  it('decodes to a valid CloudEvent with a fresh increasing id for each publish', () => {
    const m = mapper();
    const events = [1, 2, 3].map(() => {
      const result = m.mapEncoded('telemetry/dev1/t', text('{"v":1}'));
      if (!result.ok) throw result.error;
      return validateCloudEvent(decode(result.bytes));
    });
    expect(events[0]).toMatchObject({ specversion: '1.0', source: '/edges/edge-a/devices/dev1', type: 'io.tributary.telemetry.t', subject: 'dev1', time: new Date(NOW).toISOString(), data: { v: 1 } });
    expect(events[0].id < events[1].id && events[1].id < events[2].id).toBe(true);
  });

  it('rejects what map rejects, with the same reasons', () => {
    const m = mapper();
    const cases: [string, string][] = [
      ['telemetry/dev1/t', '{"celsius": 2'],
      ['nowhere/dev1', '{"v":1}'],
      ['nowhere/dev1', 'bytes'],
      ['telemetry/dev1/t', '{"specversion":"1.0","source":"/edges/edge-a/devices/dev1","type":"t"}'],
      ['telemetry/dev1/t', '{"specversion":"1.0","id":"1","source":"/s","type":"t"}'],
      ['nowhere/dev1', '{"specversion":"1.0","id":"1","source":"/edges/edge-a/devices/dev1","type":"t"}'],
    ];
    for (const [topic, payload] of cases) {
      const result = m.mapEncoded(topic, text(payload));
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error.reason).toBe(errorOf(m.map(topic, text(payload))).reason);
    }
  });
});

describe('parsePayload', () => {
  it('returns JSON values, undefined for opaque bytes and an InvalidEventError for broken JSON objects', () => {
    expect(parsePayload(text('{"a":[1]}'))).toEqual({ a: [1] });
    expect(parsePayload(text('null'))).toBeNull();
    expect(parsePayload(text('   '))).toBeUndefined();
    expect(parsePayload(text('ok'))).toBeUndefined();
    expect(parsePayload(text('-'))).toBeUndefined();
    const broken = parsePayload(text('{"a":'));
    expect(broken).toBeInstanceOf(InvalidEventError);
    expect((broken as InvalidEventError).reason).toBe('invalid-json');
  });
});
