/**
 * The distro's own HTTP server: `/metrics` and the health endpoints. It never holds the process
 * open, never makes the application fail, and its requests are neither counted nor traced (see
 * isOwnServer).
 *
 * Only the process that serves the application answers for it (docs/metrics.md, "Which process
 * answers"):
 * - the port is bound when the process starts listening on a port of its own (or, as a
 *   `cluster` primary, forks its first worker); a process that listens on nothing (a queue
 *   worker, a job) binds it DATALAB_MANAGEMENT_IDLE_BIND_MS after start, unless a child process
 *   it started is still running: a launcher (nest start, nodemon, an npm script wrapper) that
 *   only spawns the real application never takes the port;
 * - a process that finds the port held by an ancestor that serves nothing (a launcher that bound
 *   it before spawning the application) asks that ancestor to hand it over;
 * - when the application itself listens on the port, the distro gives it up (one warning);
 * - a port taken at start-up is retried in the background until it frees (one warning).
 */

import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import { installPrimary, processRole } from './cluster';
import { warn } from './warnings';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface RouteOptions {
  /** Served without the management token (Kubernetes probes cannot send one easily). */
  readonly open?: boolean;
}

/** `Authorization: Bearer <token>`, compared in constant time. */
export function hasBearerToken(header: string | undefined, expected: string): boolean {
  if (header === undefined) return false;
  const m = /^Bearer[ \t]+(\S+)\s*$/i.exec(header);
  if (!m) return false;
  // Hashing first gives equal lengths, so timingSafeEqual leaks nothing about the length.
  const a = createHash('sha256')
    .update(m[1] as string)
    .digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export interface ManagementOptions {
  /**
   * A process that listens on no port binds this long after start; 0 binds at start.
   * Default 5000 (DATALAB_MANAGEMENT_IDLE_BIND_MS).
   */
  readonly idleBindMs?: number;
}

/** Asked by a descendant process that found the port held by this one. */
export const HANDOVER_PATH = '/-/handover';
const HANDOVER_HEADER = 'x-datalab-handover';

type State =
  /** Not bound (yet): waiting for the process to serve, or for a retry. */
  | 'idle'
  | 'binding'
  | 'listening'
  /** Given up for good: the application took the port, or a descendant, or shut down. */
  | 'yielded'
  | 'handed-over'
  | 'closed'
  /** A cluster worker: the primary answers for it. */
  | 'off';

const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 10_000;

export class ManagementServer {
  readonly server: Server;
  private readonly routes = new Map<string, { handler: RouteHandler; open: boolean }>();
  private state: State = 'idle';
  private port: number;
  /** The process listens on a port of its own (or forked cluster workers). */
  private serving = false;
  private readonly children = new Set<ChildProcessLike>();
  private idleTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_FIRST_MS;
  /** A handover request is under way. */
  private asking = false;
  /** Quick silent retries while an ancestor releases the port it handed over. */
  private handoverGrace = 0;
  private warnedUnavailable = false;
  private readonly idleBindMs: number;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly host: string,
    port: number,
    private readonly token?: string,
    options: ManagementOptions = {},
  ) {
    this.port = port;
    this.idleBindMs = options.idleBindMs ?? 5_000;
    this.server = createServer((req, res) => this.handle(req, res));
    // Probes and scrapers keep connections alive between requests. The listening server is
    // unref'd, but accepted sockets would still hold a draining application open.
    this.server.on('connection', (socket) => socket.unref());
    this.server.on('listening', () => {
      if (this.state === 'binding') {
        this.state = 'listening';
        this.retryMs = RETRY_FIRST_MS;
      } else this.server.close();
    });
    this.server.on('error', (err: NodeJS.ErrnoException) => this.onError(err));
  }

  /** The port this process binds (DATALAB_METRICS_PORT, plus the instance under PM2). */
  get boundPort(): number {
    return this.port;
  }

  get isListening(): boolean {
    return this.state === 'listening';
  }

  route(path: string, handler: RouteHandler, options: RouteOptions = {}): this {
    this.routes.set(path, { handler, open: options.open === true });
    return this;
  }

  /** Arms the binding rules; the port itself is bound when the process serves (see above). */
  start(): void {
    if (this.state !== 'idle' || this.unsubscribe !== undefined) return;
    const role = processRole();
    if (role.kind === 'cluster-worker' || role.kind === 'manager') {
      this.state = 'off';
      return;
    }
    if (role.kind === 'instance') {
      this.port += role.offset;
      if (this.port > 65_535) {
        this.state = 'off';
        warn(
          'DLOTEL_PORT_UNAVAILABLE',
          `management server of instance ${role.offset} would listen on port ${this.port}, past 65535; ` +
            '/metrics and /health are not served. Lower DATALAB_METRICS_PORT',
        );
        return;
      }
    } else {
      installPrimary(() => {
        this.serving = true;
        if (this.state === 'idle' && !this.waiting) this.bind();
      });
    }
    this.unsubscribe = subscribe(
      (server, options) => this.onListen(server, options),
      (child) => this.onChild(child),
    );
    if (this.idleBindMs === 0) this.bind();
    else this.armIdle();
  }

  /** Resolves once closed; idle keep-alive sockets (Prometheus keeps one) are closed too. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      const wasListening = this.state === 'listening' || this.state === 'binding';
      this.stop('closed');
      if (!wasListening) return resolve();
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  private stop(state: State): void {
    this.state = state;
    clearTimeout(this.idleTimer);
    clearTimeout(this.retryTimer);
    this.idleTimer = this.retryTimer = undefined;
    this.unsubscribe?.();
  }

  /** A retry or a handover request will bind (or warn): nothing else should. */
  private get waiting(): boolean {
    return this.retryTimer !== undefined || this.asking;
  }

  private bind(): void {
    if (this.state !== 'idle') return;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.state = 'binding';
    this.server.listen(this.port, this.host);
    this.server.unref();
  }

  private armIdle(): void {
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.state !== 'idle' || this.waiting) return;
      // A launcher waits for the application it started; when that exits (and nothing
      // else runs), the launcher is the process left to answer.
      for (const child of this.children) {
        // A child that never started (spawn failed) may emit no 'exit'.
        if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) {
          this.children.delete(child);
        }
      }
      if (this.children.size > 0) this.armIdle();
      else this.bind();
    }, this.idleBindMs);
    this.idleTimer.unref();
  }

  /** Any server of the process (not ours) starts listening: synchronously, before its bind. */
  private onListen(server: unknown, options: ListenOptions | undefined): void {
    if (server === this.server) return;
    const port = options?.port === undefined ? undefined : Number(options.port);
    if (port === this.port && port !== 0) {
      this.yieldToApplication();
      return;
    }
    this.serving = true;
    if (this.state === 'idle' && !this.waiting) this.bind();
  }

  /**
   * The application asked for the port the distro holds: it gets it. Closing the listening
   * handle frees the port synchronously, before the application's bind runs.
   */
  private yieldToApplication(): void {
    if (this.state === 'yielded' || this.state === 'closed' || this.state === 'off') return;
    const held = this.state === 'listening' || this.state === 'binding';
    this.stop('yielded');
    if (held) {
      this.server.close();
      this.server.closeAllConnections();
    }
    warn(
      'DLOTEL_PORT_YIELDED',
      `the application listens on port ${this.port}, the management port; the distro leaves it to ` +
        'the application and does not serve /metrics and /health. Set DATALAB_METRICS_PORT to another port',
    );
  }

  private onChild(child: ChildProcessLike): void {
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
  }

  private onError(err: NodeJS.ErrnoException): void {
    if (this.state !== 'binding') return;
    this.state = 'idle';
    if (err.code === 'EADDRINUSE') {
      if (this.handoverGrace > 0) {
        this.handoverGrace--;
        this.scheduleRetry(100);
        return;
      }
      // Held maybe by a launcher that bound it before it spawned this process: ask, at every
      // attempt (a launcher busy compiling may not answer the first time).
      if (distroAncestor()) {
        this.asking = true;
        void askHandover(this.host, this.port, this.token).then((granted) => {
          this.asking = false;
          if (this.state !== 'idle') return;
          if (granted) {
            this.handoverGrace = 5;
            this.bind();
          } else this.unavailable(err);
        });
        return;
      }
    }
    this.unavailable(err);
  }

  private unavailable(err: NodeJS.ErrnoException): void {
    const retry = err.code === 'EADDRINUSE';
    if (!this.warnedUnavailable) {
      this.warnedUnavailable = true;
      warn(
        'DLOTEL_PORT_UNAVAILABLE',
        `management server cannot listen on ${this.host}:${this.port} (${err.code ?? err.message}); ` +
          (retry
            ? '/metrics and /health are served once the port frees (retrying in the background). '
            : '/metrics and /health are not served. ') +
          'Set DATALAB_METRICS_PORT to a free port',
      );
    }
    if (retry) {
      this.scheduleRetry(this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    } else this.stop('closed');
  }

  private scheduleRetry(ms: number): void {
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.bind();
    }, ms);
    this.retryTimer.unref();
  }

  /** A descendant found the port held by this process: give it up if this process serves nothing. */
  private handover(req: IncomingMessage, res: ServerResponse): void {
    const pid = Number(req.headers[HANDOVER_HEADER]);
    const granted =
      !this.serving && this.state === 'listening' && Number.isSafeInteger(pid) && pid > 1
        ? isDescendant(pid, this.children)
        : false;
    if (!granted) {
      res.writeHead(409, { 'content-type': 'text/plain; charset=utf-8' }).end('Conflict\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
    res.end('handed over\n', () => {
      this.stop('handed-over');
      this.server.close();
      this.server.closeAllConnections();
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const route =
      path === HANDOVER_PATH
        ? {
            handler: (rq: IncomingMessage, rs: ServerResponse) => this.handover(rq, rs),
            open: false,
          }
        : this.routes.get(path);
    if (route === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not Found\n');
      return;
    }
    if (
      this.token !== undefined &&
      !route.open &&
      !hasBearerToken(req.headers.authorization, this.token)
    ) {
      res
        .writeHead(401, {
          'www-authenticate': 'Bearer realm="datalab-otel management"',
          'content-type': 'text/plain; charset=utf-8',
        })
        .end('Unauthorized\n');
      return;
    }
    const { handler } = route;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    Promise.resolve()
      .then(() => handler(req, res))
      .catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`internal error: ${err instanceof Error ? err.message : 'unknown'}\n`);
      });
  }
}

