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
 *   it started that may load the preload is still running (for a bounded time): a launcher
 *   (nest start, nodemon, an npm script wrapper) that only spawns the real application never
 *   takes the port;
 * - a process that serves HTTP and finds the port held by an ancestor that serves nothing (a
 *   launcher that bound it before spawning the application) asks that ancestor, with the secret
 *   the ancestor put in its environment, to hand it over until it exits;
 * - when the application itself listens on the port, the distro gives it up (one warning);
 * - a port taken at start-up is retried in the background until it frees (one warning).
 */

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, isIP } from 'node:net';
import { basename, resolve } from 'node:path';
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

/**
 * Inherited by child processes: `pid:secret` of every process above that loaded the preload
 * (nearest last). Only a process holding its ancestor's secret can ask it for the port, and a
 * child knows it has such an ancestor without reading anything from other processes.
 */
export const HANDOVER_ENV = 'DATALAB_INTERNAL_HANDOVER';
const MAX_ANCESTORS = 8;
/** How often a process that handed the port over checks that the descendant still runs. */
const HANDOVER_WATCH_MS = 1_000;
/**
 * A process waits at most this many idle-bind delays for the children it started that load the
 * preload: one that never serves (a sandboxed job pool) must not keep /health away for good.
 */
const IDLE_WAIT_ROUNDS = 6;
/** Ports tried, from DATALAB_METRICS_PORT up, by a worker of a primary without the distro. */
const SLOT_RANGE = 64;

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
  private idleRounds = 0;
  /** The bind came after the bounded wait, with children that load the preload still running. */
  private boundPastChildren = false;
  /** `pid:secret` entries inherited from the processes above, nearest last. */
  private readonly ancestors: readonly string[];
  /** This process's own entry, handed down to its children. */
  private readonly secret = `${process.pid}:${randomBytes(16).toString('hex')}`;
  private watchTimer: NodeJS.Timeout | undefined;
  private basePort: number;
  /** A worker of a distro-less primary takes the lowest free port of a range. */
  private scanSlots = false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly host: string,
    port: number,
    private readonly token?: string,
    options: ManagementOptions = {},
  ) {
    this.port = port;
    this.basePort = port;
    this.ancestors = (process.env[HANDOVER_ENV] ?? '')
      .split(' ')
      .filter((e) => /^\d+:[0-9a-f]{32}$/.test(e) && !e.startsWith(`${process.pid}:`));
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
    process.env[HANDOVER_ENV] = [...this.ancestors.slice(-(MAX_ANCESTORS - 1)), this.secret].join(
      ' ',
    );
    if (role.kind === 'instance') {
      this.port += role.offset;
      this.basePort = this.port;
      this.scanSlots = role.scan === true;
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
    if (state !== 'handed-over') clearInterval(this.watchTimer);
    this.idleTimer = this.retryTimer = undefined;
    if (state !== 'handed-over') this.unsubscribe?.();
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
    // exclusive: in a cluster worker, a shared handle would let the primary (PM2's daemon)
    // round-robin scrapes between the services of the whole cluster.
    this.server.listen({ port: this.port, host: this.host, exclusive: true });
    this.server.unref();
  }

  private armIdle(): void {
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.state !== 'idle' || this.waiting) return;
      // A launcher waits for the application it started; when that exits (and nothing
      // else runs), the launcher is the process left to answer.
      for (const child of this.children) {
        // A child that never started (spawn failed) may emit no 'exit'. Only a child that may
        // load the preload can be the application a launcher starts: a browser, ffmpeg or
        // `sleep` must not keep /health away (its command is known once spawned, not when the
        // channel reports it).
        if (
          child.pid === undefined ||
          child.exitCode !== null ||
          child.signalCode !== null ||
          !mayLoadDistro(child)
        ) {
          this.children.delete(child);
        }
      }
      if (this.children.size > 0 && ++this.idleRounds < IDLE_WAIT_ROUNDS) {
        this.armIdle();
        return;
      }
      // Past the bounded wait, a child that loads the preload may serve and hold the port:
      // finding it taken is then expected, not worth a warning.
      this.boundPastChildren = this.children.size > 0;
      this.bind();
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
      if (this.scanSlots && this.port < this.basePort + SLOT_RANGE - 1 && this.port < 65_535) {
        this.port++;
        this.bind();
        return;
      }
      if (this.handoverGrace > 0) {
        this.handoverGrace--;
        this.scheduleRetry(100);
        return;
      }
      // Held maybe by a launcher that bound it before it spawned this process: ask, at every
      // attempt (a launcher busy compiling may not answer the first time). Only a process that
      // serves HTTP asks: an idle one (a job child of a pool) must not take the port.
      if (this.serving && this.ancestors.length > 0) {
        this.asking = true;
        void askHandover(this.host, this.port, this.token, this.ancestors).then((granted) => {
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
    if (this.scanSlots) this.port = this.basePort;
    if (retry && this.boundPastChildren && this.children.size > 0) {
      this.scheduleRetry(RETRY_MAX_MS);
      return;
    }
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

  /**
   * A descendant that serves HTTP found the port held by this process: give it up if this process
   * serves nothing. The asker proves it descends from this process with the secret only this
   * process's children inherit, over loopback only.
   */
  private handover(req: IncomingMessage, res: ServerResponse): void {
    const [pidText, ...entries] = String(req.headers[HANDOVER_HEADER] ?? '').split(' ');
    const pid = Number(pidText);
    const granted =
      !this.serving &&
      this.state === 'listening' &&
      sameMachine(req.socket.remoteAddress, req.socket.localAddress) &&
      Number.isSafeInteger(pid) &&
      pid > 1 &&
      entries.some((e) => sameSecret(e, this.secret));
    if (!granted) {
      res.writeHead(409, { 'content-type': 'text/plain; charset=utf-8' }).end('Conflict\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
    res.end('handed over\n', () => {
      this.stop('handed-over');
      this.server.close();
      this.server.closeAllConnections();
      this.watchDescendant(pid);
    });
  }

  /**
   * The port was handed over for as long as the descendant runs: when it exits (a launcher
   * restarting it, a crash), this process answers again until a new one asks.
   */
  private watchDescendant(pid: number): void {
    clearInterval(this.watchTimer);
    this.watchTimer = setInterval(() => {
      try {
        process.kill(pid, 0);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EPERM') return;
      }
      clearInterval(this.watchTimer);
      this.watchTimer = undefined;
      if (this.state !== 'handed-over') return;
      this.state = 'idle';
      this.bind();
    }, HANDOVER_WATCH_MS);
    this.watchTimer.unref();
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
  readonly spawnfile?: string;
  readonly spawnargs?: readonly string[];
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

/**
 * Loopback, or (DATALAB_METRICS_HOST set to one of the machine's addresses, which the asker then
 * connects to) a connection from that very address.
 */
function sameMachine(remote: string | undefined, local: string | undefined): boolean {
  return isLoopback(remote) || (remote !== undefined && remote === local);
}

function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIP(v4) === 4) return v4.startsWith('127.');
  return address === '::1';
}

function sameSecret(given: string, own: string): boolean {
  if (given.length !== own.length) return false;
  return timingSafeEqual(Buffer.from(given), Buffer.from(own));
}

const REGISTER_MARKERS = [
  '@datalab/otel/register',
  resolve(__dirname, '..', 'register.mjs'),
  resolve(__dirname, '..', 'register.js'),
];
const NODE_BINARY = /^(node|nodejs|bun|deno)(\.exe)?$/i;
const SHELL = /^(sh|bash|dash|zsh|ash|cmd|cmd\.exe|powershell|pwsh)(\.exe)?$/i;
/** Commands that start Node.js: a shell line naming one may run the application. */
const NODE_LAUNCHER =
  /(^|[\s/\\"'])(node|nodejs|npm|npx|pnpm|yarn|bun|nest|nodemon|ts-node|ts-node-dev|tsx|next|nuxt|vite|remix)(\.exe|\.cmd)?($|[\s"'])/i;

/**
 * Whether a child process may load the preload (the environment it inherits is not visible, so
 * from its command): node with the register flag, or with NODE_OPTIONS naming it (inherited from
 * this process), or a shell line that starts Node.js. A browser, ffmpeg or `sleep` cannot.
 */
export function mayLoadDistro(
  child: { readonly spawnfile?: string; readonly spawnargs?: readonly string[] },
  nodeOptions: string | undefined = process.env.NODE_OPTIONS,
): boolean {
  const args = child.spawnargs ?? [];
  const line = args.join(' ');
  if (REGISTER_MARKERS.some((m) => line.includes(m))) return true;
  const file = basename(child.spawnfile ?? args[0] ?? '');
  const inherited =
    nodeOptions !== undefined && REGISTER_MARKERS.some((m) => nodeOptions.includes(m));
  if (
    NODE_BINARY.test(file) ||
    (child.spawnfile !== undefined && child.spawnfile === process.execPath)
  ) {
    return inherited;
  }
  if (SHELL.test(file)) return NODE_LAUNCHER.test(line) || (inherited && /\.(c|m)?js\b/.test(line));
  // npm, nest, nodemon started directly (they run on node, NODE_OPTIONS reaches them).
  return NODE_LAUNCHER.test(` ${file} `) && inherited;
}

/**
 * Asks the holder of the port to hand it over, over a raw socket (an HTTP client request would
 * be traced and counted as the application's).
 */
function askHandover(
  host: string,
  port: number,
  token: string | undefined,
  ancestors: readonly string[],
): Promise<boolean> {
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
          `${HANDOVER_HEADER}: ${process.pid} ${ancestors.join(' ')}\r\n` +
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
