/**
 * TLS settings in node configs: the schema of a TLS listener and of a TLS client, and their loading into
 * `node:tls` options (files read and checked at start-up, so a wrong path or a key that does not match its
 * certificate is a config error naming the key and the file, not a failed handshake later).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { ConnectionOptions, TlsOptions } from 'node:tls';
import { z } from 'zod';
import { ConfigError, errorMessage } from './errors.ts';

export const CLIENT_CERTIFICATE_MODES = ['none', 'optional', 'required'] as const;
export type ClientCertificateMode = (typeof CLIENT_CERTIFICATE_MODES)[number];

/** A TLS listener: its certificate chain and key (PEM files), and whether clients may or must show a certificate. */
export const tlsServerSchema = z.strictObject({
  /** The server's certificate chain (PEM). */
  certFile: z.string().min(1),
  /** The server's private key (PEM). */
  keyFile: z.string().min(1),
  /** CA certificates (PEM) that client certificates must chain to; needed unless `clientCertificates` is `none`. */
  caFile: z.string().min(1).optional(),
  /** `none`: clients authenticate otherwise; `optional`: a client may prove its identity with a certificate (its CN); `required`: it must. */
  clientCertificates: z.enum(CLIENT_CERTIFICATE_MODES).default('none'),
});
export type TlsServerConfig = z.output<typeof tlsServerSchema>;

/** A TLS client: the CA to verify the server with (default: the system's), and a client certificate if the server asks for one. */
export const tlsClientSchema = z.strictObject({
  /** CA certificates (PEM) the server's certificate must chain to; default: the runtime's trusted roots. */
  caFile: z.string().min(1).optional(),
  /** Client certificate chain (PEM), for servers that authenticate clients by certificate. */
  certFile: z.string().min(1).optional(),
  /** The client certificate's private key (PEM). */
  keyFile: z.string().min(1).optional(),
  /** Name to verify the server's certificate against, when it differs from the URL's host. */
  serverName: z.string().min(1).optional(),
});
export type TlsClientConfig = z.output<typeof tlsClientSchema>;

/** Where a TLS setting comes from, for error messages: the config file and the setting's dotted key (e.g. `mqtt.tls`). */
export interface TlsConfigSource {
  file?: string;
  key: string;
}

/**
 * Reads and checks the files of a TLS listener. Clients that show a certificate are verified against `caFile`;
 * with `optional`, an untrusted certificate does not end the handshake but gives no identity either
 * (`verifiedPeerName` returns a name only for a verified one).
 */
export async function loadTlsServerOptions(config: TlsServerConfig, where: TlsConfigSource): Promise<TlsOptions> {
  if (config.clientCertificates !== 'none' && config.caFile === undefined) {
    throw new ConfigError(
      `clientCertificates is "${config.clientCertificates}" but no caFile is set: name the CA certificate (PEM) that client certificates must chain to, or set clientCertificates to "none"`,
      { file: where.file, key: `${where.key}.caFile` },
    );
  }
  const { cert, key } = await readKeyPair(config.certFile, config.keyFile, where);
  const ca = config.caFile === undefined ? undefined : await readCertificates(config.caFile, where, 'caFile');
  const requestCert = config.clientCertificates !== 'none';
  return {
    cert,
    key,
    ...(ca === undefined ? {} : { ca }),
    requestCert,
    // [RFC 8446 §4.4.2.4] with `optional` the server decides what an untrusted certificate means: here, nothing.
    rejectUnauthorized: config.clientCertificates === 'required',
    minVersion: 'TLSv1.2',
  };
}

/** Reads and checks the files of a TLS client. The server's certificate is always verified. */
export async function loadTlsClientOptions(config: TlsClientConfig, where: TlsConfigSource): Promise<ConnectionOptions> {
  if ((config.certFile === undefined) !== (config.keyFile === undefined)) {
    const missing = config.certFile === undefined ? 'certFile' : 'keyFile';
    throw new ConfigError(`a client certificate needs both certFile and keyFile; ${missing} is not set`, { file: where.file, key: `${where.key}.${missing}` });
  }
  const pair = config.certFile !== undefined && config.keyFile !== undefined ? await readKeyPair(config.certFile, config.keyFile, where) : undefined;
  const ca = config.caFile === undefined ? undefined : await readCertificates(config.caFile, where, 'caFile');
  return {
    ...(ca === undefined ? {} : { ca }),
    ...(pair ?? {}),
    ...(config.serverName === undefined ? {} : { servername: config.serverName }),
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  };
}

