/**
 * What each device may publish and subscribe to (docs/security.md). A device may publish to every ingest topic
 * (`ingest.topics`) and command reply topic (`commands.replyTopic`) that carries its own id, and subscribe to its
 * own command topic (`commands.topic`); `auth.acl` grants add to that. Nothing else: an allow list, so a new
 * topic is closed until someone opens it.
 *
 * A publish outside the list closes the connection: MQTT 3.1.1 has no negative PUBACK [MQTT-3.3.5-2], and an
 * acknowledged message would have to be kept. A subscription outside it gets SUBACK 0x80 [MQTT-3.9.3]. A
 * requested filter is allowed only when a granted filter covers every topic it can match (`commands/+` is not
 * covered by `commands/dev-1`), and a "$" topic only when a grant names it: wildcards in the first level do not
 * match "$" topics [MQTT-4.7.2-1]. Both refusals are logged and counted in `tributary_edge_acl_denied_total{action}`.
 *
 * The check runs on the ingest hot path. A device's filters are compiled once, and the topics it was allowed to
 * publish to are remembered: a device publishes to a handful of topics, so after the first message per topic the
 * check is two lookups.
 */
import type { Client, PublishPacket, Subscription } from 'aedes';
import { ConfigError, errorMessage } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { LogThrottle } from '../shared/log-throttle.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import { levelsCover, topicFilterRegExp, validateTopicFilter } from '../shared/topic-filter.ts';
import type { EdgeConfig } from './config.ts';
import { remoteAddressOf } from './device-auth.ts';

export interface AclOptions {
  config: EdgeConfig;
  /** The device id a connected client acts as (DeviceAuth.deviceOf). */
  deviceOf: (client: Client) => string;
  metrics: Metrics;
  logger: Logger;
}

/** A filter of a device, `{deviceId}` already replaced. */
interface Grant {
  filter: string;
  levels: string[];
  /** For topic names (publish). */
  regExp: RegExp;
  /** Its first level is a literal "$..." level: the only kind that may match a "$" topic. */
  dollar: boolean;
}

interface DeviceAcl {
  publish: Grant[];
  subscribe: Grant[];
  /** Topics this device was allowed to publish to. */
  allowed: Set<string>;
}

/** A filter template: `{deviceId}` becomes the device's id; with `variables`, any other whole `{name}` level becomes `+`. */
interface Template {
  text: string;
  variables: boolean;
}

interface ExtraGrant {
  devices: string;
  publish: Template[];
  subscribe: Template[];
}

/** Most topics remembered per device; a device that publishes to more only pays for the regular expressions. */
const ALLOWED_TOPICS_LIMIT = 256;
/** Most devices whose compiled ACL is kept; the oldest compiled is dropped first. */
const DEVICES_LIMIT = 10_000;
const DEVICE_ID = /\{deviceId\}/g;
const OTHER_VARIABLE = /^\{[A-Za-z][A-Za-z0-9_]*\}$/;

export class Acl {
  readonly #deviceOf: (client: Client) => string;
  readonly #logger: Logger;
  readonly #denied: { publish: Counter; subscribe: Counter };
  readonly #log = new LogThrottle();
  readonly #ownPublish: Template[];
  readonly #ownSubscribe: Template[];
  readonly #extra: ExtraGrant[];
  readonly #devices = new Map<string, DeviceAcl>();

