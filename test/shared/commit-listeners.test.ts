import { afterEach, describe, expect, it, vi } from 'vitest';
import { CommitListeners } from '../../shared/commit-listeners.ts';

describe('CommitListeners', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('tells every listener of each committed sequence until it unsubscribes', () => {
    const listeners = new CommitListeners();
    const a: number[] = [];
    const b: number[] = [];
    const unsubscribeA = listeners.add((seq) => a.push(seq));
    listeners.add((seq) => b.push(seq));
    listeners.notify(3);
    unsubscribeA();
    listeners.notify(7);
    expect(a).toEqual([3]);
    expect(b).toEqual([3, 7]);
  });

  it('reports a listener that throws as a warning and still tells the others', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const listeners = new CommitListeners();
    const seen: number[] = [];
    listeners.add(() => {
      throw new Error('a broken subscriber');
    });
    listeners.add((seq) => seen.push(seq));
    listeners.notify(5);
    expect(seen).toEqual([5]);
    expect(warn).toHaveBeenCalledWith('a log commit listener threw: a broken subscriber');
  });
});
