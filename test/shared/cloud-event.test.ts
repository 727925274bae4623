import { CloudEvent as SdkCloudEvent } from 'cloudevents';
import { describe, expect, it } from 'vitest';
import type { CloudEvent } from '../../shared/cloud-event.ts';
import { toJsonFormat, validateCloudEvent } from '../../shared/cloud-event.ts';
import { InvalidEventError } from '../../shared/errors.ts';
import { TopicMapper } from '../../shared/topic-mapping.ts';

const minimal = { specversion: '1.0', id: 'evt-1', source: '/edges/e1/devices/dev1', type: 'io.tributary.telemetry.temperature' };

const full = {
  ...minimal,
  subject: 'dev1',
  time: '2024-05-01T12:00:00.123Z',
  datacontenttype: 'application/json',
  dataschema: 'https://schemas.example.com/temperature.json',
  data: { celsius: 23.5 },
  site: 'north',
  priority: 3,
  critical: false,
};

/** Runs `validateCloudEvent` and returns the InvalidEventError it throws. */
function rejection(value: unknown): InvalidEventError {
  try {
    validateCloudEvent(value);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidEventError);
    return err as InvalidEventError;
  }
  throw new Error(`expected ${JSON.stringify(value)} to be rejected`);
}

function without(key: string): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...minimal };
  delete copy[key];
  return copy;
}

describe('validateCloudEvent', () => {
  it('accepts a minimal event with only the required attributes and returns it', () => {
    const ev = { ...minimal };
    expect(validateCloudEvent(ev)).toBe(ev);
  });

  it('accepts an event with every optional attribute and extensions', () => {
    expect(validateCloudEvent({ ...full })).toEqual(full);
  });

  it('accepts data_base64 instead of data', () => {
    const ev = { ...minimal, datacontenttype: 'application/octet-stream', data_base64: 'AAEC' };
    expect(validateCloudEvent(ev)).toBe(ev);
  });

  it('accepts RFC 3339 times with offsets, fractions and lower-case separators', () => {
    for (const time of ['2024-05-01T12:00:00Z', '2024-05-01T12:00:00+05:30', '2024-05-01T12:00:00.123456-08:00', '2024-05-01t12:00:00z']) {
      expect(() => validateCloudEvent({ ...minimal, time })).not.toThrow();
    }
  });

  it('accepts media types with a structured suffix and parameters', () => {
    for (const datacontenttype of ['application/cloudevents+json', 'text/plain; charset=utf-8', 'application/vnd.acme.v2+json']) {
      expect(() => validateCloudEvent({ ...minimal, datacontenttype })).not.toThrow();
    }
  });

  it('rejects a value that is not an object', () => {
    for (const value of [null, undefined, 'event', 42, [minimal]]) {
      const err = rejection(value);
      expect(err.reason).toBe('not-an-object');
      expect(err.message).toContain('must be a JSON object');
    }
  });

  it('rejects a missing or wrong specversion and says what it got', () => {
    expect(rejection(without('specversion')).reason).toBe('specversion');
    const err = rejection({ ...minimal, specversion: '0.3' });
    expect(err.reason).toBe('specversion');
    expect(err.message).toContain('"0.3"');
    expect(rejection({ ...minimal, specversion: 1 }).reason).toBe('specversion');
  });

  it('rejects each required attribute when it is missing, empty or not a string, naming it', () => {
    for (const name of ['id', 'source', 'type']) {
      for (const ev of [without(name), { ...minimal, [name]: '' }, { ...minimal, [name]: 7 }]) {
        const err = rejection(ev);
        expect(err.reason).toBe(name);
        expect(err.message).toContain(`"${name}"`);
        expect(err.message).toMatch(/^invalid CloudEvent: /);
        expect(err.code).toBe('ERR_INVALID_EVENT');
      }
    }
  });

  it('rejects an empty subject and an empty dataschema', () => {
    expect(rejection({ ...minimal, subject: '' }).reason).toBe('subject');
    expect(rejection({ ...minimal, subject: 5 }).reason).toBe('subject');
    expect(rejection({ ...minimal, dataschema: '' }).reason).toBe('dataschema');
  });

  it('rejects a time that is not an RFC 3339 timestamp and quotes it', () => {
    for (const time of ['yesterday', '2024-05-01', '2024-05-01 12:00:00Z', '2024-05-01T12:00:00', '2024-13-01T00:00:00Z', '2024-05-01T25:00:00Z', 1714564800000]) {
      const err = rejection({ ...minimal, time });
      expect(err.reason).toBe('time');
      expect(err.message).toContain('"time"');
      expect(err.message).toContain(JSON.stringify(time));
    }
  });

  it('rejects a datacontenttype that is not a media type', () => {
    for (const datacontenttype of ['json', '', 'application/', '/json', 42]) {
      const err = rejection({ ...minimal, datacontenttype });
      expect(err.reason).toBe('datacontenttype');
      expect(err.message).toContain('"datacontenttype"');
    }
  });

  it('rejects an event that carries both data and data_base64', () => {
    const err = rejection({ ...minimal, data: { a: 1 }, data_base64: 'AAEC' });
    expect(err.reason).toBe('data');
    expect(err.message).toContain('data_base64');
  });

  it('rejects data_base64 that is not a string', () => {
    expect(rejection({ ...minimal, data_base64: [0, 1, 2] }).reason).toBe('data_base64');
  });

  it('rejects extension names with upper-case letters or punctuation, naming the extension', () => {
    for (const name of ['Site', 'siteId', 'site-id', 'site_id', 'site.id', 'sité', '']) {
      const err = rejection({ ...minimal, [name]: 'x' });
      expect(err.reason).toBe('extension-name');
      expect(err.message).toContain(`"${name}"`);
    }
  });

  it('rejects extension values that are objects or arrays, naming the extension', () => {
    for (const value of [{ nested: true }, ['a'], () => 1]) {
      const err = rejection({ ...minimal, location: value });
      expect(err.reason).toBe('extension-value');
      expect(err.message).toContain('"location"');
    }
  });
});

