/**
 * A worker thread of the pool (docs/ARCHITECTURE.md, "Threads"): it owns the main VMs it booted
 * and the request VMs it was given, and runs one of them at a time. KVM_RUN
 * blocks, so it happens here and never on the application's event loop.
 *
 * The thread does not use its own event loop: it sleeps in Atomics.wait on a
 * shared doorbell and drains its port with receiveMessageOnPort when the main
 * thread rings, so waking it costs a futex, not an event-loop turn. Replies go
 * back with postMessage. After a response is posted the fork is settled
 * (reset), so the reset is off the request's latency.
 */
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { TskvmError, type ErrorCode } from '../errors.js';
import type { FetchRequest, FetchResult } from '../syscalls/api/fetch.js';
import { CURLE } from '../syscalls/api/fetch.js';
import { EmptyFile, SinkFile } from '../syscalls/open-files/memory-file.js';
import { bootProgram, type BootedProgram } from './frozen-program.js';
import type { FrozenProgram } from '../hypervisor/frozen.js';
import { OUTPUT_LIMIT, type ResolvedProgramOptions } from './program-options.js';
import { RequestVm, type RequestInput } from './request-vm.js';
import { nestedRun } from '../hypervisor/run-loop.js';
import { TRANSFER_MIN, WORKER_FAULT_URLS } from './worker-pool.js';

export type WorkerCommand =
  | { op: 'boot'; id: number; programId: number; file: Uint8Array; exePath: string; options: ResolvedProgramOptions }
  | { op: 'fork'; id: number; programId: number; forkId: number; index: number; frozen: FrozenProgram; options: ResolvedProgramOptions }
  | { op: 'request'; id: number; forkId: number; input: RequestInput }
  | { op: 'closeFork'; id: number; forkId: number }
  /** The next piece (at most `max` bytes) of the streamed response fork `forkId` is giving. */
  | { op: 'streamChunk'; id: number; forkId: number; max: number }
  /** The streamed response is over (or its client gone): the fork is settled. */
  | { op: 'streamEnd'; id: number; forkId: number }
  | { op: 'closeProgram'; id: number; programId: number }
  | { op: 'exit'; id: number }
  /** The main thread gave up on command `target` before it started (its deadline passed in the queue). */
  | { op: 'cancel'; id: number; target: number }
  /** The answer to this thread's `fetch` number `rpc` (sys_fetch waits for it: guestFetcher below). */
  | { op: 'fetched'; id: number; rpc: number; result: FetchResult };

export type WorkerReply =
  | { op: 'done'; id: number; value?: unknown }
  | { op: 'error'; id: number; error: { code: ErrorCode; message: string; details?: unknown } }
  | { op: 'log'; programId: number; lines: string[] }
  /** A guest's sys_fetch, for the main thread to make (the worker waits for `fetched`). */
  | { op: 'fetch'; programId: number; rpc: number; request: FetchRequest }
  /** Command `id` starts while the one in progress waits in a fetch (its reply comes first). */
  | { op: 'nested'; id: number }
  | { op: 'ready' };

interface WorkerInit {
  port: MessagePort;
  doorbell: SharedArrayBuffer;
}

const { port, doorbell } = workerData as WorkerInit;
const bell = new Int32Array(doorbell);
const programs = new Map<number, BootedProgram>();
const forks = new Map<number, RequestVm>();
const loggers = new Map<number, Logger>();

function reply(message: WorkerReply): void {
  port.postMessage(message);
}

/** Lines go to the main thread in batches of about this many bytes, and at the end of each request. */
const BATCH_BYTES = 64 << 10;

interface Logger {
  line: (l: string) => void;
  output: (name: string) => (b: Uint8Array) => void;
  recent: string[];
  /** Sends what is batched; a new request (or the end of the boot) starts a new budget. True if output was cut. */
  flush: (endOfRequest: boolean) => boolean;
}

