/**
 * The embedding API: a program loaded once, frozen, and served from a pool of
 * request VMs on worker threads.
 *
 *   const program = await Program.load('./hello', { concurrency: 2 });
 *   const res = await program.request({ method: 'GET', url: '/x' });
 *   program.stats(); await program.close();
 *
 * load() boots main() on a worker until wait_for_requests, then forks
 * `concurrency` request VMs spread over the pool. request() takes an idle
 * fork, or waits in a bounded queue (TSKVM_ERR_QUEUE_FULL at once when it is
 * full, TSKVM_ERR_QUEUE_TIMEOUT after queueTimeout). A guest failure is not an
 * exception: the response carries status 500 (504 for a timeout), or what
 * on_error answered, with `error` saying what happened.
 *
 * A worker thread that dies, or does not come back from a request within
 * max_request_time and a grace period (worker-pool.ts), is replaced: the
 * request it held fails with TSKVM_ERR_WORKER or TSKVM_ERR_WORKER_STUCK, and
 * the program forks new request VMs from its frozen state on the other
 * workers, so it keeps serving.
 */
import { resolve as resolvePath } from 'node:path';
import { readProgramFile, TskvmError } from '../errors.js';
import { HANDLER, type CachePolicy } from '../syscalls/api/guest-api.js';
import type { FrozenProgram } from '../hypervisor/frozen.js';
import { registerOf } from '../hypervisor/vcpu-state.js';
import { resolveProgramOptions, type ProgramOptions, type ResolvedProgramOptions } from './program-options.js';
import { addForkStats, DEFAULT_ON_ERROR_MS, emptyForkStats, STREAM_CHUNK_MS, type ForkStats, type RequestInput, type RequestResult } from './request-vm.js';
import { requestProblem } from './request-data.js';
import { WARMUP_RUN_ON_MS } from './warmup.js';
import type { RequestFailure } from './request-failure.js';
import { guestFetch } from './guest-fetch.js';
import { unpackProgram } from './program-archive.js';
import { acquirePool, newVmId, releasePool, TRANSFER_MIN, type PoolWorker, type WorkerPool } from './worker-pool.js';
import { LIVE_STATE_MAX, StorageHost, type StorageStats } from './storage-host.js';
import type { Question } from './request-worker.js';
import type { FetchRequest } from '../syscalls/api/fetch.js';

export type { ProgramOptions };

export interface ProgramRequest {
  method?: string;
  url: string;
  /** `{ key: value }` (a value may be an array) or whole `Key: value` fields. */
  headers?: Record<string, string | string[]> | string[];
  body?: Uint8Array | string;
  contentType?: string;
  arg?: string;
  /** Set by the server for a self-request (a program's sys_fetch of a path): how deep it is. */
  selfDepth?: number;
}

export interface ProgramResponse {
  status: number;
  contentType: string;
  /** Lower-cased keys; repeated fields joined with ", ". */
  headers: Record<string, string>;
  /** The fields exactly as the program gave them. */
  headerFields: string[];
  body: Buffer;
  /** sys_set_cacheable or the response's extra: how long a cache may keep it. */
  cache: CachePolicy | null;
  /** Set when the program failed; the response is then on_error's, or the failure's. */
  error?: RequestFailure;
  /** Time in the VM, ms. */
  timeMs: number;
  /** Time waiting for a free request VM, ms. */
  queuedMs: number;
  /**
   * A streamed response (begin_streaming_response), when the request asked for one with
   * `{ stream: true }`: the body comes through it and `body` is empty. Without that option the
   * pieces are gathered into `body`.
   */
  stream?: ResponseStream;
}

/** The body of a streamed response, piece by piece; the request VM stays taken until it ends. */
export interface ResponseStream extends AsyncIterable<Uint8Array> {
  /** Bytes the whole body has (the program said so when it began: Content-Length). */
  readonly length: number;
  /** Ends the stream early (its client went away, say): the request VM is reset and freed. */
  cancel(): Promise<void>;
}

