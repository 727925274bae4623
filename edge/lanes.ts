/**
 * Priority lanes of the edge buffer. Every event travels in one lane; the uplink always sends from the highest
 * lane that has events, so alerts and command results leave before bulk telemetry. Within a lane events keep
 * their order (and so, per device, the order the device sent them in).
 *
 * Which lane an event takes is decided by rules in the edge config (`buffer.lanes`): a CloudEvent `type` prefix
 * or an MQTT topic filter; the first rule that matches wins, and an event no rule matches goes to `normal`.
 */
import { topicFilterRegExp } from '../shared/topic-filter.ts';

export { topicFilterRegExp };

export const LANE_NAMES = ['high', 'normal', 'low'] as const;
export type LaneName = (typeof LANE_NAMES)[number];
/** A lane's index: 0 is the highest priority. */
export type Lane = 0 | 1 | 2;
export const LANE_COUNT = LANE_NAMES.length;
export const HIGH: Lane = 0;
export const NORMAL: Lane = 1;
export const LOW: Lane = 2;

export interface LaneRule {
  type?: string;
  topic?: string;
  lane: LaneName;
}

/** Alerts and command results (replies, deliveries, expiries) travel first; everything else is `normal`. */
export const DEFAULT_LANE_RULES: readonly LaneRule[] = [
  { type: 'io.tributary.alert.', lane: 'high' },
  { type: 'io.tributary.command.', lane: 'high' },
];

export function laneIndex(name: LaneName): Lane {
  return LANE_NAMES.indexOf(name) as Lane;
}

interface CompiledRule {
  type?: string;
  topic?: RegExp;
  lane: Lane;
}

/** Most topics whose lane is cached. */
const CACHE_LIMIT = 10_000;

/**
 * Decides the lane of an event from its topic and type. Answers are cached per topic (a topic's events share one
 * type unless they are structured events; the cached type is checked), so the hot path builds no key string.
 */
export class LaneRouter {
  readonly #rules: CompiledRule[];
  readonly #cache = new Map<string, { type: string; lane: Lane }>();

  constructor(rules: readonly LaneRule[] = DEFAULT_LANE_RULES) {
    this.#rules = rules.map((r) => ({ type: r.type, topic: r.topic === undefined ? undefined : topicFilterRegExp(r.topic), lane: laneIndex(r.lane) }));
  }

  laneOf(topic: string, type: string): Lane {
    if (this.#rules.length === 0) return NORMAL;
    const cached = this.#cache.get(topic);
    if (cached !== undefined && cached.type === type) return cached.lane;
    let lane: Lane = NORMAL;
    for (const rule of this.#rules) {
      if ((rule.type === undefined || type.startsWith(rule.type)) && (rule.topic === undefined || rule.topic.test(topic))) {
        lane = rule.lane;
        break;
      }
    }
    if (cached !== undefined) {
      cached.type = type;
      cached.lane = lane;
    } else {
      if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear();
      this.#cache.set(topic, { type, lane });
    }
    return lane;
  }
}
