/**
 * Signal syscalls: dispositions, masks, the alternate stack, sending a signal to ourselves, waiting
 * for one, and the timers that raise them (alarm, setitimer, timer_create). They change state
 * (signal-state.ts); the run loop delivers what is pending when the guest returns from a call or a
 * timer interrupts it (src/hypervisor/signal-delivery.ts), and runs rt_sigreturn, which needs the
 * vCPU's registers: here it does nothing.
 *
 * Every timer runs on CLOCK_MONOTONIC: a CLOCK_REALTIME timer is converted when it is armed (a later
 * change of the host's wall clock does not move it). ITIMER_VIRTUAL and ITIMER_PROF are EINVAL.
 */
import { E } from '../host/errno.js';
import type { SyscallDef } from './syscall.js';
import { Process } from './process.js';
import {
  bit, ITIMER_REAL_ID, MINSIGSTKSZ, SI, SIG, SIGACTION_SIZE, siginfo, SS_AUTODISARM, SS_DISABLE, SS_ONSTACK, UNBLOCKABLE,
  dequeue, nextDeliverable, type GuestTimer, type SignalState, type SignalView,
} from './signal-state.js';
import { deadlineReached, signalInterrupts, sleep, type SignalWake } from './deadline.js';
import { wallMs, type GuestThread } from './thread-table.js';
import { nowMs, readTimespec } from './time.js';

const SIG_BLOCK = 0, SIG_UNBLOCK = 1, SIG_SETMASK = 2;
const CLOCK_REALTIME = 0, CLOCK_MONOTONIC = 1, CLOCK_BOOTTIME = 7;
const SIGEV_SIGNAL = 0, SIGEV_NONE = 1, SIGEV_THREAD_ID = 4;
const TIMER_ABSTIME = 1;
/** POSIX timers a process may hold (Linux's limit is RLIMIT_SIGPENDING-bound; this one is ours). */
const MAX_TIMERS = 64;
/** The uid every guest runs as (getuid: proc.ts). */
const GUEST_UID = 0;
/** The longest time a timer may be set to: Linux's KTIME_MAX, about 292 years. */
const MAX_TIMER_MS = 9.2e15;

function validSignal(sig: number): boolean {
  return sig >= 1 && sig <= 64;
}

function u64Big(p: Process, addr: number): bigint {
  p.mem.check(addr, 8);
  return p.mem.u64n(addr);
}

const readSigset = u64Big;

/**
 * A signal sent to this process, or (`thread`) to one of its threads by tkill/tgkill, with si_pid and
 * si_uid of the sender: itself. A parked thread that does not block it stops waiting, to take it; one
 * that blocks it and waits on files runs its call again (a read of a signalfd, a poll of one, may now
 * find it). An ignored signal is dropped unless blocked (Linux's sig_ignored: a signalfd may read it).
 */
function send(p: Process, sig: number, code: number, thread: GuestThread | null): number {
  if (sig === 0) return 0;
  if (!validSignal(sig)) return -E.EINVAL;
  const target = thread?.signals ?? p.threadSignals;
  if (p.signals.ignores(sig) && !(target.blocked & bit(sig))) return 0;
  if (sig === SIG.SIGKILL) {
    p.exit = { status: 128 + sig, signal: sig };
    return 0;
  }
  const info = siginfo(sig, code, (v) => {
    v.setInt32(16, Process.PID, true);
    v.setUint32(20, GUEST_UID, true);
  });
  (thread ? thread.signals.pending : p.signals.pending).add(sig, info);
  if (!thread) p.threads.processSignalSent(bit(sig));
  else if ((thread.signals.blocked & bit(sig)) === 0n) p.threads.interrupt(thread);
  else if (thread.wait?.kind === 'file') thread.wait.ready = true;
  p.signals.updateWatchers();
  return 0;
}

/**
 * A write to a pipe or a socket nobody reads any more: besides EPIPE, SIGPIPE to the writing thread,
 * as Linux's send_sig (SI_USER), unless `quiet` (send's MSG_NOSIGNAL). Returns `result`.
 */
export function brokenPipe(p: Process, result: number, quiet = false): number {
  if (result === -E.EPIPE && !quiet) send(p, SIG.SIGPIPE, SI.USER, p.threads.current);
  return result;
}

