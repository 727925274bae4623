import { describe, expect, it } from 'vitest';
import { RateWindow } from '../../shared/rate-window.ts';

/** Counters a test sets by hand, read by the window at a clock the test moves. */
function fixture(windowMs = 10_000) {
  const counters = { accepted: 0, forwarded: 0 };
  const clock = { now: 1_000_000 };
  const window = new RateWindow(() => counters, { windowMs, clock: () => clock.now });
  /** Advances the clock one second, sets the counters, takes a sample. */
  const tick = (accepted: number, forwarded = counters.forwarded) => {
    clock.now += 1_000;
    counters.accepted = accepted;
    counters.forwarded = forwarded;
    window.sample();
  };
  return { counters, clock, window, tick };
}

describe('RateWindow', () => {
  it('reports 0 until it has two samples', () => {
    const { window, tick } = fixture();
    expect(window.rate('accepted')).toBe(0);
    expect(window.rates()).toEqual({});
    tick(500);
    expect(window.rate('accepted')).toBe(0);
  });

  it('divides the increase over the window by the seconds between the samples', () => {
    const { window, tick } = fixture();
    tick(0, 0);
    tick(100, 0);
    tick(300, 50);
    expect(window.rate('accepted')).toBe(150);
    expect(window.rates()).toEqual({ accepted: 150, forwarded: 25 });
  });

  it('slides: increases older than the window no longer count', () => {
    const { window, tick } = fixture(3_000);
    tick(0);
    tick(1_000); // a burst of 1000 in the first second
    for (let i = 0; i < 3; i++) tick(1_000 + (i + 1) * 10); // then 10 per second
    expect(window.rate('accepted')).toBe(10);
  });

  it('smooths a burst over the whole window', () => {
    const { window, tick } = fixture(10_000);
    tick(0);
    for (let i = 0; i < 9; i++) tick(0);
    tick(1_000);
    expect(window.rate('accepted')).toBe(100);
  });

  it('counts from a reset on when a counter goes down, never a negative rate', () => {
    const { window, tick } = fixture();
    tick(0, 0);
    tick(1_000, 10);
    tick(2_000, 20);
    tick(5, 30); // accepted reset: its process restarted
    expect(window.rate('accepted')).toBe(0);
    tick(25, 40);
    expect(window.rate('accepted')).toBe(20);
    expect(window.rate('forwarded')).toBe(10);
  });

  it('keeps a rate of 0 when the counter stands still', () => {
    const { window, tick } = fixture();
    for (let i = 0; i < 15; i++) tick(42);
    expect(window.rate('accepted')).toBe(0);
  });

  it('uses the actual time between samples, not the nominal interval', () => {
    const { window, clock, counters } = fixture();
    window.sample();
    clock.now += 2_500;
    counters.accepted = 50;
    window.sample();
    expect(window.rate('accepted')).toBe(20);
  });

  it('refuses a window that spans no time', () => {
    expect(() => new RateWindow(() => ({ a: 0 }), { windowMs: 0 })).toThrow(/more than 0 ms/);
  });

  it('samples on its own timer once started, until stopped', async () => {
    const counters = { n: 0 };
    const window = new RateWindow(() => counters, { windowMs: 60_000 });
    window.start(5);
    counters.n = 100;
    await new Promise((resolve) => setTimeout(resolve, 50));
    window.stop();
    const rate = window.rate('n');
    expect(rate).toBeGreaterThan(0);
    counters.n = 1_000_000;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(window.rate('n')).toBe(rate);
  });
});
