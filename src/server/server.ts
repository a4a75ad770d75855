/**
 * `tskvm serve`: an HTTP server (node:http, keep-alive) in front of the programs of a library.
 *
 *   const server = await startServer({ library: 'library.json', listen: '127.0.0.1:8080' });
 *   // … GET http://127.0.0.1:8080/hello/x runs program "hello" with url "/hello/x"
 *   await server.close();
 *
 * One request: route it (router.ts) → read the body (413 past maxBodySize) → the program's slot
 * starts it if needed (program-slot.ts) → Program.request → the guest's status, headers and body,
 * plus Content-Type, Content-Length and Cache-Control. What the client sees when it goes wrong:
 *
 *   unknown program                 404
 *   body too large                  413 (and the connection closes)
 *   too many / too large headers    431
 *   guest crash, bad response …     500, or what on_error answered (Program decides)
 *   guest timeout                   504, or what on_error answered
 *   start failed                    503, Retry-After: seconds until the next start attempt
 *   queue full / queue wait timeout 503, Retry-After: 1
 *   server's body memory full       503, Retry-After: 1 (and the connection closes)
 *   worker thread died / stuck      503, Retry-After: 1 / 504
 *
 * Limits on what clients can make the server hold (each an option, with its default):
 *   maxConnections     open connections (1024); node:http closes the ones past it at once
 *   maxBufferedBytes   bytes of bodies in memory across the server (256 MiB): request bodies from
 *                      their first byte until their response is sent, responses until the kernel
 *                      has taken them; a request that would go past it is refused with 503
 *   clientTimeout      seconds a response may wait for its client to read (30): a client that
 *                      stops reading is cut off, and what it held is given back
 *
 * Cache-Control comes from sys_set_cacheable: `max-age=TTL, stale-while-revalidate=GRACE` (seconds,
 * rounded down) when the program said cached=true, else `no-store`, so that a cache in front (Varnish)
 * never keeps an answer the program did not mark cacheable; `keep` has no HTTP equivalent. A
 * Cache-Control header the program sets itself wins.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { lstat, unlink } from 'node:fs/promises';
import { TskvmError } from '../errors.js';
import { headerBlock, ownBytes } from '../runtime/guest-fetch.js';
import type { ProgramRequest, ProgramResponse, ResponseStream } from '../runtime/program.js';
import { CURLE, type FetchRequest, type FetchResult } from '../syscalls/api/fetch.js';
import { handleAdmin, isAdminPath, type AdminAnswer } from './admin.js';
import { LIVE_UPDATE_HEADER, liveUpdate } from './live-update.js';
import { loadLibrary, type Library, type LibraryParseOptions, type LibraryTrust } from './library.js';
import { GlobalCounters } from './metrics.js';
import { ProgramSlot } from './program-slot.js';
import { Router } from './router.js';

const MiB = 1024 * 1024;
/** Self-requests (a program's sys_fetch of a path) running at once across the server. */
const MAX_SELF_REQUESTS = 32;

export interface ServerOptions {
  /** A parsed library, or the path of a library file. */
  library: Library | string;
  /** With a library path: `--configure` settings per program. */
  configure?: LibraryParseOptions['configure'];
  /** With a library URL: how far it is trusted (library.ts). */
  libraryTrust?: LibraryTrust;
  /** `HOST:PORT` (port 0: any free port). Default 127.0.0.1:8080; null: no TCP listener. */
  listen?: string | null;
  /** A Unix socket path to listen on as well. */
  unix?: string;
  /** Token for the admin endpoints on TCP (admin.ts). */
  adminToken?: string;
  /** Bytes of request body. Default 16 MiB. */
  maxBodySize?: number;
  /** Request header fields. Default 100. */
  maxHeaderCount?: number;
  /** Bytes of request line and headers together. Default 32 KiB. */
  maxHeaderSize?: number;
  /** Open connections. Default 1024. */
  maxConnections?: number;
  /** Bytes of request and response bodies held across the server. Default 256 MiB. */
  maxBufferedBytes?: number;
  /** Seconds a response may make no progress towards its client. Default 30. */
  clientTimeout?: number;
  /** Seconds close() lets running requests finish before it drops their connections. Default 10. */
  shutdownTimeout?: number;
  /** Where access-log lines go. Default: stdout; null: nowhere. */
  accessLog?: ((line: string) => void) | null;
  /** Where warnings go (library, start failures). Default: stderr. */
  warn?: (message: string) => void;
}