  /** Throws a ConfigError naming the `auth.acl` entry when a grant is not a valid topic filter. */
  constructor(options: AclOptions) {
    const { config } = options;
    this.#deviceOf = options.deviceOf;
    this.#logger = options.logger;
    const help = 'Publishes and subscriptions refused by the device ACL, by action.';
    this.#denied = {
      publish: options.metrics.counter('tributary_edge_acl_denied_total', help, { action: 'publish' }),
      subscribe: options.metrics.counter('tributary_edge_acl_denied_total', help, { action: 'subscribe' }),
    };
    this.#ownPublish = [...config.ingest.topics.map((rule) => rule.topic), config.commands.replyTopic].map((text) => ({ text, variables: true }));
    this.#ownSubscribe = [{ text: config.commands.topic, variables: true }];
    this.#extra = config.auth.acl.map((grant, i) => ({
      devices: grant.devices,
      publish: grant.publish.map((text, j) => checkedGrant(text, `auth.acl[${i}].publish[${j}]`)),
      subscribe: grant.subscribe.map((text, j) => checkedGrant(text, `auth.acl[${i}].subscribe[${j}]`)),
    }));
  }

  /** The filters `deviceId` may publish and subscribe to. */
  grantsOf(deviceId: string): { publish: string[]; subscribe: string[] } {
    const acl = this.#aclOf(deviceId);
    return { publish: acl.publish.map((g) => g.filter), subscribe: acl.subscribe.map((g) => g.filter) };
  }

  /** True when `client` may publish `packet`; otherwise calls `callback` with the refusal and returns false. */
  allowPublish(client: Client, packet: PublishPacket, callback: (error?: Error | null) => void): boolean {
    const deviceId = this.#deviceOf(client);
    const acl = this.#aclOf(deviceId);
    const topic = packet.topic;
    if (acl.allowed.has(topic)) return true;
    if (mayPublish(acl.publish, topic)) {
      if (acl.allowed.size >= ALLOWED_TOPICS_LIMIT) acl.allowed.clear();
      acl.allowed.add(topic);
      return true;
    }
    this.#denied.publish.inc();
    this.#deny(client, deviceId, 'publish', topic, acl.publish, 'closing its connection (MQTT 3.1.1 has no negative PUBACK)');
    callback(new Error(`device "${deviceId}" may not publish to "${topic}"`));
    return false;
  }

  /** The Aedes `authorizeSubscribe` hook: a refused filter gets SUBACK 0x80. */
  readonly authorizeSubscribe = (client: Client, subscription: Subscription, callback: (error: Error | null, subscription?: Subscription | null) => void): void => {
    const deviceId = this.#deviceOf(client);
    const acl = this.#aclOf(deviceId);
    const levels = subscription.topic.split('/');
    for (const grant of acl.subscribe) {
      if (levelsCover(grant.levels, levels)) {
        callback(null, subscription);
        return;
      }
    }
    this.#denied.subscribe.inc();
    this.#deny(client, deviceId, 'subscribe', subscription.topic, acl.subscribe, 'SUBACK 0x80');
    callback(null, null);
  };

  #deny(client: Client, deviceId: string, action: 'publish' | 'subscribe', topic: string, grants: Grant[], outcome: string): void {
    const suppressed = this.#log.admit(client.id);
    if (suppressed === undefined) return;
    this.#logger.warn(`${action} refused by the ACL: ${outcome}`, {
      clientId: client.id,
      deviceId,
      address: remoteAddressOf(client),
      action,
      topic,
      allowed: grants.map((g) => g.filter),
      hint: 'grant more in auth.acl',
      ...(suppressed > 0 ? { suppressed } : {}),
    });
  }

  #aclOf(deviceId: string): DeviceAcl {
    let acl = this.#devices.get(deviceId);
    if (acl !== undefined) return acl;
    acl = this.#compile(deviceId);
    if (this.#devices.size >= DEVICES_LIMIT) this.#devices.delete(this.#devices.keys().next().value!);
    this.#devices.set(deviceId, acl);
    return acl;
  }

  #compile(deviceId: string): DeviceAcl {
    const publish = [...this.#ownPublish];
    const subscribe = [...this.#ownSubscribe];
    for (const extra of this.#extra) {
      if (!appliesTo(extra.devices, deviceId)) continue;
      publish.push(...extra.publish);
      subscribe.push(...extra.subscribe);
    }
    const compile = (templates: Template[]): Grant[] => {
      const grants: Grant[] = [];
      for (const template of templates) {
        try {
          grants.push(compileGrant(instantiate(template, deviceId)));
        } catch (err) {
          // Only a device id that is not a topic level gets here (DeviceAuth refuses those): grant it nothing.
          this.#logger.error('cannot apply an ACL filter to a device; it is not granted', { deviceId, filter: template.text, error: errorMessage(err) });
        }
      }
      return grants;
    };
    return { publish: compile(publish), subscribe: compile(subscribe), allowed: new Set() };
  }
}

function checkedGrant(text: string, key: string): Template {
  try {
    validateTopicFilter(text.replace(DEVICE_ID, 'device'));
  } catch (err) {
    throw new ConfigError(errorMessage(err), { key }, { cause: err });
  }
  return { text, variables: false };
}

/** A grant's `devices`: an exact id, a prefix ending in `*`, or `*` for every device. */
function appliesTo(devices: string, deviceId: string): boolean {
  return devices.endsWith('*') ? deviceId.startsWith(devices.slice(0, -1)) : devices === deviceId;
}

function instantiate(template: Template, deviceId: string): string {
  if (!template.variables) return template.text.replace(DEVICE_ID, deviceId);
  return template.text
    .split('/')
    .map((level) => (level === '{deviceId}' ? deviceId : OTHER_VARIABLE.test(level) ? '+' : level))
    .join('/');
}

function compileGrant(filter: string): Grant {
  const levels = filter.split('/');
  return { filter, levels, regExp: topicFilterRegExp(filter), dollar: levels[0].charCodeAt(0) === 0x24 /* $ */ };
}

function mayPublish(grants: Grant[], topic: string): boolean {
  const dollar = topic.charCodeAt(0) === 0x24; /* $ */
  for (const grant of grants) {
    // [MQTT-4.7.2-1] a "$" topic is matched only by a grant that names its first level.
    if (dollar && !grant.dollar) continue;
    if (grant.regExp.test(topic)) return true;
  }
  return false;
}
