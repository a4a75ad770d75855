/**
 * The fixed pool of worker threads that run VMs (DESIGN.md #7), one per core
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
import type { WorkerCommand, WorkerReply } from './request-worker.js';

/**
 * Request and response bodies from this size on move between the threads (a copy of their own, in
 * the transfer list) instead of being structured-cloned, which copies twice: 1 MiB each way is
 * ~0.3 ms here.
 */
export const TRANSFER_MIN = 16 << 10;

type Command = WorkerCommand extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

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

  constructor(index: number, onLog: (programId: number, line: string) => void) {
    this.index = index;
    const { port1, port2 } = new MessageChannel();
    const doorbell = new SharedArrayBuffer(4);
    this.bell = new Int32Array(doorbell);
    this.port = port1;
    this.worker = new Worker(new URL('./request-worker.js', import.meta.url), {
      workerData: { port: port2, doorbell }, transferList: [port2],
    });
    port1.on('message', (m: WorkerReply) => {
      if (m.op === 'log') {
        for (const line of m.lines) onLog(m.programId, line);
        return;
      }
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.op === 'done') p.resolve(m.value);
      else p.reject(Object.assign(new TskvmError(m.error.code, m.error.message, (m.error.details ?? {}) as Record<string, unknown>)));
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new TskvmError('TSKVM_ERR_WORKER', `worker thread ${index} exited (code ${code})`)));
    this.idle();
  }

  send<T>(command: Command, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    const promise = new Promise<T>((resolve, reject) => this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject }));
    if (this.pending.size === 1) this.busy();
    this.port.postMessage({ ...command, id }, transfer);
    Atomics.add(this.bell, 0, 1);
    Atomics.notify(this.bell, 0);
    return promise.finally(() => {
      if (this.pending.size === 0) this.idle();
    });
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

  private busy(): void {
    this.port.ref();
    this.worker.ref();
  }

  private fail(error: Error): void {
    if (this.dead) return;
    this.dead = error;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }
}

export class WorkerPool {
  readonly workers: PoolWorker[];
  private readonly logSinks = new Map<number, (line: string) => void>();

  constructor(size = Math.max(1, availableParallelism())) {
    this.workers = Array.from({ length: size }, (_, i) => new PoolWorker(i, (id, line) => this.logSinks.get(id)?.(line)));
  }

  /** The worker with the fewest VMs placed on it. */
  leastLoaded(): PoolWorker {
    return this.workers.reduce((a, b) => (b.placed < a.placed ? b : a));
  }

  /** Where a program's log lines go (they arrive from whichever worker runs it). */
  setLogSink(programId: number, onLog: ((line: string) => void) | null): void {
    if (onLog) this.logSinks.set(programId, onLog);
    else this.logSinks.delete(programId);
  }

  async terminate(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
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
