import { describe, expect, it } from 'vitest';
import { Scheduler } from '../../devices/scheduler.ts';
import type { ScheduledTask } from '../../devices/scheduler.ts';

/** A task that logs its runs and answers with the next due times it is given (null when they run out). */
function task(name: string, log: string[], nexts: (number | null)[] = []): ScheduledTask {
  return {
    run(now) {
      log.push(`${name}@${now}`);
      return nexts.length ? nexts.shift()! : null;
    },
  };
}

describe('Scheduler', () => {
  it('runs tasks in order of due time, and none before it is due', () => {
    const log: string[] = [];
    const s = new Scheduler();
    s.schedule(task('c', log), 30);
    s.schedule(task('a', log), 10);
    s.schedule(task('b', log), 20);
    s.schedule(task('a2', log), 10);
    expect(s.runDue(5)).toBe(0);
    expect(s.runDue(20)).toBe(3);
    expect(log).toEqual(['a@20', 'a2@20', 'b@20']);
    expect(s.size).toBe(1);
    s.runDue(30);
    expect(log.at(-1)).toBe('c@30');
    expect(s.size).toBe(0);
  });

  it('runs a task again at the time it returns, and leaves it out when it returns null', () => {
    const log: string[] = [];
    const s = new Scheduler();
    s.schedule(task('t', log, [15, null]), 10);
    s.runDue(10);
    s.runDue(14);
    s.runDue(15);
    s.runDue(100);
    expect(log).toEqual(['t@10', 't@15']);
    expect(s.size).toBe(0);
  });

  it('runs a task at most once per tick even when it is due again at once', () => {
    const log: string[] = [];
    const s = new Scheduler();
    s.schedule(task('t', log, [0, 0, 0]), 0);
    s.runDue(10);
    expect(log).toEqual(['t@10']);
    s.runDue(10);
    expect(log).toEqual(['t@10', 't@10']);
  });

  it('keeps the earlier time when a waiting task is scheduled twice', () => {
    const log: string[] = [];
    const s = new Scheduler();
    const t = task('t', log);
    s.schedule(t, 50);
    s.schedule(t, 20);
    s.schedule(t, 40);
    expect(s.size).toBe(1);
    s.runDue(20);
    s.runDue(100);
    expect(log).toEqual(['t@20']);
  });

  it('forgets a cancelled task', () => {
    const log: string[] = [];
    const s = new Scheduler();
    const t = task('t', log);
    s.schedule(t, 10);
    s.cancel(t);
    s.runDue(100);
    expect(log).toEqual([]);
  });

  it('reports a throwing task and runs the others', () => {
    const log: string[] = [];
    const errors: unknown[] = [];
    const s = new Scheduler({ onError: (err) => errors.push(err) });
    s.schedule({ run: () => { throw new Error('boom'); } }, 1);
    s.schedule(task('ok', log), 2);
    s.runDue(5);
    expect(log).toEqual(['ok@5']);
    expect(errors).toEqual([new Error('boom')]);
  });

  it('runs due tasks on its own timer once started', async () => {
    const s = new Scheduler({ tickMs: 5 });
    const ran = new Promise<number>((resolve) => s.schedule({ run: (now) => (resolve(now), null) }, Date.now()));
    s.start();
    try {
      await expect(ran).resolves.toBeTypeOf('number');
    } finally {
      s.stop();
    }
  });
});
