/**
 * A process's threads on one vCPU, and the scheduler that shares the vCPU between them.
 *
 * The model is TinyKVM's: a program's threads take turns on the one vCPU its VM has. The running
 * thread's registers are in the vCPU; every other thread is a saved register context (general
 * registers, vector registers, segment bases) waiting for its turn. A thread gives the vCPU up when
 * it blocks (a futex wait, a sleep, sched_yield, a wait for a host file) or exits, and when its time
 * slice ends (the run timer interrupts KVM_RUN: src/hypervisor/run-loop.ts), so a thread spinning on
 * a lock cannot starve the one that holds it.
 *
 * Why one vCPU and not one per thread: a request VM is reset after every request, and its reset
 * restores one vCPU's state; several vCPUs would multiply that cost, need a host thread each (the
 * worker pool gives every VM one), and make every piece of emulated process state shared between
 * host threads. Programs that start threads for throughput get none on one vCPU, but they run, and
 * run the same as natively; the per-request model already gives a server its parallelism.
 *
 * Switching is decided here (which thread runs next, what a waiting thread gets when its wait
 * ends); saving and loading a context is the vCPU's business (CpuControl, src/hypervisor/thread-context.ts).
 * A deadlock — every thread waiting on a futex with no timeout — ends the process with a diagnosis.
 */
import { E } from '../host/errno.js';
import { errno as lastErrno, libc } from '../host/libc.js';
import { nextTimerWake, passedDeadline, signalInterrupts, waitLimit } from './deadline.js';
import { ThreadSignalState, type ThreadSignalSnapshot } from './signal-state.js';

/** A thread's registers while it does not run, as the vCPU code saved them: plain data, so it crosses threads. */
export interface ThreadContext {
  /** struct kvm_regs as 32-bit words. */
  regs: Uint32Array;
  /** The XSAVE area (x87/SSE/AVX). */
  xsave: Uint8Array;
  fsBase: number;
  gsBase: number;
}

/** What a parked thread waits for; `until` is a wall-clock time in ms (Infinity: no timeout). */
export type ThreadWait =
  /** futex wait: ended by a wake on `addr` whose bitset meets `bitset` (result 0), or the timeout (-ETIMEDOUT). */
  | { kind: 'futex'; addr: number; bitset: number; until: number }
  /** A sleep: ends at `until` with 0. */
  | { kind: 'sleep'; until: number }
  /** A call that would block on host files: it runs again once one is ready (`ready`), or returns `onTimeout` at `until`. */
  | { kind: 'file'; files: Array<{ hostFd: number; events: number }>; until: number; onTimeout: number; ready: boolean }
  /** rt_sigtimedwait: runs again once a signal of `want` is pending for the thread, or returns -EAGAIN at `until`. */
  | { kind: 'signal'; want: bigint; until: number };

export interface GuestThread {
  tid: number;
  /** set_tid_address / CLONE_CHILD_CLEARTID: zeroed and woken when the thread exits. */
  clearChildTid: number;
  /** set_robust_list's head (0: none). */
  robustList: number;
  /** prctl(PR_SET_NAME), NUL-padded. */
  name: Uint8Array;
  /** Its signal mask, alternate stack and pending signals (Process.threadSignals is the running one's). */
  signals: ThreadSignalState;
  /** Saved registers; null for the thread that is running. */
  context: ThreadContext | null;
  /** null: runnable. */
  wait: ThreadWait | null;
  /** How it goes on when it runs again (see Resume). */
  resume: Resume;
}

/**
 * How a parked thread goes on: a number is its call's result (rax); 'retry' runs the call it blocked
 * in once more; 'asis' resumes an interrupted thread with its registers exactly as they were.
 */
export type Resume = number | 'retry' | 'asis';