/** Bytes a streamed response gives per piece: what the program's callback is asked for at most. */
export const STREAM_PIECE = 64 << 10;
/** A stream nobody reads from for this long is cancelled, so that its request VM comes back. */
const STREAM_IDLE_MS = 30_000;
/** Largest streamed body gathered into `body` for a caller that did not ask for the stream. */
const GATHER_MAX = 256 << 20;

export interface ProgramStats {
  /** `entry_points`: where the program is entered, by name (the header's setter without `set_`), as hex guest addresses. */
  program: { name: string; binary_type: string; binary_size: number; entry_points: Record<string, string>; boot_time: number };
  vms: ForkStats[];
  totals: ForkStats & { reservation_time: number; reservation_timeouts: number; queue_full: number };
  queued: number;
  active: number;
  /** The storage VM's counters, when the program has one. */
  storage?: StorageStats;
}

interface Fork {
  id: number;
  /** Its number among this program's forks, 0 to concurrency − 1 (a replacement takes a free one): the guest's vcpureqid(). */
  index: number;
  worker: PoolWorker;
  stats: ForkStats;
}

interface Waiter {
  resolve: (fork: Fork) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

const LOG_LINES_KEPT = 100;
let nextProgramId = 1;

export class Program {
  readonly name: string;
  readonly options: ResolvedProgramOptions;
  /** The program's most recent log lines (stdout, stderr, sys_log). */
  readonly log: string[] = [];
  private readonly pool: WorkerPool;
  private readonly id: number;
  /** Where the program was booted (its main VM lives there); null once that worker is gone. */
  private home: PoolWorker | null;
  private readonly frozen: FrozenProgram;
  private readonly info: ProgramStats['program'];
  /** Counters of forks lost with a worker, so that the totals keep counting. */
  private readonly retired = emptyForkStats();
  private readonly stopWatchingPool: () => void;
  private readonly forks: Fork[] = [];
  private readonly idle: Fork[] = [];
  private readonly queue: Waiter[] = [];
  private readonly onLog: ((line: string) => void) | undefined;
  private reservationTime = 0;
  private reservationTimeouts = 0;
  private queueFull = 0;
  private active = 0;
  private closing: Promise<void> | null = null;
  private readonly storage: StorageHost | null;

  /** Loads, boots and freezes the program at `path` (an ELF or an archive, see fromBytes), and forks its request VMs. */
  static async load(path: string, options: ProgramOptions = {}): Promise<Program> {
    const resolved = resolveProgramOptions(path, options);
    return Program.fromBytes(await readProgramFile(path), resolvePath(path), resolved, options);
  }

