/**
 * Whether a webhook URL may be delivered to. A webhook makes the cloud node send HTTP requests to an address a user
 * chose, so without a check anyone allowed to create a subscription could make the node reach what only it can
 * reach: a cloud metadata endpoint (169.254.169.254 hands out credentials), the link-local network, or whatever
 * the operator puts on `webhooks.denyList` (server-side request forgery, OWASP API7:2023).
 *
 * The check: a well-formed absolute URL, a scheme in `webhooks.schemes`, no user name or password in it (they
 * would end up in logs and subscription listings), and neither the host name nor any address it resolves to on the
 * deny list. The deny list holds IPv4 and IPv6 addresses, CIDR ranges and host names (a name also covers its
 * subdomains); an IPv4 range also covers the same addresses written as IPv4-mapped IPv6 (`::ffff:169.254.169.254`).
 * Every address a name resolves to is checked, not just the first: a resolver may hand out any of them.
 *
 * Call it when a subscription is created and again before each delivery, and deliver to one of the `addresses` it
 * returns (not to a new lookup of the name): DNS answers change, and a name that resolved to a public address a
 * minute ago can resolve to 169.254.169.254 now (DNS rebinding).
 *
 * Addresses are matched with `node:net`'s `BlockList` (checked on Node 20 and Deno 2, including IPv4-mapped IPv6).
 * The URL is parsed by the WHATWG URL parser, which already turns the other spellings of an IPv4 address
 * (`2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376`) into dotted form, so they cannot slip past.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { ConfigError } from '../shared/errors.ts';
import type { CloudConfig } from './config.ts';

export type WebhookTargetCheck =
  | { ok: true; url: URL; addresses: string[] }
  | { ok: false; reason: 'invalid-url' | 'scheme' | 'credentials' | 'denied-host' | 'denied-address' | 'unresolvable'; message: string };

/** Resolves a host name to its addresses (all of them). */
export type HostLookup = (host: string) => Promise<string[]>;

/** A compiled deny list: addresses and ranges, and host names (lower case, no trailing dot). */
export interface DenyList {
  addresses: BlockList;
  names: ReadonlySet<string>;
  /** The entry each range came from, to name it in messages: [kind, network, prefix, entry]. */
  ranges: readonly { family: 'ipv4' | 'ipv6'; network: string; prefix: number; entry: string }[];
}

const compiled = new WeakMap<readonly string[], DenyList>();

/**
 * Compiles `webhooks.denyList`; throws a ConfigError naming the entry that is neither an address, a range nor a
 * host name. The cloud node calls it at start-up so a bad entry stops it there, not at the first delivery.
 */
export function compileDenyList(entries: readonly string[], where: { file?: string } = {}): DenyList {
  const cached = compiled.get(entries);
  if (cached) return cached;
  const addresses = new BlockList();
  const names = new Set<string>();
  const ranges: DenyList['ranges'][number][] = [];
  entries.forEach((entry, i) => {
    const bad = (why: string): never => {
      throw new ConfigError(`entry ${JSON.stringify(entry)} ${why}; write an IP address (169.254.169.254), a CIDR range (169.254.0.0/16, fe80::/10) or a host name (metadata.google.internal)`, { file: where.file, key: `webhooks.denyList.${i}` });
    };
    const text = entry.trim().toLowerCase();
    const slash = text.indexOf('/');
    if (slash >= 0) {
      const network = unbracket(text.slice(0, slash));
      const family = isIP(network);
      const prefixText = text.slice(slash + 1);
      const max = family === 6 ? 128 : 32;
      if (family === 0) bad('is not a CIDR range: the part before "/" is not an IP address');
      if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) bad(`is not a CIDR range: the prefix length must be 0 to ${max}`);
      const type = family === 6 ? 'ipv6' : 'ipv4';
      addresses.addSubnet(network, Number(prefixText), type);
      ranges.push({ family: type, network, prefix: Number(prefixText), entry });
      return;
    }
    const address = unbracket(text);
    const family = isIP(address);
    if (family !== 0) {
      const type = family === 6 ? 'ipv6' : 'ipv4';
      addresses.addAddress(address, type);
      ranges.push({ family: type, network: address, prefix: family === 6 ? 128 : 32, entry });
      return;
    }
    const name = text.replace(/\.$/, '');
    if (!/^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/.test(name)) bad('is not an IP address, CIDR range or host name');
    names.add(name);
  });
  const list = { addresses, names, ranges };
  compiled.set(entries, list);
  return list;
}