interface ListenOptions {
  readonly port?: number | string;
}

interface ChildProcessLike {
  readonly pid?: number;
  readonly exitCode: number | null;
  readonly signalCode: string | null;
  once(event: 'exit', listener: () => void): unknown;
}

/**
 * Node's diagnostics channels: `net.server.listen` (a server starts listening, published before
 * its bind) and `child_process` (a child process is created). Subscribing patches nothing.
 */
function subscribe(
  onListen: (server: unknown, options: ListenOptions | undefined) => void,
  onChild: (child: ChildProcessLike) => void,
): () => void {
  const dc = require('node:diagnostics_channel') as typeof import('node:diagnostics_channel');
  const guard =
    <T>(fn: (message: T) => void) =>
    (message: unknown) => {
      try {
        fn(message as T);
      } catch {
        // Deciding where to listen must never break the application's own listen or spawn.
      }
    };
  const noop = () => {};
  const listen = {
    start: noop,
    end: noop,
    asyncStart: guard<{ server?: unknown; options?: ListenOptions }>((m) =>
      onListen(m.server, m.options),
    ),
    asyncEnd: noop,
    error: noop,
  };
  const child = guard<{ process?: ChildProcessLike }>((m) => {
    if (m.process !== undefined) onChild(m.process);
  });
  let channel: ReturnType<typeof dc.tracingChannel> | undefined;
  try {
    channel = dc.tracingChannel('net.server.listen');
    channel.subscribe(listen);
  } catch {
    channel = undefined;
  }
  dc.subscribe('child_process', child);
  return () => {
    channel?.unsubscribe(listen);
    dc.unsubscribe('child_process', child);
  };
}

