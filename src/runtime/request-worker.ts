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
import type { ApiRole } from '../syscalls/api/guest-api.js';
import type { StorageCall, StorageCallResult, StorageLink, StorageTaskRequest } from '../syscalls/api/storage.js';
import { deadlineReached, passedDeadline, sleep, timeLeft, waitLimit } from '../syscalls/deadline.js';
import { EmptyFile, SinkFile } from '../syscalls/open-files/memory-file.js';
import { bootProgram, type BootedProgram } from './frozen-program.js';
import type { FrozenProgram } from '../hypervisor/frozen.js';
import { OUTPUT_LIMIT, type ResolvedProgramOptions } from './program-options.js';
import { RequestVm, type RequestInput } from './request-vm.js';
import { nestedRun } from '../hypervisor/run-loop.js';
import { TRANSFER_MIN, WORKER_FAULT_URLS } from './worker-pool.js';

/**
 * What a VM on this thread needs the main thread for, and waits for (askMain below): a sys_fetch, or
 * a storage call, task or timer of its program (storage.ts).
 */
export type Question =
  | { kind: 'fetch'; request: FetchRequest }
  /** `deadline`: Date.now() time after which the caller no longer waits (the call is then skipped). */
  | { kind: 'storageCall'; call: StorageCall; deadline: number }
  | { kind: 'storageTask'; task: StorageTaskRequest }
  | { kind: 'stopStorageTask'; id: number };

export type StorageCallKind = 'call' | 'task' | 'liveSave' | 'liveRestore';

export type WorkerCommand =
  /** `role` 'storage': the program's storage VM starts (its options say KVM_TYPE=storage). */
  | { op: 'boot'; id: number; programId: number; file: Uint8Array; exePath: string; options: ResolvedProgramOptions; role?: ApiRole }
  | { op: 'fork'; id: number; programId: number; forkId: number; index: number; frozen: FrozenProgram; options: ResolvedProgramOptions; role?: ApiRole }
  | { op: 'request'; id: number; forkId: number; input: RequestInput }
  | { op: 'closeFork'; id: number; forkId: number }
  /** The next piece (at most `max` bytes) of the streamed response fork `forkId` is giving. */
  | { op: 'streamChunk'; id: number; forkId: number; max: number }
  /** The streamed response is over (or its client gone): the fork is settled. */
  | { op: 'streamEnd'; id: number; forkId: number }
  /**
   * Runs something in the storage VM `forkId` within `timeMs`: a call; a task (`call.inputs` is its
   * one data buffer); on_live_update (up to `call.resultMax` bytes) or on_live_restore (given
   * `call.inputs[0]`) of a live update. The value is a StorageCallResult, or null when the program
   * has no live-update handler.
   */
  | { op: 'storageCall'; id: number; forkId: number; kind: StorageCallKind; call: StorageCall; timeMs: number }
  | { op: 'closeProgram'; id: number; programId: number; role?: ApiRole }
  | { op: 'exit'; id: number }
  /** The main thread gave up on command `target` before it started (its deadline passed in the queue). */
  | { op: 'cancel'; id: number; target: number }
  /** The answer to this thread's question number `rpc` (askMain below). */
  | { op: 'answer'; id: number; rpc: number; answer: unknown };

export type WorkerReply =
  | { op: 'done'; id: number; value?: unknown }
  | { op: 'error'; id: number; error: { code: ErrorCode; message: string; details?: unknown } }
  | { op: 'log'; programId: number; lines: string[] }
  /** A question for the main thread (the worker waits for its `answer`). */
  | { op: 'ask'; programId: number; rpc: number; question: Question }
  /** Command `id` starts while the one in progress waits for an answer (its reply comes first). */
  | { op: 'nested'; id: number }
  | { op: 'ready' };

interface WorkerInit {
  port: MessagePort;
  doorbell: SharedArrayBuffer;
}

