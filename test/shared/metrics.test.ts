import { describe, expect, it } from 'vitest';
import { Metrics } from '../../shared/metrics.ts';

/** Prometheus text format 0.0.4 sample line: name, optional {labels}, value. */
const SAMPLE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")*\})? -?[0-9.e+]+$/;

describe('Metrics counters', () => {
  it('start at zero and add what inc() is given', () => {
    const m = new Metrics();
    const c = m.counter('ingest_events_total', 'Events ingested.');
    expect(c.value).toBe(0);
    c.inc();
    c.inc(4);
    expect(c.value).toBe(5);
  });

  it('return the same series for the same name and labels, in any label order', () => {
    const m = new Metrics();
    const a = m.counter('rejected_total', 'Rejected.', { reason: 'invalid-json', qos: '1' });
    const b = m.counter('rejected_total', 'Rejected.', { qos: '1', reason: 'invalid-json' });
    a.inc();
    b.inc(2);
    expect(a.value).toBe(3);
    expect(b.value).toBe(3);
  });

  it('keep series with different labels apart and total them', () => {
    const m = new Metrics();
    m.counter('rejected_total', 'Rejected.', { reason: 'invalid-json' }).inc(2);
    m.counter('rejected_total', 'Rejected.', { reason: 'unmapped-topic' }).inc(3);
    m.counter('rejected_total', 'Rejected.').inc(1);
    expect(m.counter('rejected_total', 'Rejected.', { reason: 'invalid-json' }).value).toBe(2);
    expect(m.total('rejected_total')).toBe(6);
    expect(m.total('never_registered')).toBe(0);
  });

  it('keep series apart even when a label value contains the separators of another label set', () => {
    const m = new Metrics();
    const one = m.counter('messages_total', 'Messages.', { device: 'a,zone=b' });
    const two = m.counter('messages_total', 'Messages.', { device: 'a', zone: 'b' });
    one.inc(1);
    two.inc(10);
    expect(one.value).toBe(1);
    expect(two.value).toBe(10);
  });
});

describe('Metrics gauges', () => {
  it('read their value when metrics are rendered, not when registered', () => {
    const m = new Metrics();
    let depth = 3;
    m.gauge('buffer_depth', 'Events in the buffer.', () => depth);
    depth = 17;
    expect(m.total('buffer_depth')).toBe(17);
    expect(m.snapshot().buffer_depth).toBe(17);
    depth = 4;
    expect(m.prometheus()).toContain('\nbuffer_depth 4\n');
  });

  it('replace an earlier gauge with the same name and labels', () => {
    const m = new Metrics();
    m.gauge('links_up', 'Links up.', () => 1, { edge: 'e1' });
    m.gauge('links_up', 'Links up.', () => 0, { edge: 'e1' });
    m.gauge('links_up', 'Links up.', () => 1, { edge: 'e2' });
    expect(m.total('links_up')).toBe(1);
  });
});

describe('Metrics.snapshot', () => {
  it('gives a single unlabelled series as a number and labelled series by their labels', () => {
    const m = new Metrics();
    m.counter('events_total', 'Events.').inc(7);
    m.counter('rejected_total', 'Rejected.', { reason: 'invalid-json', qos: '0' }).inc(2);
    m.counter('rejected_total', 'Rejected.', { reason: 'unmapped-topic', qos: '1' }).inc(1);
    m.gauge('depth', 'Depth.', () => 9);
    expect(m.snapshot()).toEqual({
      events_total: 7,
      rejected_total: { 'qos=0,reason=invalid-json': 2, 'qos=1,reason=unmapped-topic': 1 },
      depth: 9,
    });
  });

  it('shows the unlabelled series as "_" next to labelled ones', () => {
    const m = new Metrics();
    m.counter('x_total', 'X.').inc(1);
    m.counter('x_total', 'X.', { kind: 'a' }).inc(2);
    expect(m.snapshot()).toEqual({ x_total: { _: 1, 'kind=a': 2 } });
  });
});

describe('Metrics.prometheus', () => {
  it('renders HELP and TYPE once per family, then one sample line per series', () => {
    const m = new Metrics();
    m.counter('ingest_events_total', 'Events ingested.').inc(5);
    m.counter('rejected_total', 'Messages rejected.', { reason: 'invalid-json' }).inc(2);
    m.counter('rejected_total', 'Messages rejected.', { reason: 'unmapped-topic' }).inc(1);
    m.gauge('buffer_bytes', 'Bytes buffered.', () => 1024);
    expect(m.prometheus()).toBe(
      [
        '# HELP ingest_events_total Events ingested.',
        '# TYPE ingest_events_total counter',
        'ingest_events_total 5',
        '# HELP rejected_total Messages rejected.',
        '# TYPE rejected_total counter',
        'rejected_total{reason="invalid-json"} 2',
        'rejected_total{reason="unmapped-topic"} 1',
        '# HELP buffer_bytes Bytes buffered.',
        '# TYPE buffer_bytes gauge',
        'buffer_bytes 1024',
        '',
      ].join('\n'),
    );
  });

  it('escapes backslash, double quote and line feed in label values', () => {
    const m = new Metrics();
    m.counter('rejected_total', 'Rejected.', { topic: 'a"b\\c\nd', reason: 'x' }).inc();
    const line = m.prometheus().split('\n')[2];
    expect(line).toBe('rejected_total{topic="a\\"b\\\\c\\nd",reason="x"} 1');
    expect(line).toMatch(SAMPLE);
  });

  it('escapes backslash and line feed in HELP text so each HELP stays on one line', () => {
    const m = new Metrics();
    m.counter('odd_total', 'First line\nsecond C:\\path').inc();
    const lines = m.prometheus().trimEnd().split('\n');
    expect(lines).toEqual(['# HELP odd_total First line\\nsecond C:\\\\path', '# TYPE odd_total counter', 'odd_total 1']);
  });

  it('renders every sample in a form a Prometheus parser accepts', () => {
    const m = new Metrics();
    m.counter('a_total', 'A.', { x: '1', y: 'two words' }).inc(3);
    m.counter('b_total', 'B.').inc(0.5);
    m.gauge('c', 'C.', () => -2);
    for (const line of m.prometheus().trimEnd().split('\n')) {
      if (line.startsWith('#')) expect(line).toMatch(/^# (HELP|TYPE) [a-z_]+ .+$/);
      else expect(line).toMatch(SAMPLE);
    }
  });
});

describe('Metrics.byLabel', () => {
  it('sums a family per value of one label, across the other labels', () => {
    const m = new Metrics();
    m.counter('dropped_total', 'Dropped.', { reason: 'overflow', lane: 'low' }).inc(3);
    m.counter('dropped_total', 'Dropped.', { reason: 'overflow', lane: 'normal' }).inc(2);
    m.counter('dropped_total', 'Dropped.', { reason: 'expired', lane: 'low' }).inc(1);
    m.counter('dropped_total', 'Dropped.').inc(4);
    expect(m.byLabel('dropped_total', 'reason')).toEqual({ overflow: 5, expired: 1, '': 4 });
    expect(m.byLabel('dropped_total', 'lane')).toEqual({ low: 4, normal: 2, '': 4 });
  });

  it('is empty for a family that does not exist, and has() tells which exist', () => {
    const m = new Metrics();
    m.gauge('depth', 'Depth.', () => 2, { lane: 'high' });
    expect(m.byLabel('missing_total', 'reason')).toEqual({});
    expect(m.byLabel('depth', 'lane')).toEqual({ high: 2 });
    expect(m.has('depth')).toBe(true);
    expect(m.has('missing_total')).toBe(false);
  });
});
