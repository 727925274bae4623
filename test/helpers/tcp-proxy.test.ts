import { createConnection, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Prng } from '../../devices/prng.ts';
import { freePort } from './free-port.ts';
import { TcpProxy } from './tcp-proxy.ts';
import { waitFor } from './wait.ts';

/** A target that echoes what it receives, upper-cased, and keeps its sockets and what they received. */
async function echoServer(): Promise<{ server: Server; port: number; sockets: Socket[]; received: string[] }> {
  const sockets: Socket[] = [];
  const received: string[] = [];
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const i = sockets.push(socket) - 1;
    received[i] = '';
    socket.on('data', (chunk) => {
      received[i] += chunk.toString();
      socket.write(chunk.toString().toUpperCase());
    });
    socket.on('end', () => socket.end());
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, sockets, received };
}

/** A client of the proxy that collects what comes back and notes when its socket closes. */
async function dial(port: number): Promise<{ socket: Socket; text: () => string; closed: Promise<void> }> {
  const socket = createConnection({ host: '127.0.0.1', port });
  let text = '';
  socket.on('data', (chunk) => (text += chunk.toString()));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return { socket, text: () => text, closed };
}

describe('TcpProxy', () => {
  let target: Awaited<ReturnType<typeof echoServer>>;
  let proxy: TcpProxy;

  beforeEach(async () => {
    target = await echoServer();
  });

  afterEach(async () => {
    await proxy?.close();
    await new Promise<void>((resolve) => {
      for (const s of target.sockets) s.destroy();
      target.server.close(() => resolve());
    });
  });

  it('forwards bytes both ways and counts them', async () => {
    proxy = await TcpProxy.start({ target: { port: target.port } });
    const client = await dial(proxy.port);
    client.socket.write('hello');
    await waitFor('the echo', () => client.text() === 'HELLO', 5000);
    expect(target.received[0]).toBe('hello');
    expect(proxy.stats).toMatchObject({ connections: 1, bytesUp: 5, bytesDown: 5, cuts: 0 });
    expect(proxy.url).toBe(`mqtt://127.0.0.1:${proxy.port}`);
    client.socket.destroy();
  });

  it('keeps the order of chunks under a random per-chunk delay', async () => {
    const prng = new Prng(7);
    proxy = await TcpProxy.start({ target: { port: target.port }, delayMs: () => prng.uniform(0, 15) });
    const client = await dial(proxy.port);
    const sent = Array.from({ length: 60 }, (_, i) => `<${i}>`);
    for (const part of sent) {
      client.socket.write(part);
      await new Promise((r) => setTimeout(r, 1)); // separate chunks, so that each draws its own delay
    }
    await waitFor('every chunk echoed', () => client.text().length === sent.join('').length, 5000);
    expect(target.received[0]).toBe(sent.join(''));
    expect(client.text()).toBe(sent.join('').toUpperCase());
    client.socket.destroy();
  });

  it('passes a half-close on after the data before it', async () => {
    proxy = await TcpProxy.start({ target: { port: target.port }, delayMs: 20 });
    const client = await dial(proxy.port);
    client.socket.end('bye');
    await client.closed;
    expect(target.received[0]).toBe('bye');
    expect(client.text()).toBe('BYE');
  });

  it('cut() destroys every open connection on both sides, and later connections work', async () => {
    proxy = await TcpProxy.start({ target: { port: target.port } });
    const a = await dial(proxy.port);
    const b = await dial(proxy.port);
    await waitFor('both connections at the target', () => target.sockets.length === 2, 5000);
    expect(proxy.open).toBe(2);
    expect(proxy.cut()).toBe(2);
    await Promise.all([a.closed, b.closed]);
    await waitFor('the target sockets closed', () => target.sockets.every((s) => s.destroyed), 5000);
    expect(proxy.stats).toMatchObject({ cuts: 1, connectionsCut: 2 });
    expect(proxy.open).toBe(0);

    const c = await dial(proxy.port);
    c.socket.write('again');
    await waitFor('the echo after the cut', () => c.text() === 'AGAIN', 5000);
    c.socket.destroy();
  });

  it('closes the client connection when the target refuses', async () => {
    const nowhere = await freePort();
    proxy = await TcpProxy.start({ target: { port: nowhere } });
    const client = await dial(proxy.port);
    await client.closed;
    expect(proxy.open).toBe(0);
  });

  it('holds connections without forwarding while partitioned, and drops them on heal()', async () => {
    proxy = await TcpProxy.start({ target: { port: target.port } });
    const before = await dial(proxy.port);
    proxy.partition();
    await before.closed;
    const held = await dial(proxy.port);
    held.socket.write('lost');
    await waitFor('the held connection accepted', () => proxy.open === 1, 5000);
    expect(proxy.partitioned).toBe(true);
    expect(target.sockets).toHaveLength(1); // only the connection from before the partition reached the target
    expect(target.received[0]).toBe('');

    proxy.heal();
    await held.closed;
    expect(held.text()).toBe('');
    const after = await dial(proxy.port);
    after.socket.write('back');
    await waitFor('the echo after heal()', () => after.text() === 'BACK', 5000);
    after.socket.destroy();
  });

  it('flap() cuts again and again at random moments until steady()', async () => {
    const prng = new Prng(3);
    proxy = await TcpProxy.start({ target: { port: target.port }, random: () => prng.next() });
    const cuts: number[] = [];
    proxy.flap(10, 30, (n) => cuts.push(n));
    const client = await dial(proxy.port);
    await client.closed;
    await waitFor('three cuts', () => proxy.stats.cuts >= 3, 5000);
    proxy.steady();
    const count = proxy.stats.cuts;
    await new Promise((r) => setTimeout(r, 100));
    expect(proxy.stats.cuts).toBe(count);
    expect(cuts).toHaveLength(count);
    expect(cuts.reduce((a, b) => a + b, 0)).toBe(proxy.stats.connectionsCut);
    expect(proxy.stats.connectionsCut).toBeGreaterThanOrEqual(1);
  });
});