/** What the vCPU code does for the scheduler (CpuControl's thread part). */
export interface ContextSwitch {
  /**
   * The running thread's registers as they will be when it runs on: after its call, with rax as set
   * (or, `exact`, wherever the time slice interrupted it: null where it cannot be left); its
   * segment bases are the ones given.
   */
  saveContext(exact: boolean, fsBase: number, gsBase: number): ThreadContext | null;
  /** Makes `ctx` the running thread's registers, going on as `resume` says. */
  loadContext(ctx: ThreadContext, resume: Resume): void;
  /** The running thread's call ends as `resume` says (a number or 'retry'), with no switch. */
  finishCall(resume: Resume): void;
  /** A new thread's first registers: the running thread's as its clone call returns, with rax 0, rsp `stack` (0: the same). */
  childContext(stack: number, fsBase: number, gsBase: number): ThreadContext;
}

/** Wall-clock ms: comparable across host threads, as a frozen program's waits move between them. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Threads a process may have at once (Linux's default for a small machine is in the thousands; a sandbox needs fewer). */
export const MAX_THREADS = 512;

/** Robust-list entries walked at a thread's exit, as Linux's ROBUST_LIST_LIMIT. */
const ROBUST_LIST_LIMIT = 2048;
const FUTEX_OWNER_DIED = 0x4000_0000;
const FUTEX_WAITERS = 0x8000_0000;
const FUTEX_TID_MASK = 0x3fff_ffff;

/** A thread as plain data. */
type FrozenThread = Omit<GuestThread, 'signals'> & { signals: ThreadSignalSnapshot };

export interface FrozenThreads {
  current: FrozenThread;
  parked: FrozenThread[];
  nextTid: number;
}

/** What the scheduler needs of the process: its memory for futex words, and its exit. */
export interface ThreadHost {
  mem: { u32(addr: number): number; setU32(addr: number, value: number): void; check(addr: number, len: number): void; u64(addr: number): number };
  cpu: ContextSwitch | null;
  /** The running thread's segment bases. */
  fsBase: number;
  gsBase: number;
  exit: { status: number; signal?: number; reason?: string } | null;
  /** The process-directed pending signals (a thread waiting for one in rt_sigtimedwait takes it). */
  signals: { pending: { readonly set: bigint } };
}

export class ThreadTable {
  current: GuestThread;
  /** The threads not running, in turn order. */
  private parked: GuestThread[] = [];
  private nextTid: number;
  /** Set by a call after which the running thread cannot (or should not) go on: the run loop switches. */
  switchWanted = false;
  /** The running thread exited: it is not saved at the switch. */
  private currentExited = false;

  constructor(mainTid: number) {
    this.current = newThread(mainTid);
    this.nextTid = mainTid + 1;
  }

  get count(): number {
    return this.parked.length + (this.currentExited ? 0 : 1);
  }

  /** Whether some other thread could run now (the time slice is worth ending). */
  othersRunnable(): boolean {
    return this.parked.some((t) => t.wait === null);
  }

  find(tid: number): GuestThread | undefined {
    return tid === this.current.tid && !this.currentExited ? this.current : this.parked.find((t) => t.tid === tid);
  }

  /**
   * A new thread, runnable, starting from `context`, with the running thread's signal mask (its
   * alternate stack and pending signals are its own: none); null past MAX_THREADS.
   */
  spawn(context: ThreadContext): GuestThread | null {
    if (this.count >= MAX_THREADS) return null;
    const t = newThread(this.nextTid++);
    t.signals.blocked = this.current.signals.blocked;
    t.context = context;
    t.resume = 0;
    this.parked.push(t);
    return t;
  }

  /** The running thread waits; the call's result is what ends the wait (see ThreadWait). */
  block(wait: ThreadWait): void {
    this.current.wait = wait;
    this.switchWanted = true;
  }

  /** sched_yield: another runnable thread gets the vCPU; the caller goes to the back. */
  yield(): void {
    if (this.othersRunnable()) this.switchWanted = true;
  }

  /**
   * The running thread ends (exit, not exit_group): its clear_child_tid word is zeroed and woken (what
   * pthread_join waits on), its robust futexes marked as their owner's death. False when it was the
   * last thread: then the process ends.
   */
  exitCurrent(host: ThreadHost): boolean {
    const t = this.current;
    this.releaseRobustList(host, t);
    if (t.clearChildTid) {
      try {
        host.mem.setU32(t.clearChildTid, 0);
        this.wake(t.clearChildTid, 1, -1);
      } catch { /* a bad address: Linux ignores it too */ }
    }
    if (this.parked.length === 0) return false;
    this.currentExited = true;
    this.switchWanted = true;
    return true;
  }

