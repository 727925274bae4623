import { describe, expect, it } from 'vitest';
import { cloudConfigSchema } from '../../cloud/config.ts';
import type { HostLookup } from '../../cloud/webhook-target.ts';
import { checkWebhookTarget, compileDenyList, deniedBy } from '../../cloud/webhook-target.ts';
import { parseConfig } from '../../shared/config.ts';
import { ConfigError } from '../../shared/errors.ts';

const defaults = parseConfig(cloudConfigSchema, {}).webhooks;

/** A resolver that answers from a table and records what it was asked; unknown names fail as DNS does. */
function resolver(table: Record<string, string[]>): HostLookup & { asked: string[] } {
  const asked: string[] = [];
  const lookup = async (host: string): Promise<string[]> => {
    asked.push(host);
    const answer = table[host];
    if (!answer) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return answer;
  };
  return Object.assign(lookup, { asked });
}

describe('checkWebhookTarget', () => {
  it('accepts a public https URL and returns the addresses to deliver to', async () => {
    const lookup = resolver({ 'hooks.example.com': ['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c'] });
    const result = await checkWebhookTarget('https://hooks.example.com/tributary?x=1', defaults, lookup);
    expect(result).toMatchObject({ ok: true, addresses: ['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c'] });
    if (result.ok) expect(result.url.href).toBe('https://hooks.example.com/tributary?x=1');
    expect(lookup.asked).toEqual(['hooks.example.com']);
  });

  it('refuses a host name that resolves to the cloud metadata address 169.254.169.254', async () => {
    const lookup = resolver({ 'innocent.example.com': ['169.254.169.254'] });
    const result = await checkWebhookTarget('https://innocent.example.com/hook', defaults, lookup);
    expect(result).toEqual({
      ok: false,
      reason: 'denied-address',
      message: 'the webhook host https://innocent.example.com resolves to 169.254.169.254, which is on webhooks.denyList (169.254.0.0/16); deliver to another address, or change webhooks.denyList',
    });
  });

  it('refuses a name when any one of its addresses is denied, not only the first', async () => {
    const lookup = resolver({ 'mixed.example.com': ['93.184.215.14', 'fe80::1'] });
    expect(await checkWebhookTarget('https://mixed.example.com/', defaults, lookup)).toMatchObject({ ok: false, reason: 'denied-address', message: expect.stringContaining('fe80::1, which is on webhooks.denyList (fe80::/10)') });
  });

  it.each([
    ['dotted', 'http://169.254.169.254/latest/meta-data/'],
    ['as one decimal number', 'http://2852039166/'],
    ['in hexadecimal', 'http://0xa9fea9fe/'],
    ['in octal parts', 'http://0251.0376.0251.0376/'],
    ['as IPv4-mapped IPv6', 'http://[::ffff:169.254.169.254]/'],
    ['as IPv4-mapped IPv6 in hex', 'http://[::ffff:a9fe:a9fe]/'],
  ])('refuses the metadata address written %s, without asking DNS', async (_name, url) => {
    const lookup = resolver({});
    expect(await checkWebhookTarget(url, defaults, lookup)).toMatchObject({ ok: false, reason: 'denied-address', message: expect.stringContaining('(169.254.0.0/16)') });
    expect(lookup.asked).toEqual([]);
  });

  it('refuses the other default entries: IPv6 link-local, the AWS IPv6 metadata address, Alibaba\'s, and metadata host names', async () => {
    const lookup = resolver({});
    expect(await checkWebhookTarget('http://[fe80::a:b]/', defaults, lookup)).toMatchObject({ reason: 'denied-address' });
    expect(await checkWebhookTarget('http://[fd00:ec2::254]/', defaults, lookup)).toMatchObject({ reason: 'denied-address', message: expect.stringContaining('(fd00:ec2::254)') });
    expect(await checkWebhookTarget('http://100.100.100.200/', defaults, lookup)).toMatchObject({ reason: 'denied-address' });
    expect(await checkWebhookTarget('http://metadata.google.internal/computeMetadata/v1/', defaults, lookup)).toMatchObject({
      ok: false,
      reason: 'denied-host',
      message: 'the webhook host http://metadata.google.internal is on webhooks.denyList (metadata.google.internal); deliver to another host, or change webhooks.denyList',
    });
    // Names are matched case-blind, with a trailing dot, and for subdomains too; none of them is looked up.
    expect(await checkWebhookTarget('http://METADATA.Google.Internal./', defaults, lookup)).toMatchObject({ reason: 'denied-host' });
    expect(await checkWebhookTarget('http://x.metadata.azure.com/', defaults, lookup)).toMatchObject({ reason: 'denied-host' });
    expect(lookup.asked).toEqual([]);
    // A name that only ends the same way is not a subdomain.
    expect(await checkWebhookTarget('http://notmetadata.azure.com/', defaults, resolver({ 'notmetadata.azure.com': ['20.1.2.3'] }))).toMatchObject({ ok: true });
  });

  it('applies a deny list of private ranges, addresses and names from the config', async () => {
    const webhooks = parseConfig(cloudConfigSchema, { webhooks: { denyList: ['10.0.0.0/8', '127.0.0.0/8', '::1', '[fc00::]/7', 'internal.corp'] } }).webhooks;
    const lookup = resolver({ 'app.internal.corp': ['93.184.215.14'], 'db.example.com': ['10.1.2.3'], 'v6.example.com': ['fd12::5'] });
    expect(await checkWebhookTarget('http://127.0.0.1:8080/', webhooks, lookup)).toMatchObject({ reason: 'denied-address', message: expect.stringContaining('(127.0.0.0/8)') });
    expect(await checkWebhookTarget('http://[::1]:8080/', webhooks, lookup)).toMatchObject({ reason: 'denied-address', message: expect.stringContaining('(::1)') });
    expect(await checkWebhookTarget('http://[::ffff:10.9.9.9]/', webhooks, lookup)).toMatchObject({ reason: 'denied-address', message: expect.stringContaining('(10.0.0.0/8)') });
    expect(await checkWebhookTarget('https://db.example.com/', webhooks, lookup)).toMatchObject({ reason: 'denied-address' });
    expect(await checkWebhookTarget('https://v6.example.com/', webhooks, lookup)).toMatchObject({ reason: 'denied-address', message: expect.stringContaining('([fc00::]/7)') });
    expect(await checkWebhookTarget('https://app.internal.corp/', webhooks, lookup)).toMatchObject({ reason: 'denied-host' });
    // The default list is replaced, not added to: the metadata address is allowed by this one.
    expect(await checkWebhookTarget('http://169.254.169.254/', webhooks, lookup)).toMatchObject({ ok: true });
  });

  it('refuses a scheme the config does not allow, naming the allowed ones', async () => {
    const httpsOnly = parseConfig(cloudConfigSchema, { webhooks: { schemes: ['https'] } }).webhooks;
    expect(await checkWebhookTarget('http://hooks.example.com/', httpsOnly, resolver({}))).toEqual({
      ok: false,
      reason: 'scheme',
      message: 'the webhook URL\'s scheme "http" is not allowed; use https:// (webhooks.schemes)',
    });
    for (const url of ['ftp://hooks.example.com/', 'file:///etc/passwd', 'gopher://127.0.0.1:6379/_INFO', 'javascript:alert(1)']) {
      expect(await checkWebhookTarget(url, defaults, resolver({}))).toMatchObject({ ok: false, reason: 'scheme' });
    }
  });

  it('refuses credentials in the URL without repeating them', async () => {
    for (const url of ['https://alice:s3cr3t-pw@hooks.example.com/', 'https://s3cr3t-pw@hooks.example.com/', 'https://:s3cr3t-pw@hooks.example.com/']) {
      const result = await checkWebhookTarget(url, defaults, resolver({ 'hooks.example.com': ['93.184.215.14'] }));
      expect(result).toMatchObject({ ok: false, reason: 'credentials' });
      expect(JSON.stringify(result)).not.toContain('s3cr3t');
    }
  });

  it('refuses what is not an absolute URL, and a host that does not resolve', async () => {
    expect(await checkWebhookTarget('hooks.example.com/x', defaults, resolver({}))).toMatchObject({ ok: false, reason: 'invalid-url' });
    expect(await checkWebhookTarget('', defaults, resolver({}))).toMatchObject({ ok: false, reason: 'invalid-url' });
    expect(await checkWebhookTarget('https://nowhere.invalid/', defaults, resolver({}))).toEqual({
      ok: false,
      reason: 'unresolvable',
      message: 'the webhook host https://nowhere.invalid cannot be resolved (ENOTFOUND); check the name',
    });
    expect(await checkWebhookTarget('https://empty.example.com/', defaults, resolver({ 'empty.example.com': [] }))).toMatchObject({ ok: false, reason: 'unresolvable' });
  });

  it('does not repeat the path or query of a refused URL (they may hold a capability token)', async () => {
    const result = await checkWebhookTarget('http://169.254.169.254/hook?token=abc123secret', defaults, resolver({}));
    expect(result.ok).toBe(false);
    expect(JSON.stringify(result)).not.toContain('abc123secret');
  });

  it('resolves with the system resolver by default (localhost is allowed by the default list)', async () => {
    const result = await checkWebhookTarget('http://localhost:9/hook', defaults);
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.addresses.some((a) => a === '127.0.0.1' || a === '::1')).toBe(true);
  });
});