  /**
   * Like load(), from the file's bytes: an ELF, or a .tar or .tar.xz holding the program and maybe its
   * storage program (program-archive.ts). `exePath` is what the guest sees as its own path. `hooks`:
   * the main-thread functions of ProgramOptions (they cannot go to a worker with the resolved options).
   */
  static async fromBytes(bytes: Uint8Array, exePath: string, options: ResolvedProgramOptions, hooks: Pick<ProgramOptions, 'onLog' | 'selfRequest' | 'onFetch'> = {}): Promise<Program> {
    const { program: file, storage: storageEntry } = await unpackProgram(bytes, exePath);
    const pool = acquirePool();
    const id = nextProgramId++;
    const log: string[] = [];
    const { onLog, selfRequest, onFetch } = hooks;
    const logLine = (line: string): void => {
      log.push(line);
      if (log.length > LOG_LINES_KEPT) log.shift();
      onLog?.(line);
    };
    const fetch = async (request: FetchRequest): Promise<unknown> => {
      const started = performance.now();
      const result = await guestFetch(request, options.fetchOrigins, selfRequest);
      onFetch?.(performance.now() - started);
      return result;
    };
    let storage: StorageHost | null = null;
    const ask = async (q: Question): Promise<unknown> => {
      if (q.kind === 'fetch') return fetch(q.request);
      if (!storage) throw new Error('the storage VM is not running');
      switch (q.kind) {
        case 'storageCall': return storage.call(q.call, q.deadline);
        case 'storageTask': return storage.task(q.task);
        case 'stopStorageTask': return storage.stopTask(q.id);
      }
    };
    pool.setProgramHooks(id, { log: logLine, ask });
    const home = pool.leastLoaded();
    let booted: { frozen: FrozenProgram; binaryType: string; binarySize: number; bootTimeMs: number };
    try {
      // The storage VM first: the program's main() may call into it while it starts.
      if (options.storage) {
        // The archive's storage entry, as the VMOD takes it; else filename_storage; else the program itself.
        const fromFile = storageEntry === undefined && options.storageFilename !== null;
        const storageFile = storageEntry ?? (fromFile ? await readProgramFile(options.storageFilename!) : file);
        storage = new StorageHost(pool, id, options, logLine);
        await storage.start(storageFile, fromFile ? resolvePath(options.storageFilename!) : exePath);
      }
      booted = await home.send({ op: 'boot', programId: id, file, exePath, options }, [], bootLimitMs(options));
    } catch (e) {
      await storage?.close();
      pool.setProgramHooks(id, null);
      await releasePool(pool);
      throw e;
    }
    const program = new Program(pool, id, home, options, booted, log, onLog, storage);
    try {
      await program.startForks(program.options.concurrency);
    } catch (e) {
      await program.close();
      throw e;
    }
    storage?.open();
    return program;
  }

  private constructor(
    pool: WorkerPool, id: number, home: PoolWorker, options: ResolvedProgramOptions,
    booted: { frozen: FrozenProgram; binaryType: string; binarySize: number; bootTimeMs: number }, log: string[], onLog: ((line: string) => void) | undefined,
    storage: StorageHost | null,
  ) {
    this.storage = storage;
    this.pool = pool;
    this.id = id;
    this.home = home;
    this.home.placed++;
    this.frozen = booted.frozen;
    this.stopWatchingPool = pool.onReplaced((dead) => this.workerReplaced(dead));
    this.options = options;
    this.name = options.name;
    this.log = log;
    this.onLog = onLog;
    this.info = {
      name: options.name, binary_type: booted.binaryType, binary_size: booted.binarySize,
      entry_points: entryPoints(booted.frozen), boot_time: booted.bootTimeMs / 1000,
    };
  }

