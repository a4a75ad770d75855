/**
 * The fixed pool of worker threads that run VMs (docs/ARCHITECTURE.md, "Threads"), one per core
 * by default, shared by every program of the process. Each worker owns the
 * VMs placed on it; a command names the VM and travels over the worker's
 * MessagePort, with a ring of a shared doorbell to wake it (request-worker.ts).
 *
 * The pool lives while programs use it: the first Program.load starts it, the
 * last close() stops it, so an idle process exits normally.
 */
import { availableParallelism } from 'node:os';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { TskvmError } from '../errors.js';
import { CURLE, type FetchResult } from '../syscalls/api/fetch.js';
import type { StorageCallResult } from '../syscalls/api/storage.js';
import type { Question, WorkerCommand, WorkerReply } from './request-worker.js';

/**
 * Request and response bodies from this size on move between the threads (a copy of their own, in
 * the transfer list) instead of being structured-cloned, which copies twice: 1 MiB each way is
 * ~0.3 ms here.
 */
export const TRANSFER_MIN = 16 << 10;

let lastVmId = 0;
/** A number for a new VM placed on a worker (a request VM, a storage VM): unique in the process. */
export function newVmId(): number {
  return ++lastVmId;
}

type Command = WorkerCommand extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  /** What the command is, for the watchdog's message. */
  op: string;
  /** How long the worker may take over it, from when it could start. */
  limitMs: number;
  sent: number;
  /** Time from sending by which it must have started, else it is cancelled (TSKVM_ERR_WORKER_BUSY). */
  startWithinMs: number;
}

/**
 * Time a worker gets beyond a command's own limit (a request's max_request_time, a boot's
 * max_boot_time) before the watchdog calls it stuck: the reset after a request, a slow machine.
 */
export const WORKER_GRACE_MS = 5_000;
/** The limit of commands with none of their own (forking, closing). */
const COMMAND_LIMIT_MS = 60_000;
const WATCHDOG_PERIOD_MS = 250;

/**
 * Testing only (TSKVM_TEST_WORKER_FAULTS=1): a request for one of these URLs makes the worker thread
 * hang or exit, as a host-side bug would, so that tests can watch the pool replace it.
 */
export const WORKER_FAULT_URLS = { hang: '/tskvm-test/hang-worker', exit: '/tskvm-test/exit-worker' } as const;

export class PoolWorker {
  readonly index: number;
  /** VMs placed here (load balancing). */
  placed = 0;
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly bell: Int32Array;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private dead: Error | null = null;
  /** When the worker last finished a command (or was ready for its first): the next one could start then. */
  private lastReply = 0;
  /** Set once the thread has loaded its code, which can take seconds (under a TypeScript loader, say). */
  private ready = false;
  private watchdog: NodeJS.Timeout | null = null;
  /** Commands the worker runs inside another that waits in a sys_fetch, innermost last (request-worker.ts). */
  private readonly nested: Array<{ id: number; started: number }> = [];
  private readonly onDead: (worker: PoolWorker, error: Error) => void;