/**
 * The program's output and logs, line by line, to the main thread (and stderr when echoing): batched,
 * so a flood of short lines is not one message each, and cut at OUTPUT_LIMIT bytes per request (then
 * one marker line says how much was dropped). A guest that writes 64 MiB of newlines in one call
 * costs the main thread one marker, not 64 million messages.
 */
function logger(programId: number, options: ResolvedProgramOptions): Logger {
  const recent: string[] = [];
  let batch: string[] = [];
  let batchBytes = 0, used = 0, dropped = 0;
  const flush = (endOfRequest: boolean): boolean => {
    const cut = endOfRequest && dropped > 0;
    if (cut) {
      batch.push(`[tskvm: ${dropped} more bytes of output cut: more than ${OUTPUT_LIMIT} bytes in one request]`);
      dropped = 0;
    }
    if (batch.length) reply({ op: 'log', programId, lines: batch });
    batch = [];
    batchBytes = 0;
    if (endOfRequest) used = 0;
    return cut;
  };
  const line = (l: string): void => {
    if (used + l.length + 1 > OUTPUT_LIMIT) {
      dropped += l.length + 1;
      return;
    }
    used += l.length + 1;
    recent.push(l);
    if (recent.length > 40) recent.shift();
    if (options.echo) process.stderr.write(`[${options.name}] ${l}\n`);
    batch.push(l);
    batchBytes += l.length + 1;
    if (batchBytes >= BATCH_BYTES) flush(false);
  };
  const partial = new Map<string, string>();
  const output = (name: string) => (bytes: Uint8Array): void => {
    if (used >= OUTPUT_LIMIT) {
      dropped += bytes.length; // past the budget: not even decoded
      return;
    }
    const text = (partial.get(name) ?? '') + Buffer.from(bytes.subarray(0, OUTPUT_LIMIT - used + 4096)).toString('utf8');
    if (bytes.length > OUTPUT_LIMIT - used + 4096) dropped += bytes.length - (OUTPUT_LIMIT - used + 4096);
    const lines = text.split('\n');
    partial.set(name, lines.pop()!.slice(-4096));
    for (const l of lines) line(l);
  };
  return { line, output, recent, flush };
}

function trace(options: ResolvedProgramOptions): ((l: string) => void) | null {
  return options.trace ? (l) => process.stderr.write(`[${options.name}] ${l}\n`) : null;
}

const warn = (name: string) => (m: string): void => {
  process.stderr.write(`tskvm [${name}]: ${m}\n`);
};

