/**
 * The benchmark's telemetry payload: 200 bytes of JSON, like a small sensor reading, with two fixed-width
 * fields the load generator writes in place on every publish — the device's sequence number and the send time
 * (ms on the load generator's `performance.now()` clock). Right-aligned in spaces, they stay valid JSON, and a
 * subscriber reading the raw bytes (a plain broker passes them through) finds them at fixed offsets without
 * parsing; one reading the cloud's re-encoded event finds them as `data.seq` and `data.ts`.
 */
const SEQ_WIDTH = 12;
const TS_WIDTH = 14;
const HEAD = '{"seq":';
const MIDDLE = ',"ts":';
const TAIL_START = ',"value":21.53,"unit":"celsius","pad":"';
const TAIL_END = '"}';

export const SEQ_OFFSET = HEAD.length;
export const TS_OFFSET = SEQ_OFFSET + SEQ_WIDTH + MIDDLE.length;

/** A payload of `size` bytes (at least 100) with seq 0 and ts 0. */
export function payloadTemplate(size = 200): Buffer {
  const fixed = HEAD.length + SEQ_WIDTH + MIDDLE.length + TS_WIDTH + TAIL_START.length + TAIL_END.length;
  if (size < fixed) throw new RangeError(`payload size ${size} is below the ${fixed} bytes the fields need`);
  const text = HEAD + '0'.padStart(SEQ_WIDTH) + MIDDLE + '0'.padStart(TS_WIDTH) + TAIL_START + 'x'.repeat(size - fixed) + TAIL_END;
  return Buffer.from(text, 'latin1');
}

/**
 * Writes seq and send time into a payload (or a packet) whose payload starts at `offset`. Digits are written
 * by hand, right to left: formatting numbers as strings cost the load generator a quarter of its time.
 */
export function stamp(buf: Buffer, offset: number, seq: number, ts: number): void {
  writeDigits(buf, offset + SEQ_OFFSET + SEQ_WIDTH, SEQ_WIDTH, seq, -1);
  writeDigits(buf, offset + TS_OFFSET + TS_WIDTH, TS_WIDTH, Math.round(ts * 1000), 3);
}

/** Right-aligns the digits of `n` (≥ 0) in `width` bytes ending before `end`, with a '.' `decimals` from the right. */
function writeDigits(buf: Buffer, end: number, width: number, n: number, decimals: number): void {
  let at = end - 1;
  const start = end - width;
  let written = 0;
  do {
    if (written === decimals) buf[at--] = 0x2e;
    buf[at--] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
    written++;
  } while ((n > 0 || written <= decimals) && at >= start);
  while (at >= start) buf[at--] = 0x20;
}

/** Reads the seq of a raw payload. */
export function readSeq(payload: Buffer): number {
  let n = 0;
  for (let i = SEQ_OFFSET; i < SEQ_OFFSET + SEQ_WIDTH; i++) {
    const c = payload[i];
    if (c >= 0x30 && c <= 0x39) n = n * 10 + (c - 0x30);
  }
  return n;
}

/** Reads the send time of a raw payload. */
export function readTs(payload: Buffer): number {
  let n = 0;
  let scale = 0;
  for (let i = TS_OFFSET; i < TS_OFFSET + TS_WIDTH; i++) {
    const c = payload[i];
    if (c >= 0x30 && c <= 0x39) {
      n = n * 10 + (c - 0x30);
      if (scale) scale *= 10;
    } else if (c === 0x2e) scale = 1;
  }
  return scale ? n / scale : n;
}