  constructor(index: number, hooks: (programId: number) => ProgramHooks | undefined, onDead: (worker: PoolWorker, error: Error) => void) {
    this.index = index;
    this.onDead = onDead;
    const { port1, port2 } = new MessageChannel();
    const doorbell = new SharedArrayBuffer(4);
    this.bell = new Int32Array(doorbell);
    this.port = port1;
    this.worker = new Worker(new URL('./request-worker.js', import.meta.url), {
      workerData: { port: port2, doorbell }, transferList: [port2],
    });
    port1.on('message', (m: WorkerReply) => {
      if (m.op === 'log') {
        const log = hooks(m.programId)?.log;
        if (log) for (const line of m.lines) log(line);
        return;
      }
      if (m.op === 'ask') {
        const ask = hooks(m.programId)?.ask;
        void (ask ? ask(m.question) : Promise.reject(new Error('the program is gone'))).catch((e: Error) => unanswered(m.question, e.message))
          .then((answer) => this.answer(m.rpc, answer));
        return;
      }
      this.lastReply = performance.now();
      if (m.op === 'ready') {
        this.ready = true;
        return;
      }
      if (m.op === 'nested') {
        this.nested.push({ id: m.id, started: this.lastReply });
        return;
      }
      if (this.nested.at(-1)?.id === m.id) this.nested.pop();
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.op === 'done') p.resolve(m.value);
      else p.reject(Object.assign(new TskvmError(m.error.code, m.error.message, (m.error.details ?? {}) as Record<string, unknown>)));
    });
    this.worker.on('error', (e) => this.fail(new TskvmError('TSKVM_ERR_WORKER', `worker thread ${index} failed: ${e.message}`)));
    this.worker.on('exit', (code) => this.fail(new TskvmError('TSKVM_ERR_WORKER', `worker thread ${index} exited (code ${code})`)));
    this.idle();
  }

  get alive(): boolean {
    return this.dead === null;
  }

  /**
   * Sends a command; the worker may take `limitMs` over it (plus WORKER_GRACE_MS) before it counts as
   * stuck. One that has not started `startWithinMs` after it was sent (the worker is busy with others
   * all that time) is cancelled and fails with TSKVM_ERR_WORKER_BUSY.
   */
  send<T>(command: Command, transfer: ArrayBuffer[] = [], limitMs = COMMAND_LIMIT_MS, startWithinMs = Infinity): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    const promise = new Promise<T>((resolve, reject) => this.pending.set(id, {
      resolve: resolve as (v: unknown) => void, reject, op: command.op, limitMs, sent: performance.now(), startWithinMs,
    }));
    if (this.pending.size === 1) this.busy();
    this.port.postMessage({ ...command, id }, transfer);
    Atomics.add(this.bell, 0, 1);
    Atomics.notify(this.bell, 0);
    return promise.finally(() => {
      if (this.pending.size === 0) this.idle();
    });
  }

  /** The answer to a worker's question: it waits on the doorbell, not for an event-loop turn. */
  private answer(rpc: number, answer: unknown): void {
    if (this.dead) return;
    const bytes = (answer as { body?: Uint8Array; data?: Uint8Array } | null)?.body ?? (answer as { data?: Uint8Array } | null)?.data;
    const own = bytes instanceof Uint8Array && bytes.byteLength >= TRANSFER_MIN && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    this.port.postMessage({ op: 'answer', id: 0, rpc, answer } satisfies WorkerCommand, own ? [bytes.buffer as ArrayBuffer] : []);
    Atomics.add(this.bell, 0, 1);
    Atomics.notify(this.bell, 0);
  }

  async terminate(): Promise<void> {
    if (this.dead) return;
    await this.send({ op: 'exit' }).catch(() => undefined);
    await this.worker.terminate();
  }

  // An idle pool must not keep the process alive; one with work in flight must.
  private idle(): void {
    this.port.unref();
    this.worker.unref();
  }

  // The watchdog stops itself at a tick that finds nothing pending, not at every reply: under load
  // that would be a timer created and cleared per request.
  private busy(): void {
    this.port.ref();
    this.worker.ref();
    this.watchdog ??= setInterval(() => this.checkProgress(), WATCHDOG_PERIOD_MS).unref();
  }

  /**
   * The worker runs its commands in order, so the oldest pending one is in progress, since its
   * sending or the previous reply, whichever came later. Past its limit and the grace, the thread
   * is stuck: its commands fail, and Node is asked to stop it (which works for a thread running
   * JavaScript; one blocked inside a host call cannot be stopped, which is why every wait in a
   * syscall handler is a poll bounded by the deadline).
   */
  private checkProgress(): void {
    const head = this.pending.values().next().value as Pending | undefined;
    if (!head) {
      clearInterval(this.watchdog!);
      this.watchdog = null;
      return;
    }
    if (!this.ready) return;
    this.cancelLate(head);
    // The command the thread is in now: the innermost nested one, timed by its own limit, else the head.
    const inner = this.nested.at(-1);
    const current = (inner && this.pending.get(inner.id)) || head;
    const runningMs = performance.now() - (current === head ? Math.max(head.sent, this.lastReply) : inner!.started);
    if (runningMs <= current.limitMs + WORKER_GRACE_MS) return;
    this.fail(new TskvmError('TSKVM_ERR_WORKER_STUCK',
      `worker thread ${this.index} did not finish a ${current.op} within ${((current.limitMs + WORKER_GRACE_MS) / 1000).toFixed(1)} s; it was replaced`));
    this.worker.terminate().catch(() => undefined);
  }

  /**
   * Commands queued behind `head` (the one in progress) past their start deadline: a request of one
   * program must not wait for another program's slow request beyond its own max_request_time.
   */
  private cancelLate(head: Pending): void {
    const now = performance.now();
    for (const [id, p] of this.pending) {
      if (p === head || now - p.sent <= p.startWithinMs) continue;
      this.pending.delete(id);
      this.port.postMessage({ op: 'cancel', id: 0, target: id } satisfies WorkerCommand);
      p.reject(new TskvmError('TSKVM_ERR_WORKER_BUSY',
        `the worker thread was busy with other requests for all of ${(p.startWithinMs / 1000).toFixed(1)} s (max_request_time); the ${p.op} did not run`));
    }
    if (this.pending.size === 0) this.idle();
  }

  private fail(error: Error): void {
    if (this.dead) return;
    this.dead = error;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    this.idle();
    this.onDead(this, error);
  }
}