  /** Wakes up to `n` threads waiting on the futex at `addr` whose bitset meets `bitset`; how many woke. */
  wake(addr: number, n: number, bitset: number): number {
    let woken = 0;
    for (const t of this.parked) {
      if (woken >= n) break;
      const w = t.wait;
      if (w?.kind === 'futex' && w.addr === addr && (w.bitset & bitset) !== 0) {
        t.wait = null;
        t.resume = 0;
        woken++;
      }
    }
    return woken;
  }

  /**
   * A signal for thread `t` has come that it does not block: if it is parked, its wait ends with
   * EINTR and it runs next, to take the signal (its call returns as interrupted, SA_RESTART or not).
   */
  interrupt(t: GuestThread): void {
    if (t === this.current || !t.wait) return;
    t.wait = null;
    t.resume = -E.EINTR;
  }

  /**
   * The signals threads wait for in rt_sigtimedwait: blocked, they still end a wait when a timer
   * raises them (deadline.ts's SignalWake).
   */
  awaitedSignals(): bigint {
    let want = 0n;
    // The running thread too: the last to block stays current while the table waits for something.
    for (const t of this.currentExited ? this.parked : [this.current, ...this.parked]) if (t.wait?.kind === 'signal') want |= t.wait.want;
    return want;
  }

  /** The signals no thread would take now: each blocks them, and none waits for them. */
  unwantedSignals(): bigint {
    let mask = this.currentExited ? -1n : this.current.signals.blocked;
    for (const t of this.parked) mask &= t.signals.blocked;
    return mask & ~this.awaitedSignals();
  }

  /**
   * Where a signal sent to the process (not to one thread) goes, as Linux's complete_signal: a
   * thread waiting for it in rt_sigtimedwait takes it there (endWaits); else, when the running thread
   * blocks it, a parked thread that does not stops waiting, to take it.
   */
  processSignalSent(bit: bigint): void {
    if (this.parked.some((t) => t.wait?.kind === 'signal' && (t.wait.want & bit) !== 0n)) return;
    if (!this.currentExited && (this.current.signals.blocked & bit) === 0n) return;
    const taker = this.parked.find((t) => (t.signals.blocked & bit) === 0n);
    if (taker) this.interrupt(taker);
  }

  /** FUTEX_REQUEUE: wakes `n` waiters on `addr`, moves up to `m` more to wait on `to`; woken + moved. */
  requeue(addr: number, n: number, to: number, m: number): number {
    const woken = this.wake(addr, n, -1);
    let moved = 0;
    for (const t of this.parked) {
      if (moved >= m) break;
      const w = t.wait;
      if (w?.kind === 'futex' && w.addr === addr) {
        w.addr = to;
        moved++;
      }
    }
    return woken + moved;
  }

  /**
   * Gives the vCPU to the next thread that can run: the first runnable parked thread, else the running
   * one if it can go on. When none can, waits — for a sleep or a futex timeout to end, for a host
   * file — within the run's deadline. Every thread waiting on a futex with nothing to end it is a
   * deadlock: the process ends with a diagnosis. Returns false when the deadline ended the wait (the
   * run loop ends the run) or the process ended.
   */
  switchThreads(host: ThreadHost): boolean {
    this.switchWanted = false;
    const cpu = host.cpu!;
    const out = this.current;
    let next: GuestThread | null;
    for (;;) {
      this.endWaits(host);
      next = this.parked.find((t) => t.wait === null) ?? (!this.currentExited && out.wait === null ? out : null);
      if (next) break;
      if (!this.waitForSomething(host)) return false;
    }
    if (next === out) {
      // The running thread goes on: its wait ended while nothing else could run.
      cpu.finishCall(out.resume);
      out.resume = 0;
      return true;
    }
    if (!this.currentExited) {
      out.context = cpu.saveContext(false, host.fsBase, host.gsBase)!;
      // A thread that blocked gets its result when its wait ends; one that yields returns 0.
      if (out.wait === null) out.resume = 0;
      this.parked.push(out);
    }
    this.run(next, host);
    return true;
  }