/** The thread `tid` of this process (tkill, tgkill), or null. */
const threadOf = (p: Process, tid: number): GuestThread | null => p.threads.find(tid) ?? null;

const isSelf = (pid: number): boolean => pid === Process.PID || pid === 0 || pid === -Process.PID;

/** Setting SIG_IGN (or SIG_DFL for a signal whose default is to ignore) discards it where pending (POSIX). */
function discardIgnored(p: Process, sig: number): void {
  if (p.signals.ignores(sig)) {
    p.signals.pending.discard(bit(sig));
    p.threadSignals.pending.discard(bit(sig));
  }
}

/**
 * The wait of a sleeping syscall ends when a timer raises a signal the thread takes (deadline.ts), or
 * one that a signalfd reads (blocked, it only makes the signalfd readable: the wait goes on unless it
 * waits on that signalfd).
 */
export function signalWake(p: Process): SignalWake {
  return {
    next: () => {
      // A timer wakes the wait when some thread takes its signal (or a signalfd reads it).
      const unwanted = p.threads.count > 1 ? p.threads.unwantedSignals() : p.threadSignals.blocked;
      const due = p.signals.nextWake(unwanted & ~p.signals.watchedMask());
      return due === Infinity ? Infinity : performance.now() + (due - nowMs(CLOCK_MONOTONIC));
    },
    interrupts: () => {
      p.signals.fireTimers(nowMs(CLOCK_MONOTONIC));
      p.signals.updateWatchers();
      return nextDeliverable(p.signals, p.threadSignals) !== 0;
    },
  };
}

/** struct timeval or timespec as ms; null if invalid. `unit`: 1e3 (µs) or 1e6 (ns) per ms. */
function readTime(p: Process, addr: number, unit: number): number | null {
  const sec = p.mem.i64(addr), frac = p.mem.i64(addr + 8);
  if (sec < 0 || frac < 0 || frac >= unit * 1e3) return null;
  return Math.min(MAX_TIMER_MS, sec * 1e3 + frac / unit);
}

function writeTime(p: Process, addr: number, ms: number, unit: number): void {
  const whole = Math.max(0, ms);
  let sec = Math.floor(whole / 1e3);
  let frac = Math.round((whole - sec * 1e3) * unit);
  if (frac >= unit * 1e3) {
    sec++;
    frac -= unit * 1e3;
  }
  p.mem.setU64(addr, sec);
  p.mem.setU64(addr + 8, frac);
}

/** struct itimerval (`unit` 1e3: µs) or struct itimerspec (1e6: ns): the interval, then the value left. */
function writeTimerPair(p: Process, addr: number, t: { interval: number; value: number }, unit: number): void {
  writeTime(p, addr, t.interval, unit);
  writeTime(p, addr + 16, t.value, unit);
}

/** A timer's remaining time and interval, as it_value/it_interval pairs want them. */
function remaining(timer: GuestTimer | undefined): { value: number; interval: number } {
  if (!timer || timer.due === Infinity) return { value: 0, interval: timer?.interval ?? 0 };
  // An expired timer whose signal is not taken yet still reads as a tiny positive time, as in Linux.
  return { value: Math.max(timer.due - nowMs(CLOCK_MONOTONIC), 1e-6), interval: timer.interval };
}

function armTimer(signals: SignalState, id: number, value: number, interval: number): void {
  const timer = signals.timers.get(id)!;
  timer.due = value > 0 ? nowMs(CLOCK_MONOTONIC) + value : Infinity;
  timer.interval = value > 0 ? interval : 0;
  timer.overrun = 0;
}

function itimerReal(signals: SignalState): GuestTimer {
  let timer = signals.timers.get(ITIMER_REAL_ID);
  if (!timer) {
    timer = { due: Infinity, interval: 0, signo: SIG.SIGALRM, value: 0n, clock: CLOCK_MONOTONIC, overrun: 0 };
    signals.timers.set(ITIMER_REAL_ID, timer);
  }
  return timer;
}

/** setitimer(ITIMER_REAL) and alarm: the old value, then the new one armed. */
function setItimer(p: Process, value: number, interval: number): { value: number; interval: number } {
  const old = remaining(p.signals.timers.get(ITIMER_REAL_ID));
  itimerReal(p.signals);
  armTimer(p.signals, ITIMER_REAL_ID, value, interval);
  return old;
}