export interface RunningServer {
  /** `http://HOST:PORT` of the TCP listener, or null. */
  url: string | null;
  socketPath: string | null;
  library: Library;
  /** Stops accepting, lets running requests finish (within shutdownTimeout), closes every program. Idempotent. */
  close(): Promise<void>;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const library = typeof options.library === 'string' ? await loadLibrary(options.library, options.configure, undefined, options.libraryTrust) : options.library;
  const warn = options.warn ?? ((m: string) => process.stderr.write(`tskvm: ${m}\n`));
  for (const w of library.warnings) warn(w);
  const server = new ComputeServer(library, options, warn);
  await server.startBootPrograms();
  try {
    const url = options.listen === null ? null : await server.listenTcp(options.listen ?? '127.0.0.1:8080');
    if (options.unix) await server.listenUnix(options.unix);
    return { url, socketPath: options.unix ?? null, library, close: () => server.close() };
  } catch (e) {
    await server.close();
    throw e;
  }
}

/** What the access log says about one request. */
interface Exchange {
  program: string;
  vmMs: number;
  queuedMs: number;
  bytes: number;
  /** True once the server shuts down: the answer then closes its connection. */
  draining: () => boolean;
  /** Bytes of bodies this exchange holds against the server's budget. */
  held: number;
  budget: ByteBudget;
  clientTimeoutMs: number;
}

class ComputeServer {
  private readonly slots = new Map<string, ProgramSlot>();
  private readonly counters = new GlobalCounters();
  private readonly router: Router;
  private readonly listeners: Server[] = [];
  private readonly maxBodySize: number;
  private readonly maxHeaderCount: number;
  private readonly buffered: ByteBudget;
  private readonly clientTimeoutMs: number;
  private readonly accessLog: ((line: string) => void) | null;
  private readonly warned = new Set<string>();
  private inFlight = 0;
  private selfRequestsInFlight = 0;
  private closing: Promise<void> | null = null;

  constructor(library: Library, private readonly options: ServerOptions, private readonly warn: (m: string) => void) {
    const program = { selfRequest: (r: FetchRequest) => this.selfRequest(r), onFetch: (ms: number) => { this.counters.fetch_time += ms / 1000; } };
    for (const entry of library.programs.values()) {
      this.slots.set(entry.name, new ProgramSlot(entry, { onStartFailure: (e) => warn(e.message), program }));
    }
    this.router = new Router(library);
    this.maxBodySize = options.maxBodySize ?? 16 * MiB;
    this.maxHeaderCount = options.maxHeaderCount ?? 100;
    this.buffered = new ByteBudget(options.maxBufferedBytes ?? 256 * MiB);
    this.clientTimeoutMs = (options.clientTimeout ?? 30) * 1000;
    this.accessLog = options.accessLog === undefined ? (line) => process.stdout.write(line + '\n') : options.accessLog;
  }

  /** Starts the `start: true` programs; one that fails is retried on its first request, like a lazy one. */
  async startBootPrograms(): Promise<void> {
    await Promise.all([...this.slots.values()].filter((s) => s.entry.start).map((s) => s.acquire().catch(() => undefined)));
  }

  async listenTcp(address: string): Promise<string> {
    const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
    if (!m) throw new TskvmError('TSKVM_ERR_CONFIG', `listen: expected HOST:PORT, not ${JSON.stringify(address)}`);
    const host = m[1] ?? (m[2] || '127.0.0.1');
    const server = this.createListener(false);
    await listen(server, (done) => server.listen(Number(m[3]), host, done));
    const bound = server.address() as { address: string; port: number };
    return `http://${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}`;
  }

  async listenUnix(path: string): Promise<void> {
    // A socket file left by a server that did not exit cleanly would make listen fail with EADDRINUSE.
    const stale = await lstat(path).catch(() => null);
    if (stale?.isSocket()) await unlink(path);
    const server = this.createListener(true);
    await listen(server, (done) => server.listen(path, done));
  }