  /**
   * The time slice ended: the running thread, interrupted anywhere, goes to the back of the line if
   * another can run. Returns whether it switched.
   */
  preempt(host: ThreadHost): boolean {
    this.endWaits(host);
    const next = this.parked.find((t) => t.wait === null);
    if (!next) return false;
    const out = this.current;
    out.context = host.cpu!.saveContext(true, host.fsBase, host.gsBase);
    if (!out.context) return false;
    out.resume = 'asis';
    this.parked.push(out);
    this.run(next, host);
    return true;
  }

  /** `next`, parked, gets the vCPU. */
  private run(next: GuestThread, host: ThreadHost): void {
    this.currentExited = false;
    this.parked.splice(this.parked.indexOf(next), 1);
    this.current = next;
    const { context, resume } = next;
    next.context = null;
    next.resume = 0;
    host.cpu!.loadContext(context!, resume);
    host.fsBase = context!.fsBase;
    host.gsBase = context!.gsBase;
  }

  /**
   * Ends the waits whose time has come, the running thread's too (it may be the one that blocked): a
   * timeout, a file ready, a signal awaited pending.
   */
  private endWaits(host: ThreadHost): void {
    const now = wallMs();
    // Signals the process has pending (a timer's, say) go where a thread takes them.
    for (let shared = host.signals.pending.set; shared !== 0n; shared &= shared - 1n) this.processSignalSent(shared & -shared);
    const end = (t: GuestThread): void => {
      const w = t.wait;
      if (!w) return;
      if (w.kind === 'signal' && (w.want & (t.signals.pending.set | host.signals.pending.set)) !== 0n) {
        t.wait = null;
        t.resume = 'retry';
        return;
      }
      if (w.until > now && !(w.kind === 'file' && w.ready)) return;
      t.wait = null;
      t.resume = w.kind === 'futex' ? -E.ETIMEDOUT : w.kind === 'sleep' ? 0 : w.kind === 'signal' ? -E.EAGAIN : w.ready ? 'retry' : w.onTimeout;
    };
    this.parked.forEach(end);
    if (!this.currentExited) end(this.current);
  }

  /**
   * Nothing can run: wait for the earliest timeout or a host file of a 'file' wait. False when the
   * deadline came first, or nothing could ever end the waits (a deadlock: the process ends).
   */
  private waitForSomething(host: ThreadHost): boolean {
    const waits = this.parked.map((t) => t.wait!).filter(Boolean);
    if (!this.currentExited && this.current.wait) waits.push(this.current.wait);
    const files = waits.filter((w): w is Extract<ThreadWait, { kind: 'file' }> => w.kind === 'file');
    const until = Math.min(...waits.map((w) => w.until));
    if (files.length === 0 && until === Infinity) {
      const who = this.count > 1 ? `all ${this.count} threads wait` : 'the only thread waits';
      const on = waits.every((w) => w.kind === 'futex') ? 'on a futex' : 'on futexes, in pause or for signals';
      if (nextTimerWake() === Infinity) {
        host.exit = { status: 128 + 6, signal: 6, reason: `deadlock: ${who} ${on} and nobody can wake ${this.count > 1 ? 'them' : 'it'}` };
        return false;
      }
    }
    // The guest's own timers end the wait too, when one is due (deadline.ts, SignalWake).
    const timerAt = nextTimerWake();
    const wakeAt = Math.min(until, timerAt === Infinity ? Infinity : wallMs() + (timerAt - performance.now()));
    const ms = wakeAt === Infinity ? -1 : Math.max(0, Math.ceil(wakeAt - wallMs()));
    const entries = files.flatMap((w) => w.files.map((f) => ({ wait: w, ...f })));
    const fds = Buffer.alloc(entries.length * 8);
    entries.forEach((e, i) => { fds.writeInt32LE(e.hostFd, i * 8); fds.writeUInt16LE(e.events, i * 8 + 4); });
    const n = libc.poll(fds, entries.length, waitLimit(ms)) as number;
    if (n < 0 && lastErrno() !== E.EINTR) throw new Error(`poll of ${entries.length} host files failed: errno ${lastErrno()}`);
    // A wait with a file ready ends at the next look (POLLNVAL too: the call runs again and fails).
    if (n > 0) entries.forEach((e, i) => { if (fds.readUInt16LE(i * 8 + 6) !== 0) e.wait.ready = true; });
    else if (passedDeadline()) return false;
    // The timers that are due fire whoever waits (a signalfd's reader sees its signal at the next look).
    if (signalInterrupts() && !this.currentExited && this.current.wait) {
      // A timer's signal the running thread takes: its wait ends, interrupted.
      this.current.wait = null;
      this.current.resume = -E.EINTR;
    }
    return true;
  }

