/**
 * The CloudEvent envelope as a plain object (CloudEvents 1.0, typed with the `cloudevents` package's
 * `CloudEventV1`). The hot path builds and reads plain objects; the SDK's class is used only at the protocol
 * bindings, where its cost is paid once per request rather than once per event.
 */
import type { CloudEventV1 } from 'cloudevents';
import { InvalidEventError } from './errors.ts';

export type CloudEvent<T = unknown> = CloudEventV1<T>;

export const SPEC_VERSION = '1.0';

/** CloudEvents 1.0 §3.1.1: attribute names are lower-case ASCII letters and digits. */
const ATTRIBUTE_NAME = /^[a-z0-9]+$/;
/** RFC 3339 `date-time`, as CloudEvents 1.0 §3.1.1 requires for `time`. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
/** RFC 2046 media type: `type/subtype` with optional parameters. */
const MEDIA_TYPE = /^[\w.+-]+\/[\w.+-]+(\s*;.*)?$/;

const CONTEXT_ATTRIBUTES = new Set([
  'specversion', 'id', 'source', 'type', 'datacontenttype', 'dataschema', 'subject', 'time', 'data', 'data_base64',
]);

/**
 * Checks that `value` is a CloudEvent in the JSON event format (CloudEvents 1.0 core and JSON format §3), and
 * returns it typed. Throws `InvalidEventError` naming the first attribute that is wrong and why.
 */
export function validateCloudEvent(value: unknown): CloudEvent {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid('not-an-object', 'a CloudEvent must be a JSON object');
  }
  const ev = value as Record<string, unknown>;
  if (ev.specversion !== SPEC_VERSION) {
    throw invalid('specversion', `specversion must be "1.0" (got ${JSON.stringify(ev.specversion)})`);
  }
  for (const name of ['id', 'source', 'type'] as const) {
    const v = ev[name];
    if (typeof v !== 'string' || v.length === 0) {
      throw invalid(name, `required attribute "${name}" must be a non-empty string (CloudEvents 1.0 §3.1.1)`);
    }
  }
  if (ev.subject !== undefined && (typeof ev.subject !== 'string' || ev.subject.length === 0)) {
    throw invalid('subject', 'attribute "subject" must be a non-empty string when present');
  }
  if (ev.time !== undefined && (typeof ev.time !== 'string' || !RFC3339.test(ev.time) || isNaN(Date.parse(ev.time)))) {
    throw invalid('time', `attribute "time" must be an RFC 3339 timestamp (got ${JSON.stringify(ev.time)})`);
  }
  if (ev.datacontenttype !== undefined && (typeof ev.datacontenttype !== 'string' || !MEDIA_TYPE.test(ev.datacontenttype))) {
    throw invalid('datacontenttype', `attribute "datacontenttype" must be an RFC 2046 media type (got ${JSON.stringify(ev.datacontenttype)})`);
  }
  if (ev.dataschema !== undefined && (typeof ev.dataschema !== 'string' || ev.dataschema.length === 0)) {
    throw invalid('dataschema', 'attribute "dataschema" must be a non-empty URI when present');
  }
  if (ev.data !== undefined && ev.data_base64 !== undefined) {
    throw invalid('data', 'an event carries "data" or "data_base64", not both (JSON format §3.1)');
  }
  if (ev.data_base64 !== undefined && typeof ev.data_base64 !== 'string') {
    throw invalid('data_base64', 'attribute "data_base64" must be a base64 string');
  }
  for (const key of Object.keys(ev)) {
    // An attribute set to undefined is absent (the SDK's class has such keys).
    if (CONTEXT_ATTRIBUTES.has(key) || ev[key] === undefined) continue;
    if (!ATTRIBUTE_NAME.test(key)) {
      throw invalid('extension-name', `extension attribute "${key}" must use only lower-case letters and digits (CloudEvents 1.0 §3.1.1)`);
    }
    const t = typeof ev[key];
    if (ev[key] !== null && t !== 'string' && t !== 'number' && t !== 'boolean') {
      throw invalid('extension-value', `extension attribute "${key}" must be a string, number or boolean`);
    }
  }
  return ev as unknown as CloudEvent;
}

function invalid(reason: string, message: string): InvalidEventError {
  return new InvalidEventError(reason, `invalid CloudEvent: ${message}`);
}

/**
 * The event in the JSON event format: binary `data` (bytes from a device) becomes `data_base64`
 * (JSON format §3.1).
 */
export function toJsonFormat(event: CloudEvent): CloudEvent {
  const data = event.data;
  if (data instanceof Uint8Array) {
    const { data: _bytes, ...rest } = event;
    return { ...rest, data_base64: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') };
  }
  return event;
}
