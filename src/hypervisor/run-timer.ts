/**
 * A per-thread POSIX timer that interrupts KVM_RUN when a guest runs too long.
 *
 * The timer sends TIMEOUT_SIGNAL to this thread only (SIGEV_THREAD_ID). The
 * signal is blocked in the thread at all times, and unblocked only *inside*
 * KVM_RUN through KVM_SET_SIGNAL_MASK — so it interrupts the guest (KVM_RUN
 * returns EINTR) but never runs a handler or kills the process. Afterwards the
 * pending signal is consumed with sigtimedwait, or the next KVM_RUN would
 * return at once (docs/PLATFORMS.md, "Timeouts").
 */
import { libc, sysError } from '../host/libc.js';

/** SIGRTMIN+6 in glibc's numbering; unused by Node, libuv and V8. */
const TIMEOUT_SIGNAL = 40;
const SIG_BLOCK = 0;
const SIGEV_THREAD_ID = 4;
const CLOCK_MONOTONIC = 1;

function sigset(...signals: number[]): Buffer {
  const set = Buffer.alloc(128);
  for (const s of signals) set[(s - 1) >> 3]! |= 1 << ((s - 1) & 7);
  return set;
}

export class RunTimer {
  /** The signal mask to give KVM_SET_SIGNAL_MASK: the thread's mask without TIMEOUT_SIGNAL. */
  readonly guestSignalMask: bigint;
  private readonly timerId: bigint;
  private readonly set = sigset(TIMEOUT_SIGNAL);
  private readonly spec = Buffer.alloc(32);
  private readonly zero = Buffer.alloc(16);
  private armed = false;

  constructor() {
    const old = Buffer.alloc(128);
    if (libc.pthreadSigmask(SIG_BLOCK, this.set, old) !== 0) throw sysError('TSKVM_ERR_HOST_SIGNAL', 'pthread_sigmask');
    this.guestSignalMask = old.readBigUInt64LE(0) & ~(1n << BigInt(TIMEOUT_SIGNAL - 1));
    const sev = Buffer.alloc(64); // struct sigevent
    sev.writeInt32LE(TIMEOUT_SIGNAL, 8); // sigev_signo
    sev.writeInt32LE(SIGEV_THREAD_ID, 12); // sigev_notify
    sev.writeInt32LE(libc.gettid(), 16); // sigev_notify_thread_id
    const id = Buffer.alloc(8);
    if (libc.timerCreate(CLOCK_MONOTONIC, sev, id) !== 0) throw sysError('TSKVM_ERR_HOST_SIGNAL', 'timer_create');
    this.timerId = id.readBigUInt64LE(0);
  }

  /** Fires once, `ms` from now. */
  arm(ms: number): void {
    const ns = BigInt(Math.max(1, Math.round(ms * 1e6)));
    this.spec.fill(0);
    this.spec.writeBigInt64LE(ns / 1_000_000_000n, 16); // it_value.tv_sec
    this.spec.writeBigInt64LE(ns % 1_000_000_000n, 24); // it_value.tv_nsec
    if (libc.timerSettime(this.timerId, 0, this.spec, null) !== 0) throw sysError('TSKVM_ERR_HOST_SIGNAL', 'timer_settime');
    this.armed = true;
  }

  /** Stops the timer and drops a signal that may already be pending. */
  disarm(): void {
    if (!this.armed) return;
    this.armed = false;
    this.spec.fill(0);
    libc.timerSettime(this.timerId, 0, this.spec, null);
    this.consume();
  }

  /** Takes a pending TIMEOUT_SIGNAL off the thread; true if there was one. */
  consume(): boolean {
    return libc.sigtimedwait(this.set, null, this.zero) === TIMEOUT_SIGNAL;
  }

  close(): void {
    this.disarm();
    libc.timerDelete(this.timerId);
  }
}
