import { describe, expect, it } from 'vitest';
import { encode } from '../../shared/codec.ts';
import { jsonToMessagePack } from '../../shared/json-to-msgpack.ts';

const utf8 = (text: string) => Buffer.from(text, 'utf8');
const fatal = new TextDecoder('utf-8', { fatal: true });

/** What the slow path makes of the bytes: `encode(JSON.parse(text))`, or undefined when they are not JSON. */
function reference(bytes: Uint8Array): Uint8Array | undefined {
  let value: unknown;
  try {
    value = JSON.parse(fatal.decode(bytes));
  } catch {
    return undefined;
  }
  return encode(value);
}

function hex(bytes: Uint8Array | undefined): string | undefined {
  return bytes && Buffer.from(bytes).toString('hex');
}

/** The fast path's result for a text, copied (the result is a view of a scratch buffer). */
function fast(text: string | Uint8Array, rejectKey?: string): string | undefined {
  return hex(jsonToMessagePack(typeof text === 'string' ? utf8(text) : text, rejectKey));
}

describe('jsonToMessagePack', () => {
  it('writes the bytes encode(JSON.parse(text)) writes, for the texts devices send', () => {
    const texts = [
      '{"seq":          12,"ts":     12345.678,"value":21.53,"unit":"celsius","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}',
      '{"celsius":23.5,"ok":true,"tags":["a","b"],"nested":{"deep":{"deeper":[1,[2,[3]]]}},"none":null}',
      ' \t\r\n{ "a" : [ 1 , 2 ] , "b" : { } , "c" : [ ] } \n',
      '{"text":"grüße 🌡️ °C","esc":"quote \\" backslash \\\\ slash \\/ \\b\\f\\n\\r\\t","u":"\\u0041\\u00e9\\u20ac"}',
      '{"seventeen":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],"s32":"12345678901234567890123456789012"}',
      `{"long":"${'y'.repeat(300)}","longer":"${'z'.repeat(70_000)}"}`,
      '[true,false,null,"",0,-0,1,-1,31,32,127,128,255,256,65535,65536,4294967295,4294967296,-32,-33,-128,-129,-32768,-32769,-2147483648,-2147483649]',
      '[0.5,-0.5,1.0,1e2,1E-2,1.5e300,-2.5E-300,123456789012345,1234567890123456789,0.1,0.2,0.3,21.53,12345.678,1e21,1e22,1e23,5e-324,1e400]',
      '[9007199254740993,2.675,4.35,0.000001234,100000000000000000000000000000.5,-0.0,0e5]',
      '"a plain string"',
      '42',
      '-7.25',
      'true',
      'null',
      `{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"ka":10,"kb":11,"kc":12,"kd":13,"ke":14,"kf":15,"kg":16}`,
      `[${Array.from({ length: 70_000 }, (_, i) => i % 10).join(',')}]`,
      '{"__proto__":1,"constructor":2,"-1":3,"":4}',
    ];
    for (const text of texts) {
      const want = hex(reference(utf8(text)));
      expect(want).toBeDefined();
      expect(fast(text), text.slice(0, 60)).toBe(want);
    }
  });

  it('leaves to the slow path what it does not reproduce exactly', () => {
    const texts = [
      '{"a":1,"a":2}', // duplicate keys: JSON.parse keeps the last value at the first key's place
      '{"b":1,"1":2}', // integer-like keys come first in a JavaScript object
      '{"\\u0061":1}', // an escape in a key
      '"\\ud83d\\ude00"', // an escaped surrogate pair
      '"\\udc00"', // a lone surrogate, which the slow path writes as U+FFFD
      `${'['.repeat(100)}${']'.repeat(100)}`, // deep nesting
      `{${Array.from({ length: 65 }, (_, i) => `"k${i}":${i}`).join(',')}}`, // many keys
    ];
    for (const text of texts) {
      expect(reference(utf8(text))).toBeDefined();
      expect(jsonToMessagePack(utf8(text)), text.slice(0, 40)).toBeUndefined();
    }
  });

  it('returns undefined for text that is not JSON', () => {
    const texts = ['', ' ', '-', '01', '1.', '.5', '+1', '1e', '1e+', '[1,]', '{"a":1,}', '{"a"}', '{a:1}', 'tru', 'nul', 'True', '"\\x"', '"\\u12"', '"abc', '"a\u0001b"', '[1 2]', '{} {}', "'a'", 'NaN', 'Infinity'];
    for (const text of texts) {
      expect(reference(utf8(text)), JSON.stringify(text)).toBeUndefined();
      expect(jsonToMessagePack(utf8(text)), JSON.stringify(text)).toBeUndefined();
    }
    // A byte-order mark is not JSON either (TextDecoder would drop it, but the payload is taken as bytes first).
    expect(jsonToMessagePack(utf8('\ufeff{}'))).toBeUndefined();
    // Malformed UTF-8: a lone continuation byte, an overlong form, an encoded surrogate, a truncated sequence.
    for (const bad of [[0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80]]) {
      const bytes = Uint8Array.from([0x22, ...bad, 0x22]);
      expect(reference(bytes)).toBeUndefined();
      expect(jsonToMessagePack(bytes)).toBeUndefined();
    }
  });

  it('leaves a top-level object with the rejected key to the slow path, and only at the top level', () => {
    expect(jsonToMessagePack(utf8('{"specversion":"1.0","id":"1"}'), 'specversion')).toBeUndefined();
    expect(fast('{"data":{"specversion":"1.0"}}', 'specversion')).toBe(hex(encode({ data: { specversion: '1.0' } })));
    expect(fast('[{"specversion":"1.0"}]', 'specversion')).toBe(hex(encode([{ specversion: '1.0' }])));
    expect(fast('{"specversion":"1.0"}')).toBe(hex(encode({ specversion: '1.0' })));
  });

  it('reads a payload that is a window on a larger buffer', () => {
    const backing = utf8('xx{"a":[1,2]}yy');
    expect(fast(backing.subarray(2, 13))).toBe(hex(encode({ a: [1, 2] })));
  });

  it('agrees with the slow path on generated texts and on every mutation of them', () => {
    let seed = 20_261_127;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    const chars = ['a', 'Z', ' ', '"', '\\', '/', '\n', '\t', '\u0001', 'é', '°', '€', '😀', '\ud800', '0', '\u2028'];
    const numbers = [0, -0, 1, -1, 127, 128, 65_536, 2 ** 32, -(2 ** 31) - 1, 1.5, 0.1, 1e21, 1e23, 5e-324, 123_456_789_012_345, 21.53];
    const str = () => (random() < 0.05 ? 'x'.repeat(Math.floor(random() * 300)) : Array.from({ length: Math.floor(random() * 12) }, () => pick(chars)).join(''));
    const value = (depth: number): unknown => {
      const r = random();
      if (depth > 3 || r < 0.35) return pick<unknown>([true, false, null, pick(numbers), random() * 1e6 - 5e5, Math.floor(random() * 1e6), str()]);
      if (r < 0.65) return Array.from({ length: Math.floor(random() * (random() < 0.1 ? 30 : 5)) }, () => value(depth + 1));
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(random() * 6); i > 0; i--) object[random() < 0.1 ? String(Math.floor(random() * 9)) : str().slice(0, 6)] = value(depth + 1);
      return object;
    };
    const space = () => pick(['', '', ' ', '\n ', ' \t\r\n']);
    const text = (v: unknown): string => {
      if (Array.isArray(v)) return `[${space()}${v.map(text).join(`${space()},${space()}`)}${space()}]`;
      if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}${space()}:${space()}${text(x)}`).join(',')}}`;
      if (typeof v === 'number' && Number.isInteger(v) && random() < 0.3) return pick([`${v}.0`, `${v}e0`, `${v}.000E+0`]);
      return JSON.stringify(v);
    };
    let fastPath = 0;
    const check = (bytes: Uint8Array) => {
      const got = jsonToMessagePack(bytes);
      if (got === undefined) return;
      fastPath++;
      // Whatever the fast path accepts, JSON.parse accepts too, and encodes the same.
      expect(hex(got), Buffer.from(bytes).toString()).toBe(hex(reference(bytes)));
    };
    for (let n = 0; n < 2000; n++) {
      const bytes = utf8(space() + text(value(0)) + space());
      check(bytes);
      for (let m = 0; m < 4 && bytes.length > 0; m++) {
        const i = Math.floor(random() * bytes.length);
        const op = random();
        if (op < 0.4) {
          const changed = Buffer.from(bytes);
          changed[i] = pick([0x22, 0x5c, 0x2c, 0x7d, 0x5d, 0x30, 0x2e, 0x65, 0x2d, 0x80, 0xc3, 0xed, 0x00, 0x20, 0x3a]);
          check(changed);
        } else if (op < 0.7) check(bytes.subarray(0, i));
        else check(Buffer.concat([bytes.subarray(0, i), bytes.subarray(i + 1)]));
      }
    }
    expect(fastPath).toBeGreaterThan(1000);
  });
});
