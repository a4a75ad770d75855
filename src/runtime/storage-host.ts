/**
 * The main thread's side of a program's storage VM (storage: true; the guest's side is
 * syscalls/api/storage.ts): where it runs, the queue that lets one call in at a time, the tasks and
 * timers, the counters.
 *
 *   start()  boot the storage ELF (KVM_TYPE=storage) until wait_for_requests, then fork the one VM
 *            that serves every call: a fork that is never reset (request-vm.ts, role 'storage')
 *   call()   a request VM's storage_callv, from whichever worker thread it runs on: refused when the
 *            function is not on the allow list; else queued, and skipped when its caller stopped
 *            waiting before its turn came
 *   task()   sys_storage_task: queued now, or on a timer (one-shot or periodic, STORAGE_LIMITS.timers)
 *
 * Tasks wait until the program has started (open()), as the VMOD's do. A worker thread lost with
 * the storage VM on it takes the VM's state with it: a new one is forked from its start state, and
 * the program's log says so.
 */
import { closeSync, openSync } from 'node:fs';
import { TskvmError } from '../errors.js';
import type { FrozenProgram } from '../hypervisor/frozen.js';
import { STORAGE_LIMITS, type StorageCall, type StorageCallResult, type StorageTaskRequest } from '../syscalls/api/storage.js';
import { storageVmOptions, type ResolvedProgramOptions } from './program-options.js';
import { addForkStats, emptyForkStats, STORAGE_CLEANUP_MS, type ForkStats } from './request-vm.js';
import { newVmId, type PoolWorker, type WorkerPool } from './worker-pool.js';
import type { StorageCallKind } from './request-worker.js';

/** Largest state a live update hands from the old storage VM to the new one. */
export const LIVE_STATE_MAX = 256 << 20;

export interface StorageStats extends ForkStats {
  /** Calls and tasks waiting for the storage VM now (the VMOD's name for its queue). */
  tasks_queued: number;
  /** Timers scheduled now (sys_storage_task with a start or a period). */
  tasks_inschedule: number;
  tasks_run: number;
  tasks_failed: number;
  /** Calls refused for a function not on the allow list (sys_storage_allow). */
  calls_refused: number;
  /** Calls whose caller stopped waiting (its deadline) before their turn came: never run. */
  calls_abandoned: number;
}

export class StorageHost {
  private readonly pool: WorkerPool;
  private readonly programId: number;
  /** The storage VM's options (storageVmOptions). */
  private readonly options: ResolvedProgramOptions;
  private readonly log: (line: string) => void;
  /** Set by start(): the storage program as it froze, and its allow list (sys_storage_allow). */
  private frozen: FrozenProgram | null = null;
  private readonly allowed = new Set<number>();
  /** The worker that booted the storage ELF (it keeps the boot's memory), and the one the VM runs on. */
  private home: PoolWorker | null = null;
  private worker: PoolWorker | null = null;
  private forkId = newVmId();
  private forkStats = emptyForkStats();
  private readonly retired = emptyForkStats();
  /** The end of the queue: each call or task starts when the one before it has ended. */
  private tail: Promise<unknown>;
  private opened!: () => void;
  private queued = 0;
  private readonly counters = { tasks_run: 0, tasks_failed: 0, calls_refused: 0, calls_abandoned: 0 };
  private readonly timers = new Map<number, { timer: NodeJS.Timeout; busy: boolean }>();
  private nextTimer = 1;
  private closed = false;
  private readonly stopWatchingPool: () => void;

  constructor(pool: WorkerPool, programId: number, options: ResolvedProgramOptions, log: (line: string) => void) {
    this.pool = pool;
    this.programId = programId;
    this.options = storageVmOptions(options);
    this.log = log;
    this.tail = new Promise<void>((resolve) => (this.opened = resolve));
    this.stopWatchingPool = pool.onReplaced((dead) => this.workerReplaced(dead));
  }

