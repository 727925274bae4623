/**
 * Fan-out: the cloud's dispatch rate with 1, 100 and 10,000 subscriptions. Subscriptions (filters, sinks) are
 * not built yet, so this reports that instead of a number; it becomes a measurement when they land.
 */
import type { Suite } from '../suite.ts';

export function fanOut(suite: Suite): void {
  suite.emit({ bench: 'fan-out', status: 'not measured', reason: 'the subscriptions API (filters and sinks) is not built yet' });
}