  private async startForks(count: number): Promise<void> {
    const created = await Promise.allSettled(Array.from({ length: count }, async () => {
      const worker = this.pool.leastLoaded();
      worker.placed++;
      let index = 0;
      while (this.forks.some((f) => f.index === index)) index++;
      const fork: Fork = { id: newVmId(), index, worker, stats: emptyForkStats() };
      this.forks.push(fork);
      await worker.send({ op: 'fork', programId: this.id, forkId: fork.id, index, frozen: this.frozen, options: this.options });
      this.releaseFork(fork);
    }));
    const failed = created.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** A worker died or got stuck: its forks are gone (a request on one has failed); fork as many again. */
  private workerReplaced(dead: PoolWorker): void {
    if (this.home === dead) this.home = null;
    const lost = this.forks.filter((f) => f.worker === dead);
    if (lost.length === 0 || this.closing) return;
    for (const fork of lost) {
      this.forks.splice(this.forks.indexOf(fork), 1);
      const idle = this.idle.indexOf(fork);
      if (idle >= 0) this.idle.splice(idle, 1);
      addForkStats(this.retired, fork.stats);
    }
    this.startForks(lost.length).catch((e: Error) => this.onLog?.(`tskvm: could not replace request VMs lost with worker thread ${dead.index}: ${e.message}`));
  }

  /**
   * Runs one request in a fork; resolves with the response (guest failures included), rejects for
   * queue limits and closing. `signal` cancels a request still waiting for a fork
   * (TSKVM_ERR_ABORTED), e.g. when its client went away; one already running finishes.
   */
  async request(req: ProgramRequest, options: { signal?: AbortSignal; stream?: boolean } = {}): Promise<ProgramResponse> {
    const input = toInput(req);
    // A large body moves to the worker as a copy of its own: a structured clone would copy it twice.
    const transfer: ArrayBuffer[] = [];
    if (input.body && input.body.byteLength >= TRANSFER_MIN) {
      input.body = new Uint8Array(input.body);
      transfer.push(input.body.buffer as ArrayBuffer);
    }
    const queued = performance.now();
    const fork = await this.reserve(options.signal);
    const queuedMs = performance.now() - queued;
    this.active++;
    let streaming = false;
    try {
      // The request's own time, then on_error's budget; the watchdog adds its grace.
      const limitMs = this.options.maxRequestTime * 1000 + DEFAULT_ON_ERROR_MS;
      const { result, stats } = await fork.worker.send<{ result: RequestResult; stats: ForkStats }>(
        { op: 'request', forkId: fork.id, input }, transfer, limitMs, this.options.maxRequestTime * 1000);
      fork.stats = stats;
      const response = toResponse(result, queuedMs);
      if (!result.response.stream) return response;
      streaming = true;
      const stream = this.responseStream(fork, result.response.stream.length);
      if (options.stream) {
        response.stream = stream;
        return response;
      }
      try {
        response.body = await gather(stream);
      } catch (e) {
        // Gathered, a stream that fails is a failed request like any other.
        const error = e instanceof TskvmError ? e : new TskvmError('TSKVM_ERR_STREAM', String(e));
        Object.assign(response, { status: 500, contentType: 'text/plain', body: Buffer.from(`${error.message}\n`), error: { code: error.code, status: 500, message: error.message } });
      }
      return response;
    } finally {
      if (!streaming) {
        this.active--;
        this.releaseFork(fork);
      }
    }
  }

  /**
   * The pieces of a streamed response, pulled from the fork one at a time as the reader asks (so a
   * slow client holds back the guest, and no more than a piece is in flight). When it ends — its
   * last byte, a failure, cancel(), or STREAM_IDLE_MS without a read — the fork is settled and freed.
   */
  private responseStream(fork: Fork, length: number): ResponseStream {
    let delivered = 0;
    let ended: Promise<void> | null = null;
    let idle: NodeJS.Timeout | null = null;
    const end = (): Promise<void> => {
      if (idle) clearTimeout(idle);
      ended ??= fork.worker.send<ForkStats | undefined>({ op: 'streamEnd', forkId: fork.id })
        .then((stats) => { if (stats) fork.stats = stats; }, () => undefined)
        .finally(() => {
          this.active--;
          this.releaseFork(fork);
        });
      return ended;
    };
    const watch = (): void => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => void end(), STREAM_IDLE_MS).unref();
    };
    watch();
    return {
      length,
      cancel: end,
      [Symbol.asyncIterator]: async function* (this: void) {
        try {
          while (delivered < length && !ended) {
            if (idle) clearTimeout(idle);
            const { chunk, stats } = await fork.worker.send<{ chunk: Uint8Array; stats: ForkStats }>(
              { op: 'streamChunk', forkId: fork.id, max: STREAM_PIECE }, [], STREAM_CHUNK_MS);
            fork.stats = stats;
            delivered += chunk.length;
            watch();
            yield chunk;
          }
        } finally {
          await end();
        }
      },
    };
  }