/**
 * The CN of a client certificate the listener verified against its CA; undefined when the peer showed none, when
 * it is not trusted, when it has no single CN, or when `socket` is not a TLS socket (TCP and WebSocket clients).
 */
export function verifiedPeerName(socket: unknown): string | undefined {
  const tls = socket as { authorized?: unknown; getPeerCertificate?: unknown } | null;
  if (typeof tls !== 'object' || tls === null || typeof tls.getPeerCertificate !== 'function') return undefined;
  // `authorized` is true only when the peer's certificate chains to the listener's CA (and is within its dates).
  if (tls.authorized !== true) return undefined;
  const certificate = (tls.getPeerCertificate as () => { subject?: Record<string, unknown> } | null).call(tls);
  const cn = certificate?.subject?.CN;
  // A subject with several CNs names no one in particular (Node gives them as an array).
  return typeof cn === 'string' && cn !== '' ? cn : undefined;
}

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const PRIVATE_KEY_BLOCK = /-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----[\s\S]+?-----END \1-----/;

/** A certificate chain and its private key, checked to belong together. */
async function readKeyPair(certFile: string, keyFile: string, where: TlsConfigSource): Promise<{ cert: string; key: string }> {
  const cert = await readCertificates(certFile, where, 'certFile');
  const key = await readPem(keyFile, where, 'keyFile');
  const block = PRIVATE_KEY_BLOCK.exec(key);
  if (!block) {
    throw new ConfigError(`"${keyFile}" is not a PEM private key (expected a "-----BEGIN PRIVATE KEY-----" block)`, { file: where.file, key: `${where.key}.keyFile` });
  }
  if (block[1] === 'ENCRYPTED PRIVATE KEY') {
    throw new ConfigError(`"${keyFile}" is an encrypted private key, and there is no setting for its passphrase: decrypt it (openssl pkey -in ${keyFile} -out key.pem) and keep that file readable by this user only`, {
      file: where.file,
      key: `${where.key}.keyFile`,
    });
  }
  const mismatch = (cause?: unknown): ConfigError =>
    new ConfigError(`the private key in "${keyFile}" does not belong to the certificate in "${certFile}": use the key that was made with this certificate`, { file: where.file, key: `${where.key}.keyFile` }, { cause });
  let matches: boolean;
  try {
    // The first certificate of a chain is the one the key signs for.
    matches = new X509Certificate(cert).checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw new ConfigError(`the private key in "${keyFile}" cannot be read: ${errorMessage(err)}`, { file: where.file, key: `${where.key}.keyFile` }, { cause: err });
  }
  if (!matches) throw mismatch();
  try {
    // What the listener or client will do with them at start: OpenSSL's own checks (Deno's does fewer of them).
    createSecureContext({ cert, key });
  } catch (err) {
    if (/mismatch/i.test(errorMessage(err))) throw mismatch(err);
    throw new ConfigError(`"${certFile}" and "${keyFile}" cannot be used together: ${errorMessage(err)}`, { file: where.file, key: `${where.key}.keyFile` }, { cause: err });
  }
  return { cert, key };
}

/** The PEM certificates of a file, each checked to parse and not to have expired. */
async function readCertificates(path: string, where: TlsConfigSource, setting: string, now = new Date()): Promise<string> {
  const text = await readPem(path, where, setting);
  const blocks = text.match(CERTIFICATE_BLOCK);
  if (!blocks) {
    throw new ConfigError(`"${path}" is not a PEM certificate (expected a "-----BEGIN CERTIFICATE-----" block)`, { file: where.file, key: `${where.key}.${setting}` });
  }
  for (const [index, block] of blocks.entries()) {
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(block);
    } catch (err) {
      throw new ConfigError(`certificate ${index + 1} in "${path}" cannot be read: ${errorMessage(err)}`, { file: where.file, key: `${where.key}.${setting}` }, { cause: err });
    }
    const notAfter = new Date(certificate.validTo);
    if (notAfter.getTime() < now.getTime()) {
      throw new ConfigError(
        `the certificate${blocks.length > 1 ? ` ${index + 1}` : ''} in "${path}" (${certificate.subject.replace(/\n/g, ', ')}) expired on ${notAfter.toISOString()} (notAfter): renew it`,
        { file: where.file, key: `${where.key}.${setting}` },
      );
    }
  }
  return text;
}

async function readPem(path: string, where: TlsConfigSource, setting: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'there is no such file' : code === 'EACCES' ? 'permission denied' : errorMessage(err);
    throw new ConfigError(`cannot read "${path}": ${why}. Fix the path, or make a development CA and certificates with "tributary certs dev"`, { file: where.file, key: `${where.key}.${setting}` }, { cause: err });
  }
}