function handle(c: WorkerCommand): unknown {
  switch (c.op) {
    case 'boot': {
      const o = c.options;
      const log = logger(c.programId, o);
      let booted: BootedProgram;
      try {
        booted = bootProgram(c.file, c.exePath, {
          argv0: o.argv[0], args: o.argv.slice(1), env: o.env, allowed: o.allowed, cwd: o.cwd,
          maxMemoryMiB: o.maxMemory, sharedMemoryMiB: o.sharedMemory, maxRequestMemoryMiB: o.maxRequestMemory,
          requestMemoryUpperMiB: o.reqMemLimitAfterReset, controlEphemeral: o.controlEphemeral, executableHeap: o.executableHeap, maxBootTimeSec: o.maxBootTime,
          stdio: [new EmptyFile(), new SinkFile(log.output('stdout'), 'stdout'), new SinkFile(log.output('stderr'), 'stderr')],
          log: log.line, warn: warn(o.name), trace: trace(o), recentLog: () => log.recent,
        });
      } finally {
        log.flush(true);
      }
      programs.set(c.programId, booted);
      return {
        frozen: booted.frozen,
        binaryType: booted.image.kind,
        binarySize: c.file.length,
        bootTimeMs: booted.bootTimeMs,
      };
    }
    case 'fork': {
      const o = c.options;
      const log = logger(c.programId, o);
      forks.set(c.forkId, new RequestVm(c.frozen, {
        maxRequestTimeMs: o.maxRequestTime * 1000, maxWriteBytes: o.maxRequestWrite * 2 ** 20, index: c.index, ephemeral: o.ephemeral, output: log.output, log: log.line, warn: warn(o.name), trace: trace(o),
        fetcher: guestFetcher(c.programId),
      }));
      loggers.set(c.forkId, log);
      return undefined;
    }
    case 'request': {
      if (faultsForTests) injectFault(c.input.url);
      const fork = forks.get(c.forkId);
      if (!fork) throw new TskvmError('TSKVM_ERR_CLOSED', `request VM ${c.forkId} is closed`);
      let result;
      running.add(c.forkId);
      try {
        result = fork.request(c.input);
      } finally {
        running.delete(c.forkId);
        if (loggers.get(c.forkId)?.flush(true)) fork.stats.output_cut++;
      }
      // A body with an ArrayBuffer of its own moves to the main thread: cloning would copy it twice.
      const body = result.response.body;
      const own = body.byteLength >= TRANSFER_MIN && body.byteOffset === 0 && body.byteLength === body.buffer.byteLength;
      port.postMessage({ op: 'done', id: c.id, value: { result, stats: fork.stats } } satisfies WorkerReply, own ? [body.buffer as ArrayBuffer] : []);
      // A streamed response needs the request's memory until its last piece: settled at streamEnd.
      if (!result.response.stream) fork.settle();
      return NO_REPLY;
    }
    case 'streamChunk': {
      const fork = forks.get(c.forkId);
      if (!fork) throw new TskvmError('TSKVM_ERR_CLOSED', `request VM ${c.forkId} is closed`);
      let chunk: Uint8Array;
      running.add(c.forkId);
      try {
        chunk = fork.streamChunk(c.max);
      } finally {
        running.delete(c.forkId);
        loggers.get(c.forkId)?.flush(false);
      }
      port.postMessage({ op: 'done', id: c.id, value: { chunk, stats: fork.stats } } satisfies WorkerReply, [chunk.buffer as ArrayBuffer]);
      return NO_REPLY;
    }
    case 'streamEnd': {
      const fork = forks.get(c.forkId);
      if (fork && loggers.get(c.forkId)?.flush(true)) fork.stats.output_cut++;
      fork?.settle();
      return fork?.stats;
    }
    case 'closeFork':
      forks.get(c.forkId)?.close();
      forks.delete(c.forkId);
      loggers.delete(c.forkId);
      return undefined;
    case 'closeProgram':
      programs.get(c.programId)?.machine.close();
      programs.delete(c.programId);
      return undefined;
    case 'cancel':
      return NO_REPLY; // taken care of by the loop below
    case 'exit':
      for (const f of forks.values()) f.close();
      for (const p of programs.values()) p.machine.close();
      reply({ op: 'done', id: c.id });
      process.exit(0);
  }
}

const NO_REPLY = Symbol('no reply');

const faultsForTests = process.env.TSKVM_TEST_WORKER_FAULTS === '1';

/** See WORKER_FAULT_URLS: a host-side hang (busy in JavaScript, as a bug would be) or a thread that ends. */
function injectFault(url: string): void {
  if (url === WORKER_FAULT_URLS.hang) for (;;) Date.now();
  if (url === WORKER_FAULT_URLS.exit) process.exit(70);
}

/** Commands received and not yet run, and the ones among them the main thread cancelled. */
const queue: WorkerCommand[] = [];
const cancelled = new Set<number>();
/** Forks in the middle of a request on this thread's stack (one, or more while a sys_fetch waits). */
const running = new Set<number>();

/** Takes every message waiting on the port; a cancel always arrives after the command it names. */
function drain(): void {
  let received;
  while ((received = receiveMessageOnPort(port))) {
    const command = received.message as WorkerCommand;
    if (command.op === 'cancel') cancelled.add(command.target);
    // An answer nobody waits for any more (its fetch gave up) is dropped.
    else if (command.op === 'fetched') {
      if (awaited.has(command.rpc)) answers.set(command.rpc, command.result);
    }
    else queue.push(command);
  }
}