  /**
   * Live update: hands this program's storage state to `next`'s storage VM, the VMOD's way:
   * on_live_update() in this one's storage VM gives it (storage_return), on_live_restore(len) in
   * next's takes it. Calls that reach this storage VM after the hand-over are not carried over. The
   * bytes handed over, or null when there is nothing to hand (no storage on either side, or no
   * on_live_update); TSKVM_ERR_LIVE_UPDATE when a side fails.
   */
  async handStorageTo(next: Program): Promise<number | null> {
    if (!this.storage || !next.storage) return null;
    const fail = (why: string): never => {
      throw new TskvmError('TSKVM_ERR_LIVE_UPDATE', `program ${this.name}: the storage state was not handed over: ${why}`);
    };
    const saved = await this.storage.liveSave();
    if (!saved) return null;
    if (!saved.ok) return fail(`on_live_update failed in the running program's storage VM: ${saved.reason}`);
    if (saved.length > saved.data.length) return fail(`on_live_update gave ${saved.length} bytes (the limit is ${LIVE_STATE_MAX})`);
    const restored = await next.storage.liveRestore(saved.data);
    if (!restored) return fail(`the new program has no on_live_restore to take the ${saved.data.length} bytes the running one gave`);
    if (!restored.ok) return fail(`on_live_restore failed in the new program's storage VM: ${restored.reason}`);
    return restored.length;
  }

  stats(): ProgramStats {
    const totals = { ...this.retired, reservation_time: this.reservationTime, reservation_timeouts: this.reservationTimeouts, queue_full: this.queueFull };
    for (const f of this.forks) addForkStats(totals, f.stats);
    const stats: ProgramStats = { program: { ...this.info }, vms: this.forks.map((f) => ({ ...f.stats })), totals, queued: this.queue.length, active: this.active };
    if (this.storage) stats.storage = this.storage.stats();
    return stats;
  }