/** What the main thread does for a program's VMs, wherever they run: take their log lines, answer their questions. */
export interface ProgramHooks {
  log: (line: string) => void;
  ask?: (question: Question) => Promise<unknown>;
}

/** The answer to a question nobody could answer (the program is gone, its handler failed): each call's failure value. */
function unanswered(question: Question, why: string): unknown {
  switch (question.kind) {
    case 'fetch': return { ok: false, code: CURLE.COULDNT_CONNECT, message: why } satisfies FetchResult;
    case 'storageCall': return { ok: false, reason: why } satisfies StorageCallResult;
    case 'storageTask': return -1;
    case 'stopStorageTask': return 0;
  }
}

export class WorkerPool {
  readonly workers: PoolWorker[];
  private readonly programHooks = new Map<number, ProgramHooks>();
  private readonly replacedListeners = new Set<(dead: PoolWorker) => void>();
  private stopping = false;

  constructor(size = Math.max(1, availableParallelism())) {
    this.workers = Array.from({ length: size }, (_, i) => this.startWorker(i));
  }

  /** The worker with the fewest VMs placed on it. */
  leastLoaded(): PoolWorker {
    return this.workers.reduce((a, b) => (b.placed < a.placed ? b : a));
  }

  /** Where a program's log lines and fetches go (they arrive from whichever worker runs it); null when it is gone. */
  setProgramHooks(programId: number, hooks: ProgramHooks | null): void {
    if (hooks) this.programHooks.set(programId, hooks);
    else this.programHooks.delete(programId);
  }

  /** Calls `listener` when a worker died or got stuck and a new one took its place; returns the unsubscribe. */
  onReplaced(listener: (dead: PoolWorker) => void): () => void {
    this.replacedListeners.add(listener);
    return () => this.replacedListeners.delete(listener);
  }

  async terminate(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private startWorker(index: number): PoolWorker {
    return new PoolWorker(index, (id) => this.programHooks.get(id), (dead) => {
      if (this.stopping || this.workers[index] !== dead) return;
      this.workers[index] = this.startWorker(index);
      for (const listener of this.replacedListeners) listener(dead);
    });
  }
}

let shared: WorkerPool | null = null;
let sharedUsers = 0;

/** The process's pool, started on first use. */
export function acquirePool(): WorkerPool {
  shared ??= new WorkerPool();
  sharedUsers++;
  return shared;
}

/** Gives the pool back; the last user stops it. */
export async function releasePool(pool: WorkerPool): Promise<void> {
  if (pool !== shared) return;
  if (--sharedUsers === 0) {
    shared = null;
    await pool.terminate();
  }
}