/** Whether `pid` runs below this process: its parent chain (Linux /proc), else a direct child. */
export function isDescendant(pid: number, children: Iterable<ChildProcessLike>): boolean {
  for (const child of children) if (child.pid === pid) return true;
  let current = pid;
  for (let depth = 0; depth < 64; depth++) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${current}/stat`, 'utf8');
    } catch {
      return false;
    }
    // `pid (comm) state ppid …`: comm may contain spaces and parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === process.pid) return true;
    if (!Number.isSafeInteger(ppid) || ppid <= 1) return false;
    current = ppid;
  }
  return false;
}

let ancestorRunsDistro: boolean | undefined;

/**
 * Whether a process above this one loaded the preload too (its command line or NODE_OPTIONS
 * names it): only such a process may hold the port and hand it over. Read from /proc once;
 * elsewhere assumed, at the cost of one local request when the port is taken.
 */
function distroAncestor(): boolean {
  if (ancestorRunsDistro !== undefined) return ancestorRunsDistro;
  const markers = [
    '@datalab/otel/register',
    resolve(__dirname, '..', 'register.mjs'),
    resolve(__dirname, '..', 'register.js'),
  ];
  ancestorRunsDistro = false;
  let pid = process.ppid;
  for (let depth = 0; depth < 32 && pid > 1; depth++) {
    let text: string;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      text = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
      try {
        text += readFileSync(`/proc/${pid}/environ`, 'latin1');
      } catch {
        // Another user's process: its command line is enough.
      }
    } catch {
      ancestorRunsDistro = depth === 0 && !existsSync('/proc/self/stat');
      return ancestorRunsDistro;
    }
    if (markers.some((m) => text.includes(m))) {
      ancestorRunsDistro = true;
      return true;
    }
    pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  }
  return ancestorRunsDistro;
}

/**
 * Asks the holder of the port to hand it over, over a raw socket (an HTTP client request would
 * be traced and counted as the application's).
 */
function askHandover(host: string, port: number, token: string | undefined): Promise<boolean> {
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return new Promise((resolve) => {
    let answer = '';
    let done = false;
    const finish = (granted: boolean) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve(granted);
    };
    const socket = connect({ host: target, port }, () => {
      socket.write(
        `GET ${HANDOVER_PATH} HTTP/1.1\r\nHost: ${target}:${port}\r\n` +
          `${HANDOVER_HEADER}: ${process.pid}\r\n` +
          (token === undefined ? '' : `Authorization: Bearer ${token}\r\n`) +
          'Connection: close\r\n\r\n',
      );
    });
    socket.unref();
    socket.setTimeout(1_000, () => finish(false));
    socket.on('error', () => finish(false));
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      const eol = answer.indexOf('\r\n');
      if (eol !== -1) finish(/^HTTP\/1\.[01] 200 /.test(answer.slice(0, eol + 1)));
    });
    socket.on('close', () => finish(false));
  });
}
