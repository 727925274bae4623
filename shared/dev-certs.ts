/**
 * A local certificate authority and certificates for trying TLS out (`tributary certs dev`): ECDSA P-256 keys,
 * SHA-256 signatures, PEM files that Node's and Deno's `node:tls` accept. Made with `@peculiar/x509` over
 * WebCrypto, which runs on both runtimes (`node:crypto` can read certificates but not issue them).
 *
 * Not for production: a real deployment gets its certificates from its own CA or ACME.
 */
// @peculiar/x509 resolves its algorithm providers with tsyringe, which needs the Reflect metadata polyfill
// loaded first (its README, "Reflect Polyfill Required").
import 'reflect-metadata';
import { Buffer } from 'node:buffer';
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

/** A certificate and its private key, as PEM text (the key in PKCS#8, `-----BEGIN PRIVATE KEY-----`). */
export interface CertificateAndKey {
  certPem: string;
  keyPem: string;
}

/** What a certificate may be used for: a TLS server, a TLS client, or both (its extended key usage). */
export type CertificateUsage = 'server' | 'client' | 'both';

export interface DevCaOptions {
  /** The CA's common name. Default `Tributary development CA`. */
  name?: string;
  /** How long it is valid. Default 3650 days. */
  days?: number;
  /** When its validity starts (less a few minutes). Default now. */
  now?: Date;
}

export interface IssueOptions {
  /** The subject's CN: a device or edge id for client certificates (it is their identity), a host name for servers. */
  commonName: string;
  /** DNS names and IP addresses the certificate is valid for (subjectAltName); needed for servers. */
  hosts?: string[];
  usage: CertificateUsage;
  /** How long it is valid. Default 365 days. */
  days?: number;
  /** When its validity starts (less a few minutes). Default now. */
  now?: Date;
}

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' };
const DAY_MS = 24 * 3600 * 1000;
/** Certificates start a little in the past, so a peer whose clock is a few minutes behind still accepts them. */
const BACKDATE_MS = 5 * 60 * 1000;

/** A new self-signed CA that may sign end-entity certificates only (path length 0). */
export async function createDevCa(options: DevCaOptions = {}): Promise<CertificateAndKey> {
  const name = options.name ?? 'Tributary development CA';
  checkName(name, 'name');
  const validity = validityOf(options.days ?? 3650, options.now);
  const keys = await generateKeys();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ CN: [name] }],
    ...validity,
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: certificate.toString('pem') + '\n', keyPem: await exportKey(keys.privateKey) };
}

/** A certificate signed by `ca` (from `createDevCa`), with a new key. */
export async function issueCertificate(ca: CertificateAndKey, options: IssueOptions): Promise<CertificateAndKey> {
  checkName(options.commonName, 'commonName');
  const hosts = options.hosts ?? [];
  for (const host of hosts) checkName(host, 'hosts');
  const caCertificate = new x509.X509Certificate(ca.certPem);
  const caKey = await importKey(ca.keyPem);
  const keys = await generateKeys();
  const purposes = {
    server: [x509.ExtendedKeyUsage.serverAuth],
    client: [x509.ExtendedKeyUsage.clientAuth],
    both: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
  }[options.usage];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    // ECDHE key exchange: the key only signs (RFC 5480 §3; keyEncipherment is for RSA key transport).
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(purposes, false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(caCertificate, false),
  ];
  if (hosts.length > 0) {
    // Clients match the host they connect to against these, not the CN (RFC 6125 §6.4.4, RFC 2818 §3.1).
    extensions.push(new x509.SubjectAlternativeNameExtension(hosts.map((host) => ({ type: isIP(host) ? ('ip' as const) : ('dns' as const), value: host })), false));
  }
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [{ CN: [options.commonName] }],
    issuer: caCertificate.subjectName,
    ...validityOf(options.days ?? 365, options.now),
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions,
  });
  return { certPem: certificate.toString('pem') + '\n', keyPem: await exportKey(keys.privateKey) };
}

function generateKeys(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
}

async function exportKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return ['-----BEGIN PRIVATE KEY-----', ...lines, '-----END PRIVATE KEY-----', ''].join('\n');
}

async function importKey(pem: string): Promise<webcrypto.CryptoKey> {
  const match = /-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/.exec(pem);
  if (!match) throw new Error('the CA key is not a PKCS#8 PEM private key ("-----BEGIN PRIVATE KEY-----"); use the ca-key.pem that "tributary certs dev" wrote');
  const der = Buffer.from(match[1].replace(/\s+/g, ''), 'base64');
  try {
    return await webcrypto.subtle.importKey('pkcs8', der, KEY_ALGORITHM, false, ['sign']);
  } catch (err) {
    throw new Error('the CA key is not an ECDSA P-256 key; use the ca-key.pem that "tributary certs dev" wrote', { cause: err });
  }
}

/** 16 random bytes, top bit clear: a positive serial number of at most 20 octets (RFC 5280 §4.1.2.2). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] & 0x7f) | 0x01;
  return bytes.toString('hex');
}

function validityOf(days: number, start = new Date()): { notBefore: Date; notAfter: Date } {
  if (!Number.isFinite(days) || days <= 0) throw new RangeError(`days must be a positive number, got ${days}`);
  const now = start.getTime();
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + days * DAY_MS) };
}

function checkName(value: string, what: string): void {
  // eslint-disable-next-line no-control-regex
  if (value.trim() === '' || /[\u0000-\u001f\u007f]/.test(value)) throw new RangeError(`${what} must be a non-empty name without control characters, got ${JSON.stringify(value)}`);
}