  private createListener(viaUnixSocket: boolean): Server {
    const server = createServer({ maxHeaderSize: this.options.maxHeaderSize ?? 32 * 1024 }, (req, res) => {
      void this.handle(req, res, viaUnixSocket);
    });
    // node:http drops fields past maxHeadersCount silently; one more than allowed lets handle() see the excess.
    server.maxHeadersCount = this.maxHeaderCount + 1;
    server.maxConnections = this.options.maxConnections ?? 1024;
    this.listeners.push(server);
    return server;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, viaUnixSocket: boolean): Promise<void> {
    const started = performance.now();
    const url = req.url ?? '/';
    const exchange: Exchange = {
      program: '-', vmMs: 0, queuedMs: 0, bytes: 0, draining: () => this.closing !== null, held: 0, budget: this.buffered, clientTimeoutMs: this.clientTimeoutMs,
    };
    this.inFlight++;
    // A client that goes away before its request got a request VM takes it out of the queue.
    const gone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
      this.inFlight--;
      this.buffered.give(exchange.held);
      this.accessLog?.(`${exchange.program} ${req.method} ${url} ${res.statusCode} ${exchange.bytes} vm=${exchange.vmMs.toFixed(1)}ms queued=${exchange.queuedMs.toFixed(1)}ms total=${(performance.now() - started).toFixed(1)}ms`);
    });
    try {
      if (req.rawHeaders.length / 2 > this.maxHeaderCount) {
        return sendText(res, exchange, 431, `more than ${this.maxHeaderCount} header fields`, { connection: 'close' });
      }
      const q = url.indexOf('?');
      const path = q < 0 ? url : url.slice(0, q);
      if (isAdminPath(path)) {
        const answer = await handleAdmin({ slots: this.slots, counters: this.counters, adminToken: this.options.adminToken, readBody: async () => {
          const body = await readBody(req, this.maxBodySize, exchange);
          return typeof body === 'string' ? null : body;
        } }, req, path, new URLSearchParams(q < 0 ? '' : url.slice(q + 1)), viaUnixSocket);
        return sendAdmin(res, exchange, answer);
      }
      const route = this.router.resolve(url, req.headers.host);
      if (!route) {
        this.counters.program_notfound++;
        return sendText(res, exchange, 404, `no program serves ${path}`);
      }
      exchange.program = route.program;
      const body = await readBody(req, this.maxBodySize, exchange);
      if (body === 'too large') {
        return sendText(res, exchange, 413, `the request body exceeds ${this.maxBodySize} bytes`, { connection: 'close' });
      }
      if (body === 'busy') {
        this.counters.busy_refusals++;
        return sendText(res, exchange, 503, `the server holds ${this.buffered.limit} bytes of bodies already (max_buffered_bytes); try again`,
          { connection: 'close', 'retry-after': '1' });
      }
      const liveUpdateKey = req.headers[LIVE_UPDATE_HEADER];
      if (req.method === 'POST' && typeof liveUpdateKey === 'string') {
        const answer = await liveUpdate(this.slots.get(route.program)!, liveUpdateKey, body);
        return sendText(res, exchange, answer.status, answer.text);
      }
      const fields: string[] = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) fields.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      const response = await this.run(this.slots.get(route.program)!, { method: req.method, url, headers: fields, body, arg: route.arg }, gone.signal, true);
      this.counters.record(response);
      exchange.vmMs = response.timeMs;
      exchange.queuedMs = response.queuedMs;
      await sendProgramResponse(res, exchange, response, (m) => this.warnOnce(route.program, m));
    } catch (e) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const { status, headers } = statusFor(e);
      sendText(res, exchange, status, (e as Error).message, headers);
    }
  }

  /** A program's answers can repeat a mistake on every request: say it once per program. */
  private warnOnce(program: string, message: string): void {
    if (this.warned.has(program)) return;
    this.warned.add(program);
    this.warn(`program ${program}: ${message} (said once per program)`);
  }

  /** A request that finds its program unloaded by an invalidation (or queued when it happened) goes to the reloaded one. */
  /**
   * A program's sys_fetch of a path: routed like a client's request (without a Host) and run, no
   * socket involved. At most MAX_SELF_REQUESTS at once across the server. One waits for a free
   * request VM at most half the time its caller has, so that a caller always hears back before its
   * own deadline — also a program that calls itself deeper than it has request VMs.
   */
  private async selfRequest(r: FetchRequest): Promise<FetchResult> {
    this.counters.self_requests++;
    const failed = (code: number, message: string): FetchResult => {
      this.counters.self_requests_failed++;
      this.warn(`self-request ${r.method} ${r.url} failed: ${message}`);
      return { ok: false, code, message };
    };
    if (this.closing) return failed(CURLE.COULDNT_CONNECT, 'the server is shutting down');
    if (this.selfRequestsInFlight >= MAX_SELF_REQUESTS) return failed(CURLE.COULDNT_CONNECT, `${MAX_SELF_REQUESTS} self-requests are running already`);
    const route = this.router.resolve(r.url, undefined);
    if (!route) return { ok: true, status: 404, contentType: 'text/plain; charset=utf-8', headers: headerBlock(404, {}), body: Buffer.from(`no program serves ${r.url}\n`) };
    this.selfRequestsInFlight++;
    try {
      const response = await this.run(this.slots.get(route.program)!, {
        method: r.method, url: r.url, headers: r.headers, body: r.body ?? undefined, arg: route.arg, selfDepth: r.depth,
      }, AbortSignal.timeout(Math.max(1, Math.ceil(r.timeoutMs / 2))));
      this.counters.record(response);
      return {
        ok: true, status: response.status, contentType: response.contentType,
        headers: headerBlock(response.status, { 'content-type': response.contentType, ...response.headers }), body: ownBytes([response.body], response.body.length),
      };
    } catch (e) {
      const code = (e as TskvmError).code === 'TSKVM_ERR_ABORTED' ? CURLE.OPERATION_TIMEDOUT : CURLE.RECV_ERROR;
      return failed(code, (e as Error).message);
    } finally {
      this.selfRequestsInFlight--;
    }
  }

  /** Runs `req` on the slot's program (started if need be); `stream`: a streamed response comes as one (ProgramResponse.stream). */
  private async run(slot: ProgramSlot, req: ProgramRequest, signal: AbortSignal, stream = false): Promise<ProgramResponse> {
    for (let attempt = 1; ; attempt++) {
      const program = await slot.acquire();
      try {
        return await program.request(req, { signal, stream });
      } catch (e) {
        if ((e as TskvmError).code !== 'TSKVM_ERR_CLOSED' || this.closing || attempt === 2) throw e;
      }
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = Promise.all(this.listeners.map((s) => new Promise((r) => s.close(r))));
      for (const s of this.listeners) s.closeIdleConnections();
      const deadline = performance.now() + (this.options.shutdownTimeout ?? 10) * 1000;
      while (this.inFlight > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      for (const s of this.listeners) s.closeAllConnections();
      await closed;
      await Promise.all([...this.slots.values()].map((s) => s.close()));
    })();
    return this.closing;
  }
}

