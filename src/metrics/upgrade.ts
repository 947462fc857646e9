/**
 * HTTP/1.1 Upgrade requests (WebSocket handshakes). Node does not emit 'request' for them when
 * the server has an 'upgrade' listener: it hands the listener the request and the raw socket, and
 * the application (or `ws`, socket.io) writes the answer itself, `101 Switching Protocols` or a
 * refusal such as `401`. So neither the request diagnostics channel nor a response's close ever
 * sees them.
 *
 * The 'upgrade' listeners are wrapped when they are added (`server.on('upgrade', …)`, `once`
 * included), which costs ordinary requests nothing. On an upgrade, the socket's first `write`/`end` is read for
 * its status line, once; a socket that closes first is 499 (the client went away) or 500.
 */
import http, { type IncomingMessage, type Server } from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { warnOnce } from '../warnings';
import { unansweredStatus } from './outcome';

export type UpgradeRecorder = (request: IncomingMessage, status: number, seconds: number) => void;

type Listener = (...args: unknown[]) => unknown;
type AddListener = (this: Server, event: string | symbol, listener: Listener) => Server;
type Patchable = Record<
  'on' | 'addListener' | 'prependListener' | 'once' | 'prependOnceListener',
  AddListener
>;

const kCounted = Symbol('datalab.otel.upgradeCounted');
const kPatched = Symbol('datalab.otel.upgradePatched');

let recorder: UpgradeRecorder | undefined;
let ownServer: (server: Server) => boolean = () => false;

/** Installs the wrapping once per process; later calls only replace the recorder. */
export function countUpgrades(
  record: UpgradeRecorder,
  isOwnServer: (server: Server) => boolean,
): void {
  recorder = record;
  ownServer = isOwnServer;
  patch(http.Server.prototype as unknown as Patchable);
  // https.Server does not inherit from http.Server.
  patch(https.Server.prototype as unknown as Patchable);
}

function patch(proto: Patchable & { [kPatched]?: true }): void {
  if (proto[kPatched]) return;
  proto[kPatched] = true;
  const plain = { on: proto.on, prependListener: proto.prependListener };
  for (const name of ['on', 'addListener', 'prependListener'] as const) {
    const original = proto[name];
    proto[name] = function (this: Server, event: string | symbol, listener: Listener) {
      // A `once` wrapper (EventEmitter's own, from a `once` made before the patch) removes itself
      // by identity: left alone.
      if (
        event === 'upgrade' &&
        typeof listener === 'function' &&
        (listener as { listener?: unknown }).listener === undefined
      ) {
        return original.call(this, event, counted(listener));
      }
      // biome-ignore lint/complexity/noArguments: forwards whatever the caller passed
      return original.apply(this, arguments as unknown as [string | symbol, Listener]);
    };
  }
  // `once('upgrade', …)`: one wrapper that counts, removes itself before it calls the
  // application's listener (as EventEmitter's own does), and that removeListener and
  // listeners('upgrade') see as the application's function.
  for (const [name, add] of [
    ['once', plain.on],
    ['prependOnceListener', plain.prependListener],
  ] as const) {
    const original = proto[name];
    proto[name] = function (this: Server, event: string | symbol, listener: Listener) {
      if (event !== 'upgrade' || typeof listener !== 'function') {
        // biome-ignore lint/complexity/noArguments: forwards whatever the caller passed
        return original.apply(this, arguments as unknown as [string | symbol, Listener]);
      }
      const count = counted(listener);
      let fired = false;
      const once = function (this: Server) {
        this.removeListener(event, once);
        if (fired) return undefined;
        fired = true;
        // biome-ignore lint/complexity/noArguments: forwards whatever Node passed
        return count.apply(this, arguments as unknown as unknown[]);
      };
      (once as { listener?: Listener }).listener = listener;
      // The unpatched on/prependListener: `once` is already counting.
      return add.call(this, event, once);
    };
  }
}

function counted(listener: Listener): Listener {
  const wrapped = function (this: Server, request: unknown, socket: unknown) {
    try {
      if (!ownServer(this)) track(request as IncomingMessage, socket as Duplex);
    } catch (err) {
      warnOnce(
        'DLOTEL_INTERNAL_ERROR',
        'upgrade',
        `upgrade metrics failed and were skipped: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    // biome-ignore lint/complexity/noArguments: forwards whatever Node passed
    return listener.apply(this, arguments as unknown as unknown[]);
  };
  // removeListener('upgrade', listener) and listeners('upgrade') see the application's function.
  (wrapped as { listener?: Listener }).listener = listener;
  return wrapped;
}

function track(request: IncomingMessage & { [kCounted]?: true }, socket: Duplex): void {
  // Several listeners may see the same upgrade (one WebSocket server per path): counted once.
  if (request[kCounted]) return;
  request[kCounted] = true;
  const startedAt = performance.now();
  const ownWrite = Object.hasOwn(socket, 'write');
  const ownEnd = Object.hasOwn(socket, 'end');
  const write = socket.write;
  const end = socket.end;
  let done = false;
  const finish = (status: number) => {
    if (done) return;
    done = true;
    if (ownWrite) socket.write = write;
    else delete (socket as Partial<Duplex>).write;
    if (ownEnd) socket.end = end;
    else delete (socket as Partial<Duplex>).end;
    socket.removeListener('close', onClose);
    recorder?.(request, status, (performance.now() - startedAt) / 1000);
  };
  const onClose = () => finish(unansweredStatus(socket));
  socket.once('close', onClose);
  socket.write = function (this: Duplex, chunk: unknown) {
    finish(statusLine(chunk));
    // biome-ignore lint/complexity/noArguments: forwards whatever the caller passed
    return write.apply(this, arguments as unknown as Parameters<Duplex['write']>);
  } as Duplex['write'];
  socket.end = function (this: Duplex, chunk?: unknown) {
    if (typeof chunk !== 'function' && chunk !== undefined && chunk !== null) {
      finish(statusLine(chunk));
    }
    // biome-ignore lint/complexity/noArguments: forwards whatever the caller passed
    return end.apply(this, arguments as unknown as Parameters<Duplex['end']>);
  } as Duplex['end'];
}

/** The status of `HTTP/1.1 101 Switching Protocols…`; 500 for anything that is not one. */
function statusLine(chunk: unknown): number {
  const head =
    typeof chunk === 'string'
      ? chunk.slice(0, 12)
      : chunk instanceof Uint8Array
        ? Buffer.from(chunk.buffer, chunk.byteOffset, Math.min(12, chunk.byteLength)).toString(
            'latin1',
          )
        : '';
  const match = /^HTTP\/1\.[01] ([1-5]\d\d)$/.exec(head);
  return match ? Number(match[1]) : 500;
}