let nextRpc = 1;
/** The fetches this thread waits for (more than one when a nested request fetched too), and the answers that came. */
const awaited = new Set<number>();
const answers = new Map<number, FetchResult>();
/** Time the main thread gets beyond the fetch's own timeout to send its answer. */
const FETCH_ANSWER_GRACE_MS = 1000;

/**
 * sys_fetch for the forks of a program: the main thread makes the request (it has the event loop and
 * the server), and this thread waits for the answer on its doorbell, as it waits for commands. It
 * does not sit idle meanwhile: commands for its other VMs run (nestedRun keeps the waiting run's
 * deadline, quota and timer), which is also how a self-request served by a fork on this very thread
 * gets its answer instead of waiting for a thread that waits for it. Commands that would touch a fork
 * in the middle of a request wait until the fetch is over.
 */
function guestFetcher(programId: number): (request: FetchRequest) => FetchResult {
  return (request) => {
    const rpc = nextRpc++;
    awaited.add(rpc);
    port.postMessage({ op: 'fetch', programId, rpc, request } satisfies WorkerReply, request.body ? [request.body.buffer as ArrayBuffer] : []);
    const end = performance.now() + request.timeoutMs + FETCH_ANSWER_GRACE_MS;
    const held: WorkerCommand[] = [];
    let result: FetchResult | null = null;
    try {
      for (;;) {
        drain();
        result = answers.get(rpc) ?? null;
        if (result) break;
        if (performance.now() >= end) break;
        const next = queue.shift();
        if (next) {
          if (cancelled.delete(next.id)) continue;
          if (mustWait(next)) {
            held.push(next);
          } else {
            // The main thread's watchdog times this command now, by its own limit.
            reply({ op: 'nested', id: next.id });
            nestedRun(() => run(next));
          }
          continue;
        }
        const left = end - performance.now();
        if (left <= 0) break;
        Atomics.wait(bell, 0, 0, left);
        Atomics.store(bell, 0, 0);
      }
    } finally {
      queue.unshift(...held);
      awaited.delete(rpc);
      answers.delete(rpc);
    }
    return result ?? { ok: false, code: CURLE.OPERATION_TIMEDOUT, message: `no answer within ${request.timeoutMs} ms` };
  };
}

/** Commands that cannot run while a request is stopped in a fetch: those touching a running fork, and exit. */
function mustWait(c: WorkerCommand): boolean {
  return c.op === 'exit' || ((c.op === 'request' || c.op === 'closeFork' || c.op === 'streamChunk' || c.op === 'streamEnd') && running.has(c.forkId));
}

function run(command: WorkerCommand): void {
  try {
    const value = handle(command);
    if (value !== NO_REPLY) reply({ op: 'done', id: command.id, value });
  } catch (e) {
    const error = e instanceof TskvmError
      ? { code: e.code, message: e.message, details: safeDetails(e.details) }
      : { code: 'TSKVM_ERR_INTERNAL' as const, message: (e as Error)?.stack ?? String(e) };
    reply({ op: 'error', id: command.id, error });
  }
}

reply({ op: 'ready' });
for (;;) {
  // No spinning before the wait: measured under load on 2 cores, a worker that spins takes the CPU
  // the main thread needs to hand it the next request (wrk: -15 % requests/s).
  Atomics.wait(bell, 0, 0);
  Atomics.store(bell, 0, 0);
  drain();
  while (queue.length > 0) {
    const command = queue.shift()!;
    if (!cancelled.delete(command.id)) run(command);
    drain();
  }
  // Every command a cancel can name has been taken off the queue by now.
  cancelled.clear();
}

/** Error details that survive structured cloning (no functions, no host objects). */
function safeDetails(details: Record<string, unknown>): unknown {
  try {
    return structuredClone(details);
  } catch {
    return undefined;
  }
}