function listen(server: Server, start: (done: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    start(() => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Bytes a too-large body may still send after its 413 is decided: read and dropped, so that closing the
 * connection does not reset it before the client reads the answer. Past that, the connection is cut. */
const DRAIN_LIMIT = 64 * MiB;

/**
 * Bytes of bodies the server holds, against max_buffered_bytes. An exchange takes what it keeps
 * (exchange.held) and gives it all back when its response is done or its connection is gone.
 */
class ByteBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  /** Takes `n` bytes for the exchange if they fit (or, `force`, in any case: they are in memory already). */
  take(exchange: Exchange, n: number, force = false): boolean {
    if (!force && this.used + n > this.limit) return false;
    this.used += n;
    exchange.held += n;
    return true;
  }

  give(n: number): void {
    this.used -= n;
  }
}

/**
 * The body; 'too large' past `limit`, 'busy' when the server cannot hold it now. A body is counted
 * against the budget chunk by chunk as it arrives (so a slow upload cannot hold more than it sent).
 */
async function readBody(req: IncomingMessage, limit: number, exchange: Exchange): Promise<Buffer | 'too large' | 'busy'> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit + DRAIN_LIMIT) return 'too large';
  const chunks: Buffer[] = [];
  let size = 0;
  let busy = false;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit + DRAIN_LIMIT) return 'too large';
    if (size <= limit && !busy) {
      if (exchange.budget.take(exchange, chunk.length)) chunks.push(chunk);
      else busy = true; // read on and drop, so that the 503 reaches the client
    }
  }
  if (size > limit || declared > limit) return 'too large';
  return busy ? 'busy' : Buffer.concat(chunks, size);
}

