import { describe, expect, it } from 'vitest';
import { filterCovers, topicFilterRegExp, validateTopicFilter } from '../../shared/topic-filter.ts';

describe('topicFilterRegExp', () => {
  it('matches topic names as MQTT 3.1.1 §4.7 says', () => {
    const cases: [string, string, boolean][] = [
      ['a/+/c', 'a/b/c', true],
      ['a/+/c', 'a//c', true],
      ['a/+/c', 'a/b/d', false],
      ['a/+', 'a/b/c', false],
      ['a/#', 'a', true],
      ['a/#', 'a/b/c', true],
      ['a/#', 'ab', false],
      ['#', 'a/b', true],
      ['#', '$SYS/x', false],
      ['a.b/(c)', 'a.b/(c)', true],
      ['a.b/(c)', 'axb/(c)', false],
    ];
    for (const [filter, topic, matches] of cases) expect([filter, topic, topicFilterRegExp(filter).test(topic)]).toEqual([filter, topic, matches]);
  });

  it('refuses malformed filters, naming them', () => {
    for (const filter of ['a/#/b', 'a/b#', 'a+/b', '']) expect(() => validateTopicFilter(filter)).toThrow(filter === '' ? /empty/ : `"${filter}"`);
    expect(() => topicFilterRegExp('a/#/b')).toThrow('"#" must be the last level');
  });
});

describe('filterCovers', () => {
  it('is true only when every topic the filter can match is matched by the grant', () => {
    const cases: [grant: string, filter: string, covered: boolean][] = [
      ['commands/dev-1', 'commands/dev-1', true],
      ['commands/dev-1', 'commands/+', false],
      ['commands/dev-1', 'commands/#', false],
      ['commands/dev-1', '#', false],
      ['commands/dev-1', 'commands/dev-1/x', false],
      ['commands/dev-1', 'commands', false],
      ['commands/+', 'commands/dev-1', true],
      ['commands/+', 'commands/+', true],
      ['commands/+', 'commands/#', false],
      ['commands/+', 'commands/a/b', false],
      ['commands/#', 'commands', true],
      ['commands/#', 'commands/#', true],
      ['commands/#', 'commands/+/x', true],
      ['commands/#', 'other/+', false],
      ['+/+', 'a/b', true],
      ['+/+', '+/b', true],
      ['+/+', 'a/#', false],
      ['+/#', 'a', true],
      ['#', '#', true],
      ['#', 'a/+/#', true],
      // [MQTT-4.7.2-1] first-level wildcards do not reach "$" topics.
      ['#', '$SYS/#', false],
      ['+/#', '$SYS/broker/clients', false],
      ['$SYS/#', '$SYS/broker/clients', true],
      ['$SYS/+', '$SYS/#', false],
    ];
    for (const [grant, filter, covered] of cases) expect([grant, filter, filterCovers(grant, filter)]).toEqual([grant, filter, covered]);
  });

  it('agrees with topicFilterRegExp on topic names', () => {
    const grants = ['a/+/c', 'a/#', '#', '+', '+/b/#', 'a/b'];
    const topics = ['a', 'a/b', 'a/b/c', 'a/x/c', 'b', 'x/b/y/z', '$SYS/a', 'a//c'];
    for (const grant of grants) {
      for (const topic of topics) expect([grant, topic, filterCovers(grant, topic)]).toEqual([grant, topic, topicFilterRegExp(grant).test(topic)]);
    }
  });
});