  /**
   * Boots the storage ELF and forks its VM; the program's request VMs come after. The host exists
   * before the boot, so that tasks the storage program schedules in its main() are kept (they run
   * once the program has started).
   */
  async start(file: Uint8Array, exePath: string): Promise<void> {
    const o = this.options;
    // The state file must exist to be allowed (a root that is a file); the storage VM fills it.
    if (o.stateFile) {
      try {
        closeSync(openSync(o.stateFile, 'a'));
      } catch (e) {
        throw new TskvmError('TSKVM_ERR_CONFIG', `the state file ${o.stateFile} cannot be created: ${(e as Error).message}`);
      }
    }
    this.home = this.pool.leastLoaded();
    this.home.placed++;
    try {
      ({ frozen: this.frozen } = await this.home.send<{ frozen: FrozenProgram }>({ op: 'boot', programId: this.programId, file, exePath, options: o, role: 'storage' }, [], o.maxBootTime * 1000));
    } catch (e) {
      if (e instanceof TskvmError) e.message = `the storage VM did not start: ${e.message}`;
      throw e;
    }
    for (const fn of this.frozen.process.state.api.storageAllowed) this.allowed.add(fn);
    // The storage VM stays on the thread that booted it: its program's request VMs then go to the others
    // first, and a long storage call holds up as few of them as can be.
    this.worker = this.home;
    await this.fork(this.worker, this.forkId);
  }

  /** The program has started: queued tasks may run. */
  open(): void {
    this.opened();
  }

  /** A request VM's storage_callv (see the header). */
  call(call: StorageCall, deadline: number): Promise<StorageCallResult> {
    if (this.allowed.size > 0 && !this.allowed.has(call.func)) {
      this.counters.calls_refused++;
      return Promise.resolve({ ok: false, refused: true, reason: `storage_callv: function 0x${call.func.toString(16)} is not on the storage VM's allow list (sys_storage_allow)` });
    }
    // The caller hears at its deadline when the call is still queued then (it is dropped when its turn
    // comes); a call that has started is waited for, so that its caller learns what it did.
    const abandoned: StorageCallResult = { ok: false, abandoned: true, reason: 'the storage VM was not free before the request\'s deadline' };
    return new Promise((resolve) => {
      let gaveUp = false;
      const timer = setTimeout(() => {
        gaveUp = true;
        resolve(abandoned);
      }, Math.max(0, deadline - Date.now())).unref();
      void this.enqueue(async () => {
        if (gaveUp || Date.now() >= deadline) {
          this.counters.calls_abandoned++;
          return;
        }
        clearTimeout(timer);
        resolve(await this.run(call, 'call'));
      });
    });
  }

  /**
   * sys_storage_task: 0 for a task queued now, a timer's id for a scheduled one, −1 when refused. The
   * allow list is checked when the task runs (the storage program may schedule before it is known).
   */
  task(task: StorageTaskRequest): number {
    if (this.closed) return -1;
    if (task.startMs === 0 && task.periodMs === 0) {
      this.queueTask(task);
      return 0;
    }
    if (this.timers.size >= STORAGE_LIMITS.timers) return -1;
    const id = this.nextTimer++;
    const fire = (): void => {
      const entry = this.timers.get(id);
      if (!entry) return;
      if (task.periodMs === 0) this.timers.delete(id);
      // A periodic task whose last run has not ended yet skips this turn instead of piling up.
      if (entry.busy) return;
      entry.busy = true;
      void this.queueTask(task).finally(() => (entry.busy = false));
      if (task.periodMs > 0) {
        entry.timer = setTimeout(fire, task.periodMs).unref();
      }
    };
    this.timers.set(id, { timer: setTimeout(fire, task.startMs).unref(), busy: false });
    return id;
  }

  /** stop_storage_task: 1 when the timer was there and is stopped, else 0. */
  stopTask(id: number): number {
    const entry = this.timers.get(id);
    if (!entry) return 0;
    clearTimeout(entry.timer);
    this.timers.delete(id);
    return 1;
  }

  stats(): StorageStats {
    const totals = { ...this.retired };
    addForkStats(totals, this.forkStats);
    return { ...totals, tasks_queued: this.queued, tasks_inschedule: this.timers.size, ...this.counters };
  }