  /** Linux's exit_robust_list: each futex the thread holds gets FUTEX_OWNER_DIED and one waiter woken. */
  private releaseRobustList(host: ThreadHost, t: GuestThread): void {
    if (!t.robustList) return;
    try {
      const head = t.robustList;
      const offset = host.mem.u64(head + 8) | 0; // futex_offset (a long: small and signed in practice)
      const pending = host.mem.u64(head + 16);
      let entry = host.mem.u64(head);
      for (let i = 0; entry !== head && entry !== 0 && i < ROBUST_LIST_LIMIT; i++) {
        const next = host.mem.u64(entry);
        if (entry !== pending) this.ownerDied(host, t.tid, entry + offset);
        entry = next;
      }
      if (pending) this.ownerDied(host, t.tid, pending + offset);
    } catch { /* a bad list ends the walk, as in Linux */ }
  }

  private ownerDied(host: ThreadHost, tid: number, addr: number): void {
    if (addr % 4 !== 0) return;
    const word = host.mem.u32(addr);
    if ((word & FUTEX_TID_MASK) !== tid) return;
    host.mem.setU32(addr, ((word & FUTEX_WAITERS) | FUTEX_OWNER_DIED) >>> 0);
    if (word & FUTEX_WAITERS) this.wake(addr, 1, -1);
  }

  /** The table as plain data: a fork starts with these threads, a reset goes back to them. */
  freeze(): FrozenThreads {
    return {
      current: { ...freezeThread(this.current), context: null, wait: null, resume: 0 },
      parked: this.parked.map(freezeThread),
      nextTid: this.nextTid,
    };
  }

  thaw(f: FrozenThreads): void {
    const c = this.current;
    if (c.tid === f.current.tid) {
      // The same running thread (every reset of a program that started none): its objects are reused.
      c.clearChildTid = f.current.clearChildTid;
      c.robustList = f.current.robustList;
      c.name.set(f.current.name);
      c.signals.restore(f.current.signals);
      c.context = null;
      c.wait = null;
      c.resume = 0;
    } else {
      this.current = { ...thawThread(f.current), context: null, wait: null, resume: 0 };
    }
    // A wait on host files names the fds of the process that froze (a fork's epoll sets, eventfds and
    // timerfds are its own, made anew): the call runs again, and waits on this process's if it must.
    this.parked = f.parked.length === 0 ? [] : f.parked.map((frozen) => {
      const t = thawThread(frozen);
      if (t.wait?.kind === 'file') t.wait.ready = true;
      return t;
    });
    this.nextTid = f.nextTid;
    this.currentExited = false;
    this.switchWanted = false;
  }
}

function newThread(tid: number): GuestThread {
  return { tid, clearChildTid: 0, robustList: 0, name: new Uint8Array(16), signals: new ThreadSignalState(), context: null, wait: null, resume: 0 };
}

/** A thread as plain data (contexts are never changed once saved: shared). */
function freezeThread(t: GuestThread): FrozenThread {
  return { ...t, name: Uint8Array.from(t.name), wait: t.wait && { ...t.wait }, signals: t.signals.snapshot() };
}

function thawThread(f: FrozenThread): GuestThread {
  const signals = new ThreadSignalState();
  signals.restore(f.signals);
  return { ...f, name: Uint8Array.from(f.name), wait: f.wait && { ...f.wait }, signals };
}
