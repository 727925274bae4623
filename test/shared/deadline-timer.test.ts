import { describe, expect, it } from 'vitest';
import { DeadlineTimer } from '../../shared/deadline-timer.ts';
import { waitFor } from '../helpers/wait.ts';

describe('DeadlineTimer', () => {
  it('runs once at the deadline it was last set to', async () => {
    let runs = 0;
    const timer = new DeadlineTimer(() => runs++);
    timer.set(Date.now() + 60_000);
    timer.set(Date.now());
    await waitFor('the run', () => runs === 1);
    await new Promise((r) => setTimeout(r, 30));
    expect(runs).toBe(1);
  });

  it('never runs once cleared or set to Infinity', async () => {
    let runs = 0;
    const timer = new DeadlineTimer(() => runs++);
    timer.set(Date.now());
    timer.clear();
    timer.set(Date.now() + 1);
    timer.set(Infinity);
    await new Promise((r) => setTimeout(r, 30));
    expect(runs).toBe(0);
  });

  it('waits for a deadline past the longest setTimeout delay instead of running at once', async () => {
    let runs = 0;
    const timer = new DeadlineTimer(() => runs++, () => 0);
    // Node runs a setTimeout of 2^31 ms or more at once (TimeoutOverflowWarning); the timer waits in steps.
    timer.set(2 ** 40);
    await new Promise((r) => setTimeout(r, 30));
    timer.clear();
    expect(runs).toBe(0);
  });
});
