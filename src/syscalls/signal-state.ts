/**
 * Signals as state: what rt_sigaction, rt_sigprocmask, sigaltstack, kill and the timers change, and
 * what the run loop reads to deliver a signal (src/hypervisor/signal-delivery.ts builds the frame).
 *
 * As in Linux, dispositions, process-directed pending signals and the interval timers belong to the
 * process (SignalState); the blocked mask, the alternate stack and thread-directed pending signals
 * (tkill, tgkill, faults) belong to a thread (ThreadSignalState, Process.threadSignals).
 *
 * A pending signal is one bit and one siginfo: a second instance of a standard signal sent while the
 * first is pending is merged, as in Linux; a real-time signal (32–64) is merged too, where Linux would
 * queue it (docs/SIGNALS.md, "What is not as in Linux").
 */
export const SIG = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8, SIGKILL: 9,
  SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGCHLD: 17, SIGCONT: 18,
  SIGSTOP: 19, SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22, SIGURG: 23, SIGWINCH: 28, SIGSYS: 31,
} as const;

export const SIG_DFL = 0n;
export const SIG_IGN = 1n;

/** sa_flags bits (asm-generic/signal-defs.h, x86's SA_RESTORER). */
export const SA = {
  SIGINFO: 0x4, ONSTACK: 0x0800_0000, RESTART: 0x1000_0000, NODEFER: 0x4000_0000, RESETHAND: 0x8000_0000,
  RESTORER: 0x0400_0000,
} as const;

/** si_code values (asm-generic/siginfo.h). */
export const SI = {
  USER: 0, KERNEL: 0x80, TIMER: -2, TKILL: -6,
  SEGV_MAPERR: 1, SEGV_ACCERR: 2, BUS_ADRALN: 1, FPE_INTDIV: 1, FPE_FLTDIV: 3, ILL_ILLOPN: 2, TRAP_BRKPT: 1, TRAP_TRACE: 2,
} as const;

/** sigaltstack's ss_flags. */
export const SS_ONSTACK = 1, SS_DISABLE = 2, SS_AUTODISARM = 1 << 31;
export const MINSIGSTKSZ = 2048;

/** Signals whose default action is to do nothing (or to stop, which a sandbox treats the same). */
const DEFAULT_IGNORED = new Set<number>([SIG.SIGCHLD, SIG.SIGCONT, SIG.SIGURG, SIG.SIGWINCH, SIG.SIGSTOP, SIG.SIGTSTP, SIG.SIGTTIN, SIG.SIGTTOU]);
/** Faults the CPU raised: Linux dequeues these before any other pending signal. */
const SYNCHRONOUS = [SIG.SIGSEGV, SIG.SIGBUS, SIG.SIGILL, SIG.SIGTRAP, SIG.SIGFPE, SIG.SIGSYS];

export const bit = (sig: number): bigint => 1n << BigInt(sig - 1);
export const UNBLOCKABLE = bit(SIG.SIGKILL) | bit(SIG.SIGSTOP);

/** struct kernel_sigaction as the guest passed it: handler, flags, restorer, mask (4 × u64). */
export const SIGACTION_SIZE = 32;
export const SIGINFO_SIZE = 128;

/** A signal's action, decoded. */
export interface SignalAction {
  handler: bigint;
  flags: number;
  restorer: bigint;
  mask: bigint;
}

/**
 * A timer of the process: ITIMER_REAL (alarm, setitimer; id -1) or a POSIX timer (timer_create).
 * Times are CLOCK_MONOTONIC milliseconds, the same on every thread and in every fork.
 */
export interface GuestTimer {
  /** When it fires next; Infinity: disarmed. */
  due: number;
  /** Re-armed this long after each firing; 0: one-shot. */
  interval: number;
  signo: number;
  /** sigev_value (sival_ptr), given to the handler in si_value. */
  value: bigint;
  /** CLOCK_REALTIME (0) or CLOCK_MONOTONIC (1), as created; both run on the monotonic clock here. */
  clock: number;
  /** Firings merged into one pending signal (timer_getoverrun). */
  overrun: number;
}

export const ITIMER_REAL_ID = -1;

export interface PendingSnapshot {
  set: bigint;
  info: Array<[number, Uint8Array]>;
}

export interface ThreadSignalSnapshot {
  blocked: bigint;
  altStack: AltStack;
  pending: PendingSnapshot;
}

export interface SignalSnapshot {
  actions: Array<[number, Uint8Array]>;
  pending: PendingSnapshot;
  timers: Array<[number, GuestTimer]>;
  thread: ThreadSignalSnapshot;
}

export interface AltStack {
  sp: number;
  size: number;
  /** 0, SS_DISABLE, plus SS_AUTODISARM. */
  flags: number;
}

/** A set of pending signals, each with the siginfo it was sent with. */
export class PendingSignals {
  set = 0n;
  private readonly info = new Map<number, Uint8Array>();

