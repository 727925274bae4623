import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as connectTcp, createServer as createTcpServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { connect, createServer } from 'node:tls';
import type { TLSSocket, TlsOptions } from 'node:tls';
import { writeDevCertificates } from '../../shared/cli/certs.ts';
import { createDevCa, issueCertificate } from '../../shared/dev-certs.ts';
import { ConfigError } from '../../shared/errors.ts';
import type { TlsServerConfig } from '../../shared/tls-config.ts';
import { loadTlsClientOptions, loadTlsServerOptions, verifiedPeerName } from '../../shared/tls-config.ts';
import { tempDir } from '../helpers/temp-dir.ts';

const where = { file: 'edge.yaml', key: 'mqtt.tls' };

async function configError(promise: Promise<unknown>): Promise<ConfigError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('TLS config loading', () => {
  const dir = tempDir('tributary-tls-config-');
  const file = (name: string): string => join(dir.path, name);
  let server: TlsServerConfig;

  beforeAll(async () => {
    await writeDevCertificates({ dir: dir.path, hosts: ['localhost', '127.0.0.1'], devices: ['sensor-1'], edges: [], days: 30, force: false });
    server = { certFile: file('server.pem'), keyFile: file('server-key.pem'), caFile: file('ca.pem'), clientCertificates: 'optional' };
    const other = await createDevCa({ name: 'Other CA' });
    const stranger = await issueCertificate(other, { commonName: 'sensor-1', usage: 'client' });
    writeFileSync(file('stranger.pem'), stranger.certPem);
    writeFileSync(file('stranger-key.pem'), stranger.keyPem);
    const ca = { certPem: readFileSync(file('ca.pem'), 'utf8'), keyPem: readFileSync(file('ca-key.pem'), 'utf8') };
    const expired = await issueCertificate(ca, { commonName: 'localhost', hosts: ['127.0.0.1'], usage: 'server', days: 1, now: new Date('2020-01-01T00:00:00Z') });
    writeFileSync(file('expired.pem'), expired.certPem);
    writeFileSync(file('expired-key.pem'), expired.keyPem);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(file('encrypted-key.pem'), privateKey.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw' }));
    writeFileSync(file('not-pem.txt'), 'hello\n');
  });

  afterAll(() => dir.remove());

  describe('loadTlsServerOptions', () => {
    it('reads the certificate, key and CA, and asks for client certificates without requiring them when optional', async () => {
      const options = await loadTlsServerOptions(server, where);
      expect(options.cert).toContain('-----BEGIN CERTIFICATE-----');
      expect(options.key).toContain('-----BEGIN PRIVATE KEY-----');
      expect(options.ca).toContain('-----BEGIN CERTIFICATE-----');
      expect(options).toMatchObject({ requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' });
    });

    it('rejects untrusted client certificates in the handshake only when they are required', async () => {
      expect(await loadTlsServerOptions({ ...server, clientCertificates: 'required' }, where)).toMatchObject({ requestCert: true, rejectUnauthorized: true });
      const none = await loadTlsServerOptions({ certFile: server.certFile, keyFile: server.keyFile, clientCertificates: 'none' }, where);
      expect(none).toMatchObject({ requestCert: false, rejectUnauthorized: false });
      expect(none.ca).toBeUndefined();
    });

    it('names the key and the config file when a file is missing', async () => {
      const err = await configError(loadTlsServerOptions({ ...server, certFile: file('missing.pem') }, where));
      expect(err.key).toBe('mqtt.tls.certFile');
      expect(err.file).toBe('edge.yaml');
      expect(err.message).toContain('edge.yaml: mqtt.tls.certFile: ');
      expect(err.message).toContain(`cannot read "${file('missing.pem')}": there is no such file`);
      expect(err.message).toContain('tributary certs dev');

      expect((await configError(loadTlsServerOptions({ ...server, keyFile: file('missing.pem') }, where))).key).toBe('mqtt.tls.keyFile');
      expect((await configError(loadTlsServerOptions({ ...server, caFile: file('missing.pem') }, where))).key).toBe('mqtt.tls.caFile');
    });

    it('refuses files that are not PEM certificates or keys', async () => {
      const cert = await configError(loadTlsServerOptions({ ...server, certFile: file('not-pem.txt') }, where));
      expect(cert.key).toBe('mqtt.tls.certFile');
      expect(cert.message).toContain('is not a PEM certificate');
      const key = await configError(loadTlsServerOptions({ ...server, keyFile: file('server.pem') }, where));
      expect(key.key).toBe('mqtt.tls.keyFile');
      expect(key.message).toContain('is not a PEM private key');
      const ca = await configError(loadTlsServerOptions({ ...server, caFile: file('server-key.pem') }, where));
      expect(ca.key).toBe('mqtt.tls.caFile');
    });

    it('refuses a key that does not belong to the certificate', async () => {
      const err = await configError(loadTlsServerOptions({ ...server, keyFile: file('device-sensor-1-key.pem') }, where));
      expect(err.key).toBe('mqtt.tls.keyFile');
      expect(err.message).toContain(`the private key in "${file('device-sensor-1-key.pem')}" does not belong to the certificate in "${file('server.pem')}"`);
    });

    it('refuses an encrypted key, saying how to decrypt it', async () => {
      const err = await configError(loadTlsServerOptions({ ...server, keyFile: file('encrypted-key.pem') }, where));
      expect(err.key).toBe('mqtt.tls.keyFile');
      expect(err.message).toContain('is an encrypted private key');
      expect(err.message).toContain('openssl pkey');
    });

    it('refuses an expired certificate, naming its notAfter date', async () => {
      const err = await configError(loadTlsServerOptions({ ...server, certFile: file('expired.pem'), keyFile: file('expired-key.pem') }, where));
      expect(err.key).toBe('mqtt.tls.certFile');
      expect(err.message).toContain('expired on 2020-01-02T00:00:00.000Z (notAfter)');
    });

    it('refuses client certificates without a CA to check them against', async () => {
      for (const clientCertificates of ['optional', 'required'] as const) {
        const err = await configError(loadTlsServerOptions({ certFile: server.certFile, keyFile: server.keyFile, clientCertificates }, where));
        expect(err.key).toBe('mqtt.tls.caFile');
        expect(err.message).toContain(`clientCertificates is "${clientCertificates}" but no caFile is set`);
      }
    });
  });

  describe('loadTlsClientOptions', () => {
    const clientWhere = { file: 'edge.yaml', key: 'uplink.tls' };

    it('reads the CA and the client certificate, and always verifies the server', async () => {
      const options = await loadTlsClientOptions({ caFile: file('ca.pem'), certFile: file('device-sensor-1.pem'), keyFile: file('device-sensor-1-key.pem'), serverName: 'localhost' }, clientWhere);
      expect(options.ca).toContain('-----BEGIN CERTIFICATE-----');
      expect(options.cert).toContain('-----BEGIN CERTIFICATE-----');
      expect(options.key).toContain('-----BEGIN PRIVATE KEY-----');
      expect(options).toMatchObject({ servername: 'localhost', rejectUnauthorized: true });
      expect(await loadTlsClientOptions({}, clientWhere)).toEqual({ rejectUnauthorized: true, minVersion: 'TLSv1.2' });
    });

    it('refuses a certificate without its key, and a key that does not belong to it', async () => {
      const err = await configError(loadTlsClientOptions({ certFile: file('device-sensor-1.pem') }, clientWhere));
      expect(err.key).toBe('uplink.tls.keyFile');
      expect(err.message).toContain('needs both certFile and keyFile');
      expect((await configError(loadTlsClientOptions({ keyFile: file('device-sensor-1-key.pem') }, clientWhere))).key).toBe('uplink.tls.certFile');
      const mismatch = await configError(loadTlsClientOptions({ certFile: file('device-sensor-1.pem'), keyFile: file('server-key.pem') }, clientWhere));
      expect(mismatch.key).toBe('uplink.tls.keyFile');
      expect((await configError(loadTlsClientOptions({ caFile: file('nope.pem') }, clientWhere))).message).toMatch(/^edge\.yaml: uplink\.tls\.caFile: cannot read/);
    });
  });

  describe('verifiedPeerName', () => {
    /** A real TLS listener with the loaded options: resolves with verifiedPeerName of each connection. */
    async function peerNameSeenBy(options: TlsOptions, client: { cert?: string; key?: string }): Promise<string | undefined> {
      const listener = createServer(options);
      const seen = new Promise<string | undefined>((resolve, reject) => {
        listener.once('secureConnection', (socket: TLSSocket) => {
          resolve(verifiedPeerName(socket));
          socket.end();
        });
        listener.once('tlsClientError', reject);
      });
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
      const socket = connect({ host: '127.0.0.1', port: (listener.address() as AddressInfo).port, ca: readFileSync(file('ca.pem'), 'utf8'), servername: 'localhost', ...client });
      socket.on('error', () => {});
      try {
        return await seen;
      } finally {
        socket.destroy();
        listener.close();
      }
    }

    it('gives the CN of a client certificate that chains to the CA', async () => {
      const options = await loadTlsServerOptions(server, where);
      const name = await peerNameSeenBy(options, { cert: readFileSync(file('device-sensor-1.pem'), 'utf8'), key: readFileSync(file('device-sensor-1-key.pem'), 'utf8') });
      expect(name).toBe('sensor-1');
    });

    it('gives nothing for an untrusted certificate with the same CN, or for none', async () => {
      const options = await loadTlsServerOptions(server, where);
      expect(await peerNameSeenBy(options, { cert: readFileSync(file('stranger.pem'), 'utf8'), key: readFileSync(file('stranger-key.pem'), 'utf8') })).toBeUndefined();
      expect(await peerNameSeenBy(options, {})).toBeUndefined();
    });

    it('gives nothing for what is not a TLS socket', async () => {
      expect(verifiedPeerName(undefined)).toBeUndefined();
      expect(verifiedPeerName(null)).toBeUndefined();
      expect(verifiedPeerName({ authorized: true })).toBeUndefined();
      const tcp = createTcpServer();
      await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
      const socket: Socket = connectTcp((tcp.address() as AddressInfo).port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      expect(verifiedPeerName(socket)).toBeUndefined();
      socket.destroy();
      tcp.close();
    });
  });
});