/** Whether the address (IPv4 or IPv6, IPv4-mapped included) is on the list; the entry that covers it, if so. */
export function deniedBy(list: DenyList, address: string): string | undefined {
  const plain = unbracket(address).replace(/%.*$/, ''); // a zone id (fe80::1%eth0) does not change the address
  const family = isIP(plain);
  if (family === 0) return undefined;
  if (!list.addresses.check(plain, family === 6 ? 'ipv6' : 'ipv4')) return undefined;
  // Find which entry, for the message: check each range on its own.
  for (const range of list.ranges) {
    const one = new BlockList();
    one.addSubnet(range.network, range.prefix, range.family);
    if (one.check(plain, family === 6 ? 'ipv6' : 'ipv4')) return range.entry;
  }
  return plain;
}

const defaultLookup: HostLookup = async (host) => (await dnsLookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** Checks a webhook URL against the config; see the module comment. */
export async function checkWebhookTarget(url: string, config: CloudConfig['webhooks'], lookup: HostLookup = defaultLookup): Promise<WebhookTargetCheck> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, reason: 'invalid-url', message: 'the webhook URL is not an absolute URL such as https://example.com/hooks/tributary' };
  }
  const scheme = parsed.protocol.slice(0, -1);
  const allowed: readonly string[] = config.schemes;
  if (!allowed.includes(scheme)) {
    return { ok: false, reason: 'scheme', message: `the webhook URL's scheme "${scheme}" is not allowed; use ${allowed.map((s) => `${s}://`).join(' or ')} (webhooks.schemes)` };
  }
  if (parsed.username !== '' || parsed.password !== '') {
    // Never repeat them: they are credentials.
    return { ok: false, reason: 'credentials', message: 'the webhook URL carries a user name or password; remove them (the delivery is signed with the subscription\'s secret, and a receiver checks that instead)' };
  }
  const host = unbracket(parsed.hostname).replace(/\.$/, '');
  if (host === '') return { ok: false, reason: 'invalid-url', message: 'the webhook URL has no host' };
  const list = compileDenyList(config.denyList);
  const where = `${parsed.protocol}//${parsed.host}`;
  const name = deniedName(list, host);
  if (name !== undefined) {
    return { ok: false, reason: 'denied-host', message: `the webhook host ${where} is on webhooks.denyList (${name}); deliver to another host, or change webhooks.denyList` };
  }
  let addresses: string[];
  if (isIP(host) !== 0) {
    addresses = [host];
  } else {
    try {
      addresses = await lookup(host);
    } catch (err) {
      const code = (err as { code?: string }).code;
      return { ok: false, reason: 'unresolvable', message: `the webhook host ${where} cannot be resolved${code ? ` (${code})` : ''}; check the name` };
    }
    if (addresses.length === 0) return { ok: false, reason: 'unresolvable', message: `the webhook host ${where} resolves to no address; check the name` };
  }
  for (const address of addresses) {
    const entry = deniedBy(list, address);
    if (entry === undefined) continue;
    const via = isIP(host) !== 0 ? '' : ` resolves to ${address}, which`;
    return { ok: false, reason: 'denied-address', message: `the webhook host ${where}${via} is on webhooks.denyList (${entry}); deliver to another address, or change webhooks.denyList` };
  }
  return { ok: true, url: parsed, addresses };
}

/** The deny-list name that covers `host` (the name itself or a parent domain), if any. */
function deniedName(list: DenyList, host: string): string | undefined {
  if (list.names.size === 0 || isIP(host) !== 0) return undefined;
  let rest = host;
  for (;;) {
    if (list.names.has(rest)) return rest;
    const dot = rest.indexOf('.');
    if (dot < 0) return undefined;
    rest = rest.slice(dot + 1);
  }
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