  /** Refuses new requests, lets running ones finish, and releases every VM, fd and mapping. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const w of this.queue.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new TskvmError('TSKVM_ERR_CLOSED', `program ${this.name} is closing`));
      }
      while (this.active > 0) await new Promise((r) => setTimeout(r, 5));
      await Promise.allSettled(this.forks.map(async (f) => {
        await f.worker.send({ op: 'closeFork', forkId: f.id });
        f.worker.placed--;
      }));
      this.stopWatchingPool();
      if (this.home) {
        await this.home.send({ op: 'closeProgram', programId: this.id }).catch(() => undefined);
        this.home.placed--;
      }
      await this.storage?.close();
      this.pool.setProgramHooks(this.id, null);
      await releasePool(this.pool);
    })();
    return this.closing;
  }

  private reserve(signal?: AbortSignal): Promise<Fork> {
    if (signal?.aborted) return Promise.reject(new TskvmError('TSKVM_ERR_ABORTED', 'the request was cancelled before it ran'));
    if (this.closing) return Promise.reject(new TskvmError('TSKVM_ERR_CLOSED', `program ${this.name} is closed`));
    const fork = this.idle.pop();
    if (fork) return Promise.resolve(fork);
    if (this.queue.length >= this.options.maxQueue) {
      this.queueFull++;
      return Promise.reject(new TskvmError('TSKVM_ERR_QUEUE_FULL', `program ${this.name}: ${this.queue.length} requests already wait for a request VM (maxQueue)`));
    }
    const started = performance.now();
    return new Promise<Fork>((resolve, reject) => {
      const leave = (): void => {
        this.queue.splice(this.queue.indexOf(waiter), 1);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        clearTimeout(waiter.timer);
        leave();
        reject(new TskvmError('TSKVM_ERR_ABORTED', 'the request was cancelled while it waited for a request VM'));
      };
      const waiter: Waiter = {
        resolve: (f) => {
          signal?.removeEventListener('abort', onAbort);
          this.reservationTime += (performance.now() - started) / 1000;
          resolve(f);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
        timer: setTimeout(() => {
          leave();
          this.reservationTimeouts++;
          reject(new TskvmError('TSKVM_ERR_QUEUE_TIMEOUT', `program ${this.name}: no request VM became free within ${this.options.queueTimeout} s`));
        }, this.options.queueTimeout * 1000),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  private releaseFork(fork: Fork): void {
    if (!fork.worker.alive) return; // lost with its worker; workerReplaced forks another
    const next = this.queue.shift();
    if (next) {
      clearTimeout(next.timer);
      next.resolve(fork);
    } else {
      this.idle.push(fork);
    }
  }
}

/** register_func indices by the names kvm_api.h registers them with (set_backend_get → backend_get). */
const ENTRY_NAMES: Readonly<Record<number, string>> = {
  [HANDLER.GET]: 'backend_get', [HANDLER.POST]: 'backend_post', [HANDLER.REQUEST]: 'backend_request',
  [HANDLER.STREAM_POST]: 'backend_stream_post', [HANDLER.ON_ERROR]: 'on_error', [HANDLER.LIVE_SAVE]: 'on_live_update',
  [HANDLER.LIVE_RESTORE]: 'on_live_restore', [HANDLER.SOCKET]: 'socket',
};

/** The handlers a program registered, and for the paused style where it waits for requests. */
function entryPoints(frozen: FrozenProgram): Record<string, string> {
  const hex = (n: number): string => `0x${n.toString(16)}`;
  const entries = Object.fromEntries(frozen.process.state.api.handlers.map(([index, fn]) => [ENTRY_NAMES[index] ?? `handler_${index}`, hex(fn)]));
  if (frozen.paused) entries.wait_for_requests_paused = hex(registerOf(frozen.regs, 'rip'));
  return entries;
}

/** What a boot may take: main() to its wait, then each warm-up request and its way back to the wait. */
function bootLimitMs(o: ResolvedProgramOptions): number {
  return o.maxBootTime * 1000 + (o.warmup?.requests ?? 0) * (o.maxRequestTime * 1000 + WARMUP_RUN_ON_MS);
}

function toInput(req: ProgramRequest): RequestInput {
  if (typeof req?.url !== 'string') throw new TskvmError('TSKVM_ERR_REQUEST', 'a request needs a url (string)');
  const method = req.method ?? (req.body !== undefined ? 'POST' : 'GET');
  const headers: string[] = [];
  if (Array.isArray(req.headers)) {
    headers.push(...req.headers);
  } else if (req.headers) {
    for (const [k, v] of Object.entries(req.headers)) for (const value of Array.isArray(v) ? v : [v]) headers.push(`${k}: ${value}`);
  }
  const problem = requestProblem(method, req.url, req.arg ?? '', headers);
  if (problem) throw new TskvmError('TSKVM_ERR_REQUEST', problem);
  const contentType = req.contentType
    ?? headers.find((f) => f.slice(0, f.indexOf(':')).trim().toLowerCase() === 'content-type')?.slice(13).trim() ?? '';
  const body = typeof req.body === 'string' ? Buffer.from(req.body) : req.body;
  const input: RequestInput = { method, url: req.url, arg: req.arg ?? '', contentType, headers, body };
  if (req.selfDepth) input.selfDepth = req.selfDepth;
  return input;
}

/** A whole streamed body, for a caller that did not ask for the stream. */
async function gather(stream: ResponseStream): Promise<Buffer> {
  if (stream.length > GATHER_MAX) {
    await stream.cancel();
    throw new TskvmError('TSKVM_ERR_STREAM', `a streamed response of ${stream.length} bytes is too large to gather (the limit is ${GATHER_MAX}); ask for it with { stream: true }`);
  }
  const body = Buffer.alloc(stream.length);
  let at = 0;
  for await (const chunk of stream) {
    body.set(chunk, at);
    at += chunk.length;
  }
  return body;
}

function toResponse(r: RequestResult, queuedMs: number): ProgramResponse {
  const headers: Record<string, string> = {};
  for (const field of r.response.headers) {
    const colon = field.indexOf(':');
    if (colon < 0) continue;
    const key = field.slice(0, colon).trim().toLowerCase();
    const value = field.slice(colon + 1).trim();
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
  }
  const body = Buffer.from(r.response.body.buffer, r.response.body.byteOffset, r.response.body.byteLength);
  const res: ProgramResponse = {
    status: r.response.status, contentType: r.response.contentType, headers, headerFields: r.response.headers, body, cache: r.response.cache, timeMs: r.runMs, queuedMs,
  };
  if (r.failure) res.error = r.failure;
  return res;
}
