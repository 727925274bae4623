/**
 * LevelDB keys made of a one-byte namespace and a UTF-8 text (an id), for records looked up by name rather than
 * by sequence (append-log.ts has those). Keys of one namespace sort by their text's bytes.
 */
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function textKey(namespace: number, text: string): Uint8Array {
  const bytes = encoder.encode(text);
  const key = new Uint8Array(bytes.length + 1);
  key[0] = namespace;
  key.set(bytes, 1);
  return key;
}

export function keyText(key: Uint8Array): string {
  return decoder.decode(key.subarray(1));
}

/** The range of every key of `namespace` (0-254). */
export function textKeyRange(namespace: number): { gte: Uint8Array; lt: Uint8Array } {
  return { gte: Uint8Array.of(namespace), lt: Uint8Array.of(namespace + 1) };
}