const { port, doorbell } = workerData as WorkerInit;
const bell = new Int32Array(doorbell);
/** The main VMs booted here (they own the memory their forks copy from), by bootKey. */
const programs = new Map<string, BootedProgram>();
/** A program's storage VM boots apart from its main VM, maybe on the same thread. */
const bootKey = (programId: number, role: ApiRole = 'request'): string => `${programId}:${role}`;
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
          role: c.role, storage: o.storage ? storageLink(c.programId) : null, fetcher: guestFetcher(c.programId),
          argv0: o.argv[0], args: o.argv.slice(1), env: o.env, allowed: o.allowed, cwd: o.cwd,
          maxMemoryMiB: o.maxMemory, addressSpaceMiB: o.addressSpace, remaps: o.remappings, sharedMemoryMiB: o.sharedMemory, maxRequestMemoryMiB: o.maxRequestMemory,
          requestMemoryUpperMiB: o.reqMemLimitAfterReset, controlEphemeral: o.controlEphemeral, executableHeap: o.executableHeap, maxBootTimeSec: o.maxBootTime,
          warmup: o.warmup, maxRequestTimeSec: o.maxRequestTime,
          stdio: [new EmptyFile(), new SinkFile(log.output('stdout'), 'stdout'), new SinkFile(log.output('stderr'), 'stderr')],
          log: log.line, warn: warn(o.name), trace: trace(o), recentLog: () => log.recent,
        });
      } finally {
        log.flush(true);
      }
      programs.set(bootKey(c.programId, c.role), booted);
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
        fetcher: guestFetcher(c.programId), storage: o.storage ? storageLink(c.programId) : undefined, role: c.role,
      }));
      loggers.set(c.forkId, log);
      return undefined;
    }
    case 'request': {
      if (faultsForTests) injectFault(c.input.url);
      const { fork, value: result } = onFork(c.forkId, true, (fork) => fork.request(c.input));
      // A body with an ArrayBuffer of its own moves to the main thread: cloning would copy it twice.
      const body = result.response.body;
      const own = body.byteLength >= TRANSFER_MIN && body.byteOffset === 0 && body.byteLength === body.buffer.byteLength;
      port.postMessage({ op: 'done', id: c.id, value: { result, stats: fork.stats } } satisfies WorkerReply, own ? [body.buffer as ArrayBuffer] : []);
      // A streamed response needs the request's memory until its last piece: settled at streamEnd.
      if (!result.response.stream) fork.settle();
      return NO_REPLY;
    }
    case 'streamChunk': {
      const { fork, value: chunk } = onFork(c.forkId, false, (fork) => fork.streamChunk(c.max));
      port.postMessage({ op: 'done', id: c.id, value: { chunk, stats: fork.stats } } satisfies WorkerReply, [chunk.buffer as ArrayBuffer]);
      return NO_REPLY;
    }
    case 'streamEnd': {
      const fork = forks.get(c.forkId);
      if (fork && loggers.get(c.forkId)?.flush(true)) fork.stats.output_cut++;
      fork?.settle();
      return fork?.stats;
    }
    case 'storageCall': {
      const { fork, value: result } = onFork(c.forkId, true, (fork) => {
        switch (c.kind) {
          case 'call': return fork.storageCall(c.call, c.timeMs);
          case 'task': return fork.storageTask(c.call.func, c.call.inputs[0]!, c.timeMs);
          case 'liveSave': return fork.liveSave(c.call.resultMax, c.timeMs);
          case 'liveRestore': return fork.liveRestore(c.call.inputs[0]!, c.timeMs);
        }
      });
      port.postMessage({ op: 'done', id: c.id, value: { result, stats: fork.stats } } satisfies WorkerReply, result?.ok ? [result.data.buffer as ArrayBuffer] : []);
      return NO_REPLY;
    }
    case 'closeFork':
      forks.get(c.forkId)?.close();
      forks.delete(c.forkId);
      loggers.delete(c.forkId);
      return undefined;
    case 'closeProgram':
      programs.get(bootKey(c.programId, c.role))?.machine.close();
      programs.delete(bootKey(c.programId, c.role));
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

/**
 * Runs `work` on VM `forkId`, marked running so that commands for it wait while this one waits for
 * an answer (askMain), then sends the output it wrote (a whole request's, or a piece's).
 */
function onFork<T>(forkId: number, endOfRequest: boolean, work: (fork: RequestVm) => T): { fork: RequestVm; value: T } {
  const fork = forks.get(forkId);
  if (!fork) throw new TskvmError('TSKVM_ERR_CLOSED', `VM ${forkId} is closed`);
  running.add(forkId);
  try {
    return { fork, value: work(fork) };
  } finally {
    running.delete(forkId);
    if (loggers.get(forkId)?.flush(endOfRequest)) fork.stats.output_cut++;
  }
}

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
    // An answer nobody waits for any more (its question gave up) is dropped.
    else if (command.op === 'answer') {
      if (awaited.has(command.rpc)) answers.set(command.rpc, command.answer);
    }
    else queue.push(command);
  }
}