  /** Stops the timers, lets what is queued finish, and closes the VM and its boot. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.opened();
    await this.tail.catch(() => undefined);
    this.stopWatchingPool();
    if (this.worker) {
      await this.worker.send({ op: 'closeFork', forkId: this.forkId }).catch(() => undefined);
      this.worker.placed--;
    }
    if (this.home) {
      await this.home.send({ op: 'closeProgram', programId: this.programId, role: 'storage' }).catch(() => undefined);
      this.home.placed--;
    }
  }

  private queueTask(task: StorageTaskRequest): Promise<unknown> {
    return this.enqueue(async () => {
      const result: StorageCallResult = this.allowed.size > 0 && !this.allowed.has(task.func)
        ? { ok: false, reason: 'the function is not on the storage VM\'s allow list (sys_storage_allow)' }
        : await this.run({ func: task.func, inputs: [task.data], resultMax: 0 }, 'task');
      if (result.ok) this.counters.tasks_run++;
      else {
        this.counters.tasks_failed++;
        this.log(`tskvm: storage task 0x${task.func.toString(16)} failed: ${result.reason}`);
      }
    });
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    this.queued++;
    const done = this.tail.then(job).finally(() => this.queued--);
    this.tail = done.catch(() => undefined);
    return done;
  }

  /**
   * Live update, old side: the state on_live_update() hands over (see RequestVm.liveSave), after the
   * calls queued before it; null when the program has no on_live_update.
   */
  liveSave(): Promise<StorageCallResult | null> {
    return this.enqueue(() => this.run({ func: 0, inputs: [], resultMax: LIVE_STATE_MAX }, 'liveSave'));
  }

  /** Live update, new side: on_live_restore(len) takes `data` in; null when the program has none. */
  liveRestore(data: Uint8Array): Promise<StorageCallResult | null> {
    return this.enqueue(() => this.run({ func: 0, inputs: [data], resultMax: 0 }, 'liveRestore'));
  }

  private run(call: StorageCall, kind: 'call' | 'task'): Promise<StorageCallResult>;
  private run(call: StorageCall, kind: StorageCallKind): Promise<StorageCallResult | null>;
  private async run(call: StorageCall, kind: StorageCallKind): Promise<StorageCallResult | null> {
    if (this.closed && kind === 'call') return { ok: false, reason: 'the program is closing' };
    if (!this.worker) return { ok: false, reason: 'the storage VM did not start' };
    const timeMs = this.options.maxStorageTime * 1000;
    try {
      const { result, stats } = await this.worker.send<{ result: StorageCallResult | null; stats: ForkStats }>(
        { op: 'storageCall', forkId: this.forkId, kind, call, timeMs }, call.inputs.map((b) => b.buffer as ArrayBuffer),
        kind === 'liveRestore' ? 2 * timeMs : timeMs + STORAGE_CLEANUP_MS);
      this.forkStats = stats;
      return result;
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
  }

  private async fork(worker: PoolWorker, forkId: number): Promise<void> {
    worker.placed++;
    await worker.send({ op: 'fork', programId: this.programId, forkId, index: 0, frozen: this.frozen!, options: this.options, role: 'storage' });
  }

  /** The storage VM's worker died: its state is lost; a new VM starts from the storage program's start state. */
  private workerReplaced(dead: PoolWorker): void {
    if (this.home === dead) this.home = null;
    if (this.worker !== dead || this.closed) return;
    addForkStats(this.retired, this.forkStats);
    this.forkStats = emptyForkStats();
    this.worker = this.pool.leastLoaded();
    this.forkId = newVmId();
    this.log(`tskvm: the storage VM was lost with worker thread ${dead.index}; a new one starts from the storage program's start state`);
    const replaced = this.fork(this.worker, this.forkId).catch((e: Error) => this.log(`tskvm: the storage VM could not be replaced: ${e.message}`));
    // Calls queued behind the replacement wait for it.
    this.tail = this.tail.then(() => replaced);
  }
}