/** Fields that describe this connection or this message's framing: ours to set, never the guest's. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade', 'proxy-connection', 'te', 'trailer']);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

function sendProgramResponse(res: ServerResponse, exchange: Exchange, r: ProgramResponse, warn: (m: string) => void): void | Promise<void> {
  const headers: string[] = [];
  let ownCacheControl = false;
  for (const field of r.headerFields) {
    const colon = field.indexOf(':');
    const name = field.slice(0, colon).trim();
    const value = field.slice(colon + 1).trim();
    if (colon < 0 || !TOKEN.test(name) || !FIELD_VALUE.test(value)) {
      warn(`response header ${JSON.stringify(field.slice(0, 80))} is not a valid HTTP field (dropped)`);
      continue;
    }
    const key = name.toLowerCase();
    if (HOP_BY_HOP.has(key) || (key === 'content-type' && r.contentType)) continue;
    if (key === 'cache-control') ownCacheControl = true;
    headers.push(name, value);
  }
  if (r.contentType) headers.push('Content-Type', r.contentType);
  if (!ownCacheControl) headers.push('Cache-Control', cacheControl(r));
  if (r.stream) return sendStream(res, exchange, r.status, headers, r.stream);
  send(res, exchange, r.status, headers, r.body);
}

/**
 * A streamed response: the head with its Content-Length, then each piece as the program gives it,
 * the next asked for only once the socket has taken the last (so host memory holds one piece, however
 * long the body). A client that stops reading is cut off after the client timeout; a stream that
 * fails after the head cuts the connection, the only way HTTP/1.1 has to say so.
 */
async function sendStream(res: ServerResponse, exchange: Exchange, status: number, headers: string[], stream: ResponseStream): Promise<void> {
  headers.push('Content-Length', String(stream.length));
  if (exchange.draining()) headers.push('Connection', 'close');
  res.setTimeout(exchange.clientTimeoutMs, () => res.destroy());
  res.writeHead(status, headers);
  const closed = new Promise<void>((resolve) => res.once('close', resolve));
  try {
    for await (const chunk of stream) {
      if (res.destroyed) break;
      exchange.bytes += chunk.length;
      if (!res.write(chunk)) await Promise.race([once(res, 'drain'), closed]);
      if (res.destroyed) break;
    }
    if (res.destroyed) await stream.cancel();
    else res.end();
  } catch {
    res.destroy();
  }
}

function cacheControl(r: ProgramResponse): string {
  if (r.error || !r.cache?.cached) return 'no-store';
  return `max-age=${Math.floor(r.cache.ttlMs / 1000)}, stale-while-revalidate=${Math.floor(r.cache.graceMs / 1000)}`;
}

function statusFor(e: unknown): { status: number; headers?: Record<string, string> } {
  switch ((e as TskvmError).code) {
    case 'TSKVM_ERR_QUEUE_FULL': case 'TSKVM_ERR_QUEUE_TIMEOUT': case 'TSKVM_ERR_CLOSED':
      return { status: 503, headers: { 'retry-after': '1' } };
    case 'TSKVM_ERR_PROGRAM_START':
      return { status: 503, headers: { 'retry-after': String((e as TskvmError).details.retryAfter ?? 1) } };
    case 'TSKVM_ERR_WORKER_STUCK': case 'TSKVM_ERR_WORKER_BUSY':
      return { status: 504 };
    case 'TSKVM_ERR_WORKER':
      return { status: 503, headers: { 'retry-after': '1' } };
    case 'TSKVM_ERR_REQUEST':
      return { status: 400 };
    case 'TSKVM_ERR_ABORTED':
      return { status: 499 }; // the client is gone; for the access log (nginx's "client closed request")
    default:
      return { status: 500 };
  }
}

function sendAdmin(res: ServerResponse, exchange: Exchange, answer: AdminAnswer): void {
  const text = typeof answer.body === 'string';
  const body = Buffer.from(text ? (answer.body as string) : JSON.stringify(answer.body, null, 2) + '\n');
  const headers = { 'content-type': 'application/json', 'cache-control': 'no-store', ...answer.headers };
  send(res, exchange, answer.status, Object.entries(headers).flat(), body);
}

function sendText(res: ServerResponse, exchange: Exchange, status: number, message: string, extra: Record<string, string> = {}): void {
  const headers = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...extra };
  send(res, exchange, status, Object.entries(headers).flat(), Buffer.from(message + '\n'));
}

function send(res: ServerResponse, exchange: Exchange, status: number, headers: string[], body: Buffer): void {
  // 204 and 304 have no body (RFC 9110), whatever the program gave.
  if (status === 204 || status === 304) body = Buffer.alloc(0);
  else headers.push('Content-Length', String(body.length));
  exchange.bytes = body.length;
  exchange.budget.take(exchange, body.length, true);
  // Until the kernel has taken the whole body, it is ours to hold: a client that stops reading is cut off.
  res.setTimeout(exchange.clientTimeoutMs, () => res.destroy());
  if (exchange.draining() && !headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'connection')) headers.push('Connection', 'close');
  res.writeHead(status, headers);
  res.end(body);
}