  add(sig: number, info: Uint8Array): void {
    if (this.set & bit(sig)) return;
    this.set |= bit(sig);
    this.info.set(sig, info);
  }

  /** Takes `sig` off the set; its siginfo. */
  take(sig: number): Uint8Array {
    this.set &= ~bit(sig);
    const info = this.info.get(sig) ?? siginfo(sig, SI.KERNEL);
    this.info.delete(sig);
    return info;
  }

  discard(mask: bigint): void {
    for (let sig = 1; sig <= 64; sig++) if (this.set & mask & bit(sig)) this.take(sig);
  }

  snapshot(): PendingSnapshot {
    return { set: this.set, info: [...this.info].map(([k, v]) => [k, Uint8Array.from(v)]) };
  }

  restore(s: PendingSnapshot): void {
    this.set = s.set;
    this.info.clear();
    for (const [k, v] of s.info) this.info.set(k, Uint8Array.from(v));
  }
}

/** A siginfo_t: signo, errno 0, code; the union's first words as the sender fills them. */
export function siginfo(signo: number, code: number, fill?: (view: DataView) => void): Uint8Array {
  const b = new Uint8Array(SIGINFO_SIZE);
  const v = new DataView(b.buffer);
  v.setInt32(0, signo, true);
  v.setInt32(8, code, true);
  fill?.(v);
  return b;
}

/** The blocked mask, the alternate stack and the pending signals of one thread. */
export class ThreadSignalState {
  blocked = 0n;
  altStack: AltStack = { sp: 0, size: 0, flags: SS_DISABLE };
  readonly pending = new PendingSignals();
  /**
   * The mask to put back once a handler has been set up (rt_sigsuspend, rt_sigtimedwait change it
   * for the call only); null otherwise. Not snapshotted: it never outlives a syscall's return.
   */
  savedMask: bigint | null = null;

  /** sas_ss_flags(): SS_DISABLE without a stack, SS_ONSTACK while `sp` is on it. */
  altStackFlags(sp: number): number {
    if (this.altStack.size === 0) return SS_DISABLE;
    return this.onAltStack(sp) ? SS_ONSTACK : 0;
  }

  onAltStack(sp: number): boolean {
    const { sp: base, size, flags } = this.altStack;
    if (flags & SS_AUTODISARM) return false;
    return sp > base && sp - base <= size;
  }

  snapshot(): ThreadSignalSnapshot {
    return { blocked: this.blocked, altStack: { ...this.altStack }, pending: this.pending.snapshot() };
  }

  restore(s: ThreadSignalSnapshot): void {
    this.blocked = s.blocked;
    this.altStack = { ...s.altStack };
    this.pending.restore(s.pending);
    this.savedMask = null;
  }
}

/**
 * What reads the pending signals from outside the signal code (a signalfd, open-files/signal-file.ts):
 * told when they may have changed, to show it to what waits on it.
 */
export interface PendingWatcher {
  /** The signals it reads. */
  readonly mask: bigint;
  update(): void;
}

export class SignalState {
  private actions = new Map<number, Uint8Array>();
  /** Process-directed pending signals (kill, the timers). */
  readonly pending = new PendingSignals();
  readonly timers = new Map<number, GuestTimer>();
  /** The process's signalfds. Wiring, not state: each open file (re)joins when made or thawed, and leaves when closed. */
  readonly watchers = new Set<PendingWatcher>();

  /** The signals some signalfd reads: a timer raising one ends a wait even while it is blocked. */
  watchedMask(): bigint {
    let mask = 0n;
    for (const w of this.watchers) mask |= w.mask;
    return mask;
  }

  /** A signal may have come or gone: every signalfd shows it. */
  updateWatchers(): void {
    for (const w of this.watchers) w.update();
  }

  action(sig: number): Uint8Array {
    return this.actions.get(sig) ?? new Uint8Array(SIGACTION_SIZE);
  }

  decoded(sig: number): SignalAction {
    const v = new DataView(this.action(sig).buffer);
    return { handler: v.getBigUint64(0, true), flags: v.getUint32(8, true), restorer: v.getBigUint64(16, true), mask: v.getBigUint64(24, true) };
  }

  setAction(sig: number, raw: Uint8Array): void {
    const copy = Uint8Array.from(raw);
    const v = new DataView(copy.buffer);
    v.setBigUint64(24, v.getBigUint64(24, true) & ~UNBLOCKABLE, true);
    this.actions.set(sig, copy);
  }

  /** SA_RESETHAND, and a fault that must kill: the handler is SIG_DFL again. */
  resetHandler(sig: number): void {
    const raw = Uint8Array.from(this.action(sig));
    new DataView(raw.buffer).setBigUint64(0, SIG_DFL, true);
    this.actions.set(sig, raw);
  }

