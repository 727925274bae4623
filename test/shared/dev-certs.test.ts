import { afterEach, describe, expect, it } from 'vitest';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { connect, createServer } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { CertificateAndKey } from '../../shared/dev-certs.ts';
import { parse as parseYaml } from 'yaml';
import { cloudConfigSchema } from '../../cloud/config.ts';
import { edgeConfigSchema } from '../../edge/config.ts';
import { main as certsMain } from '../../shared/cli/certs.ts';
import { parseConfig } from '../../shared/config.ts';
import { createDevCa, issueCertificate } from '../../shared/dev-certs.ts';
import { loadTlsClientOptions, loadTlsServerOptions } from '../../shared/tls-config.ts';
import { tempDir } from '../helpers/temp-dir.ts';

interface Handshake {
  /** The client's view: did it verify the server, and why not. */
  clientAuthorized: boolean;
  clientError: string | null;
  /** The server's view of the client certificate. */
  serverAuthorized: boolean | null;
  serverError: string | null;
  peerCn: string | null;
}

/** One TLS handshake over loopback: a server that asks for a client certificate (without requiring it), and a client. */
async function handshake(server: CertificateAndKey, serverCa: string, client: { ca?: string; pair?: CertificateAndKey; servername?: string }): Promise<Handshake> {
  const listener = createServer({ cert: server.certPem, key: server.keyPem, ca: serverCa, requestCert: true, rejectUnauthorized: false });
  const serverSide = new Promise<Pick<Handshake, 'serverAuthorized' | 'serverError' | 'peerCn'>>((resolve) => {
    listener.once('secureConnection', (socket: TLSSocket) => {
      const cn = socket.getPeerCertificate().subject?.CN;
      resolve({ serverAuthorized: socket.authorized, serverError: socket.authorizationError ? String(socket.authorizationError) : null, peerCn: typeof cn === 'string' ? cn : null });
      socket.end();
    });
    listener.once('tlsClientError', () => resolve({ serverAuthorized: null, serverError: 'handshake failed', peerCn: null }));
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  try {
    const port = (listener.address() as AddressInfo).port;
    const clientSide = await new Promise<Pick<Handshake, 'clientAuthorized' | 'clientError'>>((resolve) => {
      const socket = connect({
        host: '127.0.0.1',
        port,
        ca: client.ca,
        cert: client.pair?.certPem,
        key: client.pair?.keyPem,
        servername: client.servername,
        rejectUnauthorized: false,
      });
      socket.once('secureConnect', () => {
        resolve({ clientAuthorized: socket.authorized, clientError: socket.authorizationError ? String(socket.authorizationError) : null });
        socket.end();
      });
      socket.once('error', (err) => resolve({ clientAuthorized: false, clientError: err.message }));
    });
    return { ...clientSide, ...(await serverSide) };
  } finally {
    listener.close();
  }
}

describe('dev certificates', () => {
  it('makes a CA and certificates that node:tls accepts on both sides of a handshake', async () => {
    const ca = await createDevCa({ name: 'Test CA' });
    const server = await issueCertificate(ca, { commonName: 'localhost', hosts: ['localhost', '127.0.0.1'], usage: 'server' });
    const device = await issueCertificate(ca, { commonName: 'sensor-1', usage: 'client' });

    const result = await handshake(server, ca.certPem, { ca: ca.certPem, pair: device });

    expect(result).toEqual({ clientAuthorized: true, clientError: null, serverAuthorized: true, serverError: null, peerCn: 'sensor-1' });
  });

  it('puts host names and IP addresses in the subjectAltName, so clients can check the host they dialled', async () => {
    const ca = await createDevCa();
    const server = await issueCertificate(ca, { commonName: 'gateway-7.local', hosts: ['gateway-7.local', '192.168.1.20', '::1'], usage: 'server' });
    const certificate = new X509Certificate(server.certPem);

    expect(certificate.subjectAltName).toMatch(/^DNS:gateway-7\.local, IP Address:192\.168\.1\.20, IP Address:(::1|0:0:0:0:0:0:0:1)$/);
    expect(certificate.checkIP('::1')).toBeTruthy();
    expect(certificate.checkHost('gateway-7.local')).toBe('gateway-7.local');
    expect(certificate.checkIP('192.168.1.20')).toBe('192.168.1.20');
    expect(certificate.checkHost('other.local')).toBeUndefined();
  });

  it('writes PKCS#8 ECDSA P-256 keys and certificates signed by the CA with SHA-256', async () => {
    const ca = await createDevCa();
    const leaf = await issueCertificate(ca, { commonName: 'edge-1', usage: 'client', days: 30 });

    expect(leaf.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n[\s\S]+\n-----END PRIVATE KEY-----\n$/);
    const key = createPrivateKey(leaf.keyPem);
    expect(key.asymmetricKeyType).toBe('ec');
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');

    const caCertificate = new X509Certificate(ca.certPem);
    const certificate = new X509Certificate(leaf.certPem);
    expect(caCertificate.ca).toBe(true);
    expect(certificate.ca).toBe(false);
    expect(certificate.subject).toBe('CN=edge-1');
    expect(certificate.checkIssued(caCertificate)).toBe(true);
    expect(certificate.verify(caCertificate.publicKey)).toBe(true);
    expect(certificate.checkPrivateKey(key)).toBe(true);
    // ecdsa-with-SHA256, 1.2.840.10045.4.3.2, in the signatureAlgorithm of the DER (RFC 5758 §3.2).
    expect(certificate.raw.includes(Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]))).toBe(true);
    const days = (Date.parse(certificate.validTo) - Date.parse(certificate.validFrom)) / 86_400_000;
    expect(Math.round(days)).toBe(30);
  });

  it('makes certificates that are good only for their usage: a server certificate is not accepted as a client one', async () => {
    const ca = await createDevCa();
    const server = await issueCertificate(ca, { commonName: 'localhost', hosts: ['127.0.0.1'], usage: 'server' });
    const serverOnly = await issueCertificate(ca, { commonName: 'sensor-2', usage: 'server' });
    const both = await issueCertificate(ca, { commonName: 'sensor-3', usage: 'both' });

    const refused = await handshake(server, ca.certPem, { ca: ca.certPem, pair: serverOnly });
    expect(refused.serverAuthorized).toBe(false);
    expect(refused.serverError).toMatch(/purpose/i);

    const accepted = await handshake(server, ca.certPem, { ca: ca.certPem, pair: both });
    expect(accepted.serverAuthorized).toBe(true);
  });

  it('makes a new CA each time: a certificate from another CA is not trusted', async () => {
    const ca = await createDevCa();
    const other = await createDevCa();
    const server = await issueCertificate(ca, { commonName: 'localhost', hosts: ['127.0.0.1'], usage: 'server' });
    const stranger = await issueCertificate(other, { commonName: 'sensor-1', usage: 'client' });

    const result = await handshake(server, ca.certPem, { ca: other.certPem, pair: stranger });

    expect(result.clientAuthorized).toBe(false);
    expect(result.serverAuthorized).toBe(false);
    expect(result.peerCn).toBe('sensor-1');
  });

  it('refuses an empty name and a validity that is not a positive number of days', async () => {
    const ca = await createDevCa();
    await expect(issueCertificate(ca, { commonName: ' ', usage: 'client' })).rejects.toThrow(/commonName must be a non-empty name/);
    await expect(issueCertificate(ca, { commonName: 'a\nb', usage: 'client' })).rejects.toThrow(/control characters/);
    await expect(issueCertificate(ca, { commonName: 'ok', usage: 'client', days: 0 })).rejects.toThrow(/days must be a positive number/);
    await expect(createDevCa({ days: -1 })).rejects.toThrow(/days must be a positive number/);
    await expect(issueCertificate({ certPem: ca.certPem, keyPem: 'not a key' }, { commonName: 'ok', usage: 'client' })).rejects.toThrow(/not a PKCS#8 PEM private key/);
  });
});

describe('tributary certs dev', () => {
  const dirs: { remove(): void }[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) dir.remove();
  });

  async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const code = await certsMain(argv, { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } });
    return { code, stdout, stderr };
  }

  function certsDir(): string {
    const dir = tempDir('tributary-certs-cli-');
    dirs.push(dir);
    return join(dir.path, 'certs');
  }

  /** The YAML block printed under a heading, unindented. */
  function snippet(stdout: string, heading: string): unknown {
    const lines = stdout.split('\n');
    const start = lines.findIndex((l) => l.startsWith(heading)) + 1;
    const block: string[] = [];
    for (const line of lines.slice(start)) {
      if (!line.startsWith('  ')) break;
      block.push(line.slice(2));
    }
    return parseYaml(block.join('\n'));
  }

  it('writes the CA, a server certificate and client certificates, keys readable by the owner only', async () => {
    const dir = certsDir();
    const { code, stdout, stderr } = await run(['dev', '--dir', dir, '--hosts', 'localhost,127.0.0.1,gw.local', '--devices', 'sensor-1,sensor-2', '--edges', 'edge-1', '--days', '10']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const names = ['ca', 'server', 'device-sensor-1', 'device-sensor-2', 'edge-edge-1'];
    for (const name of names) {
      expect(statSync(join(dir, `${name}-key.pem`)).mode & 0o777).toBe(0o600);
      // Certificates are public: others may read them (umask permitting), nobody else may write them.
      expect(statSync(join(dir, `${name}.pem`)).mode & 0o622).toBe(0o600);
      expect(stdout).toContain(`${name}.pem`);
    }
    expect(statSync(dir).mode & 0o077).toBe(0);
    const ca = new X509Certificate(readFileSync(join(dir, 'ca.pem')));
    const server = new X509Certificate(readFileSync(join(dir, 'server.pem')));
    expect(server.checkIssued(ca)).toBe(true);
    expect(server.checkHost('gw.local')).toBe('gw.local');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(new X509Certificate(readFileSync(join(dir, 'device-sensor-2.pem'))).subject).toBe('CN=sensor-2');
    expect(new X509Certificate(readFileSync(join(dir, 'edge-edge-1.pem'))).subject).toBe('CN=edge-1');
  });

  it('prints config snippets that the edge and cloud schemas accept and whose files load', async () => {
    const dir = certsDir();
    const { stdout } = await run(['dev', '--dir', dir, '--devices', 'sensor-1', '--edges', 'edge-1']);
    const edge = parseConfig(edgeConfigSchema, snippet(stdout, 'Edge config'));
    const cloud = parseConfig(cloudConfigSchema, snippet(stdout, 'Cloud config'));
    expect(edge.edgeId).toBe('edge-1');
    expect(edge.mqtt.tls).toMatchObject({ port: 8883, caFile: join(dir, 'ca.pem'), clientCertificates: 'optional' });
    expect(edge.uplink.url).toBe('mqtts://localhost:1884');
    expect(cloud.uplink.tls).toMatchObject({ certFile: join(dir, 'server.pem'), clientCertificates: 'optional' });
    await loadTlsServerOptions(edge.mqtt.tls!, { key: 'mqtt.tls' });
    await loadTlsClientOptions(edge.uplink.tls, { key: 'uplink.tls' });
    await loadTlsServerOptions(cloud.uplink.tls!, { key: 'uplink.tls' });
    await loadTlsServerOptions(cloud.http.tls!, { key: 'http.tls' });
    expect(stdout).toContain(`--cert ${join(dir, 'device-sensor-1.pem')}`);
  });

  it('refuses to replace an existing CA without --force, and replaces it with --force', async () => {
    const dir = certsDir();
    expect((await run(['dev', '--dir', dir])).code).toBe(0);
    const first = readFileSync(join(dir, 'ca.pem'), 'utf8');

    const refused = await run(['dev', '--dir', dir, '--devices', 'sensor-1']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('already holds a CA');
    expect(refused.stderr).toContain('--force');
    expect(readFileSync(join(dir, 'ca.pem'), 'utf8')).toBe(first);
    expect(existsSync(join(dir, 'device-sensor-1.pem'))).toBe(false);

    expect((await run(['dev', '--dir', dir, '--force'])).code).toBe(0);
    expect(readFileSync(join(dir, 'ca.pem'), 'utf8')).not.toBe(first);
  });

  it('counts a lone CA key as a CA too', async () => {
    const dir = certsDir();
    expect((await run(['dev', '--dir', dir])).code).toBe(0);
    rmSync(join(dir, 'ca.pem'));
    expect((await run(['dev', '--dir', dir])).code).toBe(1);
  });

  it('explains flags it cannot use, with exit status 2', async () => {
    const dir = certsDir();
    for (const [argv, message] of [
      [[], 'say what to make: "tributary certs dev"'],
      [['prod'], 'unknown certs command "prod"'],
      [['dev', '--dir', dir, '--devices', 'a/b'], '--devices: "a/b" is not a device id'],
      [['dev', '--dir', dir, '--edges', 'edge 1'], '--edges: "edge 1" is not an edge id'],
      [['dev', '--dir', dir, '--devices', 'a,a'], '--devices: "a" is named twice'],
      [['dev', '--dir', dir, '--hosts', 'bad host'], '--hosts: "bad host" is neither a host name nor an IP address'],
      [['dev', '--dir', dir, '--days', '0'], '--days takes a whole number of days'],
      [['dev', '--nope'], 'unknown flag --nope'],
    ] as const) {
      const { code, stderr } = await run([...argv]);
      expect(code, argv.join(' ')).toBe(2);
      expect(stderr).toContain(message);
    }
    expect(existsSync(dir)).toBe(false);
  });

  it('shows its flags and examples with --help', async () => {
    const { code, stdout } = await run(['dev', '--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: tributary certs dev [flags]');
    expect(stdout).toContain('--devices IDS');
    expect(stdout).toContain('tributary certs dev --devices sensor-1,sensor-2 --edges edge-1');
  });
});