let nextRpc = 1;
/** The questions this thread waits for (more than one when a nested command asked too), and the answers that came. */
const awaited = new Set<number>();
const answers = new Map<number, unknown>();
/** Time the main thread gets beyond a question's own limit to send its answer. */
const ANSWER_GRACE_MS = 1000;
/** How long a storage call waits, queue included, when the run has no deadline of its own. */
const STORAGE_WAIT_MS = 60_000;
/** How long scheduling or stopping a storage task waits (the main thread answers at once). */
const TASK_ANSWER_MS = 5_000;

/**
 * Asks the main thread (it has the event loop, the server, the storage queue) and waits for the
 * answer on the doorbell, as this thread waits for commands; null when none came in `timeoutMs`.
 * The thread does not sit idle meanwhile: commands for its other VMs run (nestedRun keeps the
 * waiting run's deadline, quota and timer), which is also how a self-request or a storage call
 * served by a VM on this very thread gets its answer instead of waiting for a thread that waits for
 * it. Commands that would touch a VM in the middle of a run wait until the answer is in.
 */
function askMain(programId: number, question: Question, transfer: ArrayBuffer[], timeoutMs: number): unknown {
  const rpc = nextRpc++;
  awaited.add(rpc);
  port.postMessage({ op: 'ask', programId, rpc, question } satisfies WorkerReply, transfer);
  const end = performance.now() + timeoutMs + ANSWER_GRACE_MS;
  const held: WorkerCommand[] = [];
  try {
    for (;;) {
      drain();
      if (answers.has(rpc)) return answers.get(rpc);
      if (performance.now() >= end) return null;
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
      if (left <= 0) return null;
      Atomics.wait(bell, 0, 0, left);
      Atomics.store(bell, 0, 0);
    }
  } finally {
    queue.unshift(...held);
    awaited.delete(rpc);
    answers.delete(rpc);
  }
}

/** sys_fetch for the VMs of a program: the main thread makes the request (guest-fetch.ts). */
function guestFetcher(programId: number): (request: FetchRequest) => FetchResult {
  return (request) => {
    const answer = askMain(programId, { kind: 'fetch', request }, request.body ? [request.body.buffer as ArrayBuffer] : [], request.timeoutMs) as FetchResult | null;
    return answer ?? { ok: false, code: CURLE.OPERATION_TIMEDOUT, message: `no answer within ${request.timeoutMs} ms` };
  };
}

/** The storage calls of a program's VMs: the main thread queues them for its storage VM (storage-host.ts). */
function storageLink(programId: number): StorageLink {
  return {
    call: (call) => {
      const limit = waitLimit(-1);
      const timeoutMs = limit < 0 ? STORAGE_WAIT_MS : limit;
      const question: Question = { kind: 'storageCall', call, deadline: Date.now() + timeoutMs };
      const answer = askMain(programId, question, call.inputs.map((b) => b.buffer as ArrayBuffer), timeoutMs) as StorageCallResult | null;
      // The main thread's clock may say the deadline came a little before this run's does: the wait
      // lasts to the run's own deadline, so the request ends as the timeout it is.
      if (answer?.ok === false && answer.abandoned && timeLeft() !== Infinity) sleep(-1);
      if (answer && !deadlineReached()) return answer;
      // A wait that ran into the request's deadline ends the request as a timeout, as any wait does.
      passedDeadline();
      return { ok: false, reason: `no answer from the storage VM within ${timeoutMs} ms` };
    },
    task: (task) => (askMain(programId, { kind: 'storageTask', task }, [task.data.buffer as ArrayBuffer], TASK_ANSWER_MS) as number | null) ?? -1,
    stopTask: (id) => (askMain(programId, { kind: 'stopStorageTask', id }, [], TASK_ANSWER_MS) as number | null) ?? 0,
  };
}

/** Commands that cannot run while a run waits for an answer: those touching a running VM, and exit. */
function mustWait(c: WorkerCommand): boolean {
  return c.op === 'exit' || ((c.op === 'request' || c.op === 'closeFork' || c.op === 'streamChunk' || c.op === 'streamEnd' || c.op === 'storageCall') && running.has(c.forkId));
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