describe('toJsonFormat', () => {
  it('turns binary data into data_base64 and drops data', () => {
    const bytes = new Uint8Array([0, 1, 2, 250, 251, 252]);
    const ev: CloudEvent = { ...minimal, datacontenttype: 'application/octet-stream', data: bytes };
    const json = toJsonFormat(ev);
    expect(json).not.toHaveProperty('data');
    expect(json.data_base64).toBe('AAEC+vv8');
    expect(Buffer.from(json.data_base64 as string, 'base64')).toEqual(Buffer.from(bytes));
    expect(json.id).toBe(ev.id);
    expect(() => validateCloudEvent(json)).not.toThrow();
    // The input event is left as it was.
    expect(ev.data).toBe(bytes);
  });

  it('encodes only the viewed bytes of a Uint8Array window', () => {
    const backing = new Uint8Array([0xff, 0xff, 104, 105, 0xff]);
    const json = toJsonFormat({ ...minimal, data: backing.subarray(2, 4) });
    expect(Buffer.from(json.data_base64 as string, 'base64').toString('latin1')).toBe('hi');
  });

  it('leaves an event with JSON data as it is', () => {
    const ev: CloudEvent = { ...full };
    expect(toJsonFormat(ev)).toBe(ev);
    const noData: CloudEvent = { ...minimal };
    expect(toJsonFormat(noData)).toBe(noData);
  });
});

describe('CloudEvents SDK conformance', () => {
  const sdkEvent = () =>
    new SdkCloudEvent({
      type: 'io.tributary.telemetry.humidity',
      source: '/edges/e1/devices/dev2',
      subject: 'dev2',
      datacontenttype: 'application/json',
      data: { percent: 41 },
      site: 'north',
    });

  it('accepts an event built by the SDK', () => {
    const ev = sdkEvent();
    expect(() => validateCloudEvent(ev)).not.toThrow();
  });

  it('accepts the JSON form of an event built by the SDK', () => {
    const json = JSON.parse(JSON.stringify(sdkEvent())) as unknown;
    const ev = validateCloudEvent(json);
    expect(ev.type).toBe('io.tributary.telemetry.humidity');
    expect(ev.site).toBe('north');
  });

  it('builds events from device messages that the SDK accepts with validation on', () => {
    const mapper = new TopicMapper({ edgeId: 'e1', clock: () => Date.UTC(2024, 4, 1, 12) });
    for (const payload of ['{"celsius":23.5}', '23.5', '[1,2,3]']) {
      const result = mapper.map('telemetry/dev1/temperature', Buffer.from(payload));
      if (!result.ok) throw result.error;
      const sdk = new SdkCloudEvent(result.event, true);
      expect(sdk.id).toBe(result.event.id);
      expect(sdk.source).toBe(result.event.source);
      expect(sdk.type).toBe(result.event.type);
      expect(sdk.time).toBe(result.event.time);
      expect(sdk.data).toEqual(result.event.data);
    }
  });

  it('builds binary events whose JSON format the SDK reads back to the same bytes', () => {
    const mapper = new TopicMapper({ edgeId: 'e1', clock: () => Date.UTC(2024, 4, 1, 12) });
    const bytes = new Uint8Array([0xde, 0xad, 0xbe, 0xef]);
    const result = mapper.map('telemetry/dev1/raw', bytes);
    if (!result.ok) throw result.error;
    const sdk = new SdkCloudEvent(toJsonFormat(result.event), true);
    expect(Array.from(sdk.data as Uint8Array)).toEqual(Array.from(bytes));
  });

  it('rejects the events that the SDK rejects (the SDK is laxer about extension values)', () => {
    const invalid: Record<string, unknown>[] = [
      without('type'),
      without('source'),
      { ...minimal, BadName: 'x' },
    ];
    for (const ev of invalid) {
      expect(() => new SdkCloudEvent(ev as never, true)).toThrow();
      expect(() => validateCloudEvent(ev)).toThrow(InvalidEventError);
    }
  });
});