  handlerOf(sig: number): bigint {
    return new DataView(this.action(sig).buffer).getBigUint64(0, true);
  }

  /** Whether the signal, delivered now, would do nothing at all. */
  ignores(sig: number): boolean {
    if (sig === SIG.SIGKILL) return false;
    const handler = this.handlerOf(sig);
    return handler === SIG_IGN || (handler === SIG_DFL && DEFAULT_IGNORED.has(sig));
  }

  /** What sending `sig` to ourselves does: nothing, or end the process. */
  defaultIsFatal(sig: number): boolean {
    return !DEFAULT_IGNORED.has(sig);
  }

  /**
   * When the next timer fires whose signal would interrupt a thread that blocks `blocked`
   * (CLOCK_MONOTONIC ms), Infinity if none. The others (blocked, ignored, already pending, SIGEV_NONE) are
   * fired when next looked at (fireTimers): a fast periodic timer whose signal is blocked costs no
   * exits.
   */
  nextWake(blocked: bigint): number {
    let next = Infinity;
    for (const timer of this.timers.values()) {
      if (timer.due < next && timer.signo !== 0 && !((blocked | this.pending.set) & bit(timer.signo)) && !this.ignores(timer.signo)) next = timer.due;
    }
    return next;
  }

  /** Makes the timers due by `now` pending (or counts an overrun), and re-arms the periodic ones. */
  fireTimers(now: number): void {
    for (const [id, timer] of this.timers) {
      if (timer.due > now) continue;
      if (timer.signo === 0) { // SIGEV_NONE: it only counts down
        timer.due = timer.interval > 0 ? now + timer.interval : Infinity;
        continue;
      }
      const periods = timer.interval > 0 ? Math.floor((now - timer.due) / timer.interval) + 1 : 1;
      timer.due = timer.interval > 0 ? timer.due + periods * timer.interval : Infinity;
      if (this.ignores(timer.signo)) continue;
      if (this.pending.set & bit(timer.signo)) {
        timer.overrun += periods;
        continue;
      }
      timer.overrun = periods - 1;
      this.pending.add(timer.signo, id === ITIMER_REAL_ID
        ? siginfo(timer.signo, SI.KERNEL)
        : siginfo(timer.signo, SI.TIMER, (v) => {
          v.setInt32(16, id, true);
          v.setInt32(20, timer.overrun, true);
          v.setBigUint64(24, timer.value, true);
        }));
    }
  }

  snapshot(thread: ThreadSignalState): SignalSnapshot {
    return {
      actions: [...this.actions].map(([k, v]) => [k, Uint8Array.from(v)]),
      pending: this.pending.snapshot(),
      timers: [...this.timers].map(([k, v]) => [k, { ...v }]),
      thread: thread.snapshot(),
    };
  }

  restore(s: SignalSnapshot, thread: ThreadSignalState): void {
    this.actions = new Map(s.actions.map(([k, v]) => [k, Uint8Array.from(v)]));
    this.pending.restore(s.pending);
    this.timers.clear();
    for (const [k, v] of s.timers) this.timers.set(k, { ...v });
    thread.restore(s.thread);
  }
}

/** The signals a thread sees: its process's and its own (a Process is one). */
export interface SignalView {
  readonly signals: SignalState;
  readonly threadSignals: ThreadSignalState;
}

/** Linux's next_signal: in `set`, a fault first, then the lowest number; 0 if none. */
function nextSignal(set: bigint): number {
  if (set === 0n) return 0;
  for (const sig of SYNCHRONOUS) if (set & bit(sig)) return sig;
  for (let sig = 1; sig <= 64; sig++) if (set & bit(sig)) return sig;
  return 0;
}

/**
 * The signal to deliver next to a thread: a pending, unblocked one, the thread's own before the
 * process's, as Linux's dequeue_signal; 0 if none.
 */
export function nextDeliverable(signals: SignalState, thread: ThreadSignalState): number {
  return nextSignal(thread.pending.set & ~thread.blocked) || nextSignal(signals.pending.set & ~thread.blocked);
}

/** Takes `sig` off the thread's pending set, or else the process's; its siginfo. */
export function takePending(signals: SignalState, thread: ThreadSignalState, sig: number): Uint8Array {
  return thread.pending.set & bit(sig) ? thread.pending.take(sig) : signals.pending.take(sig);
}

/**
 * Linux's dequeue_signal for rt_sigtimedwait and signalfd: the next pending signal of `want`, the
 * thread's own before the process's, taken with its siginfo; null if none.
 */
export function dequeue(signals: SignalState, thread: ThreadSignalState, want: bigint): { sig: number; info: Uint8Array } | null {
  const own = nextSignal(thread.pending.set & want);
  if (own) return { sig: own, info: thread.pending.take(own) };
  const shared = nextSignal(signals.pending.set & want);
  return shared ? { sig: shared, info: signals.pending.take(shared) } : null;
}