/** A POSIX timer id of this process, or undefined. */
function posixTimer(signals: SignalState, id: number): GuestTimer | undefined {
  return id >= 0 ? signals.timers.get(id) : undefined;
}

/** A signal of `want` pending for the running thread, taken (dequeue); null if none. Fires due timers first. */
export function takeWanted(p: SignalView, want: bigint): { sig: number; info: Uint8Array } | null {
  p.signals.fireTimers(nowMs(CLOCK_MONOTONIC));
  return dequeue(p.signals, p.threadSignals, want);
}

export const signalSyscalls: SyscallDef[] = [
  {
    nr: 13, name: 'rt_sigaction', args: ['signal', 'ptr', 'ptr', 'size'],
    handler: (p, a) => {
      const [sig, act, oldact, size] = [a[0]! | 0, a[1]!, a[2]!, a[3]!];
      if (size !== 8 || !validSignal(sig)) return -E.EINVAL;
      if (act && (sig === SIG.SIGKILL || sig === SIG.SIGSTOP)) return -E.EINVAL;
      const incoming = act ? Uint8Array.from(p.mem.read(act, SIGACTION_SIZE)) : null;
      if (oldact) p.mem.put(oldact, p.signals.action(sig));
      if (incoming) {
        p.signals.setAction(sig, incoming);
        discardIgnored(p, sig);
      }
      return 0;
    },
  },
  {
    nr: 14, name: 'rt_sigprocmask', args: ['sighow', 'ptr', 'ptr', 'size'],
    handler: (p, a) => {
      const [how, set, oldset, size] = [a[0]! | 0, a[1]!, a[2]!, a[3]!];
      if (size !== 8) return -E.EINVAL;
      const incoming = set ? readSigset(p, set) : null;
      if (incoming !== null && how !== SIG_BLOCK && how !== SIG_UNBLOCK && how !== SIG_SETMASK) return -E.EINVAL;
      const thread = p.threadSignals;
      if (oldset) p.mem.setU64(oldset, thread.blocked);
      if (incoming !== null) {
        const next = how === SIG_BLOCK ? thread.blocked | incoming : how === SIG_UNBLOCK ? thread.blocked & ~incoming : incoming;
        thread.blocked = next & ~UNBLOCKABLE;
      }
      return 0;
    },
  },
  {
    // do_sigaltstack: the old stack with SS_ONSTACK while running on it; no change while on it (EPERM).
    nr: 131, name: 'sigaltstack', args: ['ptr', 'ptr'],
    handler: (p, a) => {
      const [ss, old] = [a[0]!, a[1]!];
      const thread = p.threadSignals;
      const sp = p.cpu?.stackPointer() ?? 0;
      const incoming = ss ? { sp: p.mem.u64(ss), flags: p.mem.i32(ss + 8), size: p.mem.u64(ss + 16) } : null;
      if (old) {
        const { sp: base, size, flags } = thread.altStack;
        p.mem.write(old, 24).fill(0);
        p.mem.setU64(old, base);
        p.mem.setI32(old + 8, thread.altStackFlags(sp) | (flags & SS_AUTODISARM));
        p.mem.setU64(old + 16, size);
      }
      if (incoming) {
        if (thread.onAltStack(sp)) return -E.EPERM;
        const mode = incoming.flags & ~SS_AUTODISARM;
        if (mode !== 0 && mode !== SS_DISABLE && mode !== SS_ONSTACK) return -E.EINVAL;
        if (mode === SS_DISABLE) {
          thread.altStack = { sp: 0, size: 0, flags: SS_DISABLE | (incoming.flags & SS_AUTODISARM) };
        } else {
          if (incoming.size < MINSIGSTKSZ) return -E.ENOMEM;
          thread.altStack = { sp: incoming.sp, size: incoming.size, flags: incoming.flags & SS_AUTODISARM };
        }
      }
      return 0;
    },
  },
  // Restores the registers, the FPU state and the mask from the frame: the run loop does it (signal-delivery.ts).
  { nr: 15, name: 'rt_sigreturn', args: [], handler: () => 0 },
  {
    nr: 62, name: 'kill', args: ['int', 'signal'],
    // kill(-1) reaches every process but the caller and init: here, none (ESRCH, as Linux with no other).
    handler: (p, a) => (isSelf(a[0]! | 0) ? send(p, a[1]! | 0, SI.USER, null) : -E.ESRCH),
  },
  {
    nr: 200, name: 'tkill', args: ['int', 'signal'],
    handler: (p, a) => {
      const t = threadOf(p, a[0]! | 0);
      return (a[0]! | 0) <= 0 ? -E.EINVAL : t ? send(p, a[1]! | 0, SI.TKILL, t) : -E.ESRCH;
    },
  },
  {
    nr: 234, name: 'tgkill', args: ['int', 'int', 'signal'],
    handler: (p, a) => {
      const [tgid, tid] = [a[0]! | 0, a[1]! | 0];
      if (tgid <= 0 || tid <= 0) return -E.EINVAL;
      const t = tgid === Process.PID ? threadOf(p, tid) : null;
      return t ? send(p, a[2]! | 0, SI.TKILL, t) : -E.ESRCH;
    },
  },
  {
    nr: 127, name: 'rt_sigpending', args: ['ptr', 'size'],
    handler: (p, a) => {
      // Linux copies sigsetsize bytes, up to its 8.
      const size = a[1]!;
      if (size < 0 || size > 8) return -E.EINVAL;
      p.signals.fireTimers(nowMs(CLOCK_MONOTONIC));
      const pending = (p.threadSignals.pending.set | p.signals.pending.set) & p.threadSignals.blocked;
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, pending, true);
      p.mem.put(a[0]!, bytes.subarray(0, size));
      return 0;
    },
  },
  {
    // The mask is the given one until a handler has been set up; the handler's frame keeps the old one.
    nr: 130, name: 'rt_sigsuspend', args: ['ptr', 'size'],
    handler: (p, a) => {
      if (a[1] !== 8) return -E.EINVAL;
      const mask = readSigset(p, a[0]!);
      const thread = p.threadSignals;
      thread.savedMask = thread.blocked;
      thread.blocked = mask & ~UNBLOCKABLE;
      if (!signalInterrupts()) sleep(-1);
      return -E.EINTR;
    },
  },
  {
    nr: 128, name: 'rt_sigtimedwait', args: ['ptr', 'ptr', 'ptr', 'size'],
    handler: (p, a) => {
      const [setAddr, infoAddr, timeoutAddr, size] = [a[0]!, a[1]!, a[2]!, a[3]!];
      if (size !== 8) return -E.EINVAL;
      const want = readSigset(p, setAddr) & ~UNBLOCKABLE;
      const timeout = timeoutAddr ? readTimespec(p, timeoutAddr) : -1;
      if (timeout === null) return -E.EINVAL;
      const thread = p.threadSignals;
      let got = takeWanted(p, want);
      if (!got && timeout !== 0 && p.threads.count > 1) {
        // Other threads run meanwhile: this one parks until a signal of `want` is pending for it
        // (thread-table.ts, endWaits), when the call runs again, or the timeout (-EAGAIN).
        p.threads.block({ kind: 'signal', want, until: timeout < 0 ? Infinity : wallMs() + timeout });
        return -E.EAGAIN;
      }
      if (!got && timeout !== 0) {
        // As Linux: the awaited signals are unblocked for the wait, so that they end it.
        const blocked = thread.blocked;
        thread.blocked &= ~want;
        try {
          sleep(timeout);
        } finally {
          thread.blocked = blocked;
        }
        got = takeWanted(p, want);
      }
      if (!got) return deadlineReached() || nextDeliverable(p.signals, thread) !== 0 ? -E.EINTR : -E.EAGAIN;
      if (infoAddr) p.mem.put(infoAddr, got.info);
      return got.sig;
    },
  },
  {
    nr: 37, name: 'alarm', args: ['uint'],
    handler: (p, a) => {
      const old = setItimer(p, (a[0]! >>> 0) * 1e3, 0);
      // Linux: whole seconds, rounded to nearest; an armed timer never reads as 0.
      const secs = Math.round(old.value / 1e3);
      return old.value > 0 && secs === 0 ? 1 : secs;
    },
  },
  {
    nr: 38, name: 'setitimer', args: ['itimer', 'ptr', 'ptr'],
    handler: (p, a) => {
      const [which, next, oldAddr] = [a[0]! | 0, a[1]!, a[2]!];
      if (which !== 0) return -E.EINVAL;
      let value = 0, interval = 0;
      if (next) {
        const i = readTime(p, next, 1e3), v = readTime(p, next + 16, 1e3);
        if (i === null || v === null) return -E.EINVAL;
        [value, interval] = [v, i];
      }
      if (oldAddr) p.mem.write(oldAddr, 32);
      const old = setItimer(p, value, interval);
      if (oldAddr) {
        writeTimerPair(p, oldAddr, old, 1e3);
      }
      return 0;
    },
  },
  {
    nr: 36, name: 'getitimer', args: ['itimer', 'ptr'],
    handler: (p, a) => {
      if ((a[0]! | 0) !== 0) return -E.EINVAL;
      const now = remaining(p.signals.timers.get(ITIMER_REAL_ID));
      p.mem.write(a[1]!, 32);
      writeTimerPair(p, a[1]!, now, 1e3);
      return 0;
    },
  },
  {
    nr: 222, name: 'timer_create', args: ['clock', 'ptr', 'ptr'],
    handler: (p, a) => {
      const [clock, sevp, idAddr] = [a[0]! | 0, a[1]!, a[2]!];
      if (clock !== CLOCK_REALTIME && clock !== CLOCK_MONOTONIC && clock !== CLOCK_BOOTTIME) return -E.EINVAL;
      let id = 0;
      while (p.signals.timers.has(id)) id++;
      let signo = SIG.SIGALRM as number, value = BigInt(id), notify = SIGEV_SIGNAL;
      if (sevp) {
        value = u64Big(p, sevp);
        signo = p.mem.i32(sevp + 8);
        notify = p.mem.i32(sevp + 12);
        if (notify === SIGEV_THREAD_ID && p.mem.i32(sevp + 16) !== Process.PID) return -E.EINVAL;
        if (notify !== SIGEV_SIGNAL && notify !== SIGEV_NONE && notify !== SIGEV_THREAD_ID) return -E.EINVAL;
        if (notify !== SIGEV_NONE && !validSignal(signo)) return -E.EINVAL;
      }
      if (id >= MAX_TIMERS) return -E.EAGAIN;
      p.mem.write(idAddr, 4);
      // SIGEV_NONE: a timer that only counts down; signal 0 marks it (never sent).
      p.signals.timers.set(id, { due: Infinity, interval: 0, signo: notify === SIGEV_NONE ? 0 : signo, value, clock, overrun: 0 });
      p.mem.setI32(idAddr, id);
      return 0;
    },
  },
  {
    nr: 223, name: 'timer_settime', args: ['int', 'int', 'ptr', 'ptr'],
    handler: (p, a) => {
      const [id, flags, next, oldAddr] = [a[0]! | 0, a[1]! | 0, a[2]!, a[3]!];
      const timer = posixTimer(p.signals, id);
      if (!timer) return -E.EINVAL;
      const interval = readTime(p, next, 1e6), value = readTime(p, next + 16, 1e6);
      if (interval === null || value === null) return -E.EINVAL;
      if (oldAddr) p.mem.write(oldAddr, 32);
      const old = remaining(timer);
      const relative = flags & TIMER_ABSTIME && value > 0 ? Math.max(value - nowMs(timer.clock), 1e-6) : value;
      armTimer(p.signals, id, relative, interval);
      if (oldAddr) {
        writeTimerPair(p, oldAddr, old, 1e6);
      }
      return 0;
    },
  },
  {
    nr: 224, name: 'timer_gettime', args: ['int', 'ptr'],
    handler: (p, a) => {
      const timer = posixTimer(p.signals, a[0]! | 0);
      if (!timer) return -E.EINVAL;
      const now = remaining(timer);
      p.mem.write(a[1]!, 32);
      writeTimerPair(p, a[1]!, now, 1e6);
      return 0;
    },
  },
  {
    nr: 225, name: 'timer_getoverrun', args: ['int'],
    handler: (p, a) => posixTimer(p.signals, a[0]! | 0)?.overrun ?? -E.EINVAL,
  },
  {
    nr: 226, name: 'timer_delete', args: ['int'],
    handler: (p, a) => (posixTimer(p.signals, a[0]! | 0) && p.signals.timers.delete(a[0]! | 0) ? 0 : -E.EINVAL),
  },
];
