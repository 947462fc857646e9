import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { countUpgrades } from '../../src/metrics/upgrade';

describe('upgrade listeners stay the application’s own', () => {
  const seen: [string | undefined, number][] = [];
  before(() =>
    countUpgrades(
      (request, status) => seen.push([request.url, status]),
      () => false,
    ),
  );

  it('listeners() shows the function added, and removeListener removes it', () => {
    const server = createServer();
    const listener = () => {};
    server.on('upgrade', listener);
    server.prependListener('upgrade', listener);
    assert.deepEqual(server.listeners('upgrade'), [listener, listener]);
    server.removeListener('upgrade', listener);
    server.off('upgrade', listener);
    assert.equal(server.listenerCount('upgrade'), 0);
  });

  it('once() still fires once', () => {
    const server = createServer();
    let calls = 0;
    server.once('upgrade', () => calls++);
    server.emit('upgrade', {} as IncomingMessage, { once() {}, on() {} }, Buffer.alloc(0));
    server.emit('upgrade', {} as IncomingMessage, { once() {}, on() {} }, Buffer.alloc(0));
    assert.equal(calls, 1);
    assert.equal(server.listenerCount('upgrade'), 0);
  });

  it('counts an upgrade once, with the status line of its first write', () => {
    const server = createServer();
    const socket = new PassThrough();
    server.on('upgrade', (_req, s: PassThrough) =>
      s.write('HTTP/1.1 101 Switching Protocols\r\n\r\n'),
    );
    server.on('upgrade', (_req, s: PassThrough) => s.write('more'));
    server.emit('upgrade', { url: '/ws', method: 'GET' }, socket, Buffer.alloc(0));
    assert.deepEqual(seen, [['/ws', 101]]);
    assert.equal(Object.hasOwn(socket, 'write'), false, 'the socket is given back its own write');
    socket.destroy();
  });

  it('an upgrade handled by a once() listener is counted', () => {
    seen.length = 0;
    const server = createServer();
    const socket = new PassThrough();
    server.once('upgrade', (_req, s: PassThrough) =>
      s.write('HTTP/1.1 101 Switching Protocols\r\n\r\n'),
    );
    server.emit('upgrade', { url: '/once', method: 'GET' }, socket, Buffer.alloc(0));
    assert.deepEqual(seen, [['/once', 101]]);
    assert.equal(server.listenerCount('upgrade'), 0, 'the once listener removed itself');
    socket.destroy();
  });

  it('once()/prependOnceListener() listeners: listeners() and removeListener see the function', () => {
    const server = createServer();
    const listener = () => {};
    server.once('upgrade', listener);
    server.prependOnceListener('upgrade', listener);
    assert.deepEqual(server.listeners('upgrade'), [listener, listener]);
    server.removeListener('upgrade', listener);
    server.removeListener('upgrade', listener);
    assert.equal(server.listenerCount('upgrade'), 0);
  });

  it('other events are untouched', () => {
    const server = createServer();
    const listener = () => {};
    server.on('request', listener);
    assert.equal(server.rawListeners('request').at(-1), listener);
  });
});
