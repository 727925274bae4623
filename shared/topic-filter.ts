/**
 * MQTT topic filters (MQTT 3.1.1 §4.7): `+` matches one level, `#` the level it stands on and every level below
 * it, and neither matches a topic that starts with `$` when it is the filter's first level [MQTT-4.7.2-1]. Pure.
 */

/** Throws an Error naming the filter when it is not a valid MQTT topic filter. */
export function validateTopicFilter(filter: string): void {
  if (filter.length === 0) throw new Error('a topic filter must not be empty [MQTT-4.7.3-1]');
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    // [MQTT-4.7.1-2] "#" is the last level; [MQTT-4.7.1-3] "+" fills a whole level.
    if (level === '#' && i !== levels.length - 1) throw new Error(`topic filter "${filter}": "#" must be the last level`);
    if (level !== '#' && level !== '+' && (level.includes('+') || level.includes('#'))) throw new Error(`topic filter "${filter}": a wildcard must be a whole level`);
  }
}

/** An MQTT topic filter (`+` one level, `#` the rest) as a regular expression over topic names. */
export function topicFilterRegExp(filter: string): RegExp {
  validateTopicFilter(filter);
  const levels = filter.split('/');
  const parts = levels.map((level) => (level === '#' ? null : level === '+' ? '[^/]*' : level.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  const last = parts[parts.length - 1];
  if (last === null) {
    const head = parts.slice(0, -1) as string[];
    // "a/#" matches "a" itself and everything under it [MQTT-4.7.1-2].
    return new RegExp(head.length === 0 ? '^(?!\\$)' : `^${head.join('/')}(?:/.*)?$`);
  }
  return new RegExp(`^${(parts as string[]).join('/')}$`);
}

/**
 * Whether every topic that `filter` can match is also matched by `grant` (both valid topic filters): `a/+` is
 * covered by `a/#` and by `+/+`, but not by `a/b`. A topic name (no wildcards) is covered when `grant` matches it.
 */
export function filterCovers(grant: string, filter: string): boolean {
  return levelsCover(grant.split('/'), filter.split('/'));
}

/** `filterCovers` over filters already split into levels (for callers that split once). */
export function levelsCover(grant: readonly string[], filter: readonly string[]): boolean {
  // [MQTT-4.7.2-1] A wildcard in the first level does not match a "$" topic: only a grant that names it does.
  if (filter[0].charCodeAt(0) === 0x24 /* $ */ && (grant[0] === '+' || grant[0] === '#')) return false;
  const n = filter.length;
  for (let i = 0; i < grant.length; i++) {
    const g = grant[i];
    if (g === '#') return true;
    if (i >= n) return false;
    const f = filter[i];
    if (f === '#') return false;
    if (g === '+') continue;
    if (f === '+' || f !== g) return false;
  }
  // The grant ran out of levels: covered only when the filter did too. ("a/#" covering "a" returned above.)
  return n === grant.length;
}