describe('compileDenyList', () => {
  it.each([
    ['10.0.0.0/33', /prefix length must be 0 to 32/],
    ['fe80::/129', /prefix length must be 0 to 128/],
    ['10.0.0/8', /part before "\/" is not an IP address/],
    ['exa mple.com', /not an IP address, CIDR range or host name/],
    ['http://example.com', /not an IP address, CIDR range or host name|CIDR/],
  ])('refuses the entry %s with a ConfigError naming its key', (entry, message) => {
    let error: unknown;
    try {
      compileDenyList(['169.254.0.0/16', entry], { file: 'cloud.yaml' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(message);
    expect((error as ConfigError).message).toMatch(/^cloud.yaml: webhooks.denyList.1: entry /);
  });

  it('matches IPv4 ranges on their boundaries and IPv6 ranges by prefix', () => {
    const list = compileDenyList(['192.168.0.0/16', '2001:db8::/32', '0.0.0.0/32']);
    expect(deniedBy(list, '192.168.0.0')).toBe('192.168.0.0/16');
    expect(deniedBy(list, '192.168.255.255')).toBe('192.168.0.0/16');
    expect(deniedBy(list, '192.169.0.0')).toBeUndefined();
    expect(deniedBy(list, '192.167.255.255')).toBeUndefined();
    expect(deniedBy(list, '2001:db8:ffff::1')).toBe('2001:db8::/32');
    expect(deniedBy(list, '2001:db9::1')).toBeUndefined();
    expect(deniedBy(list, '0.0.0.0')).toBe('0.0.0.0/32');
    expect(deniedBy(list, '0.0.0.1')).toBeUndefined();
    expect(deniedBy(list, 'fe80::1%eth0')).toBeUndefined();
    expect(deniedBy(list, 'not an address')).toBeUndefined();
  });
});
