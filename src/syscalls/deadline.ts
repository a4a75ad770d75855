/**
 * Waiting inside a syscall, bounded by the deadline of the run.
 *
 * A blocking syscall (a sleep, poll, a read of an empty pipe) waits on the worker thread outside
 * KVM_RUN, where the run timer cannot reach it: the timer's signal is unblocked only inside
 * KVM_RUN (run-timer.ts). So the run loop sets the deadline of the run in progress on this thread,
 * every wait below is cut at it, and a wait that reaches it marks the run as timed out; the run
 * loop then ends the run as it ends a guest that computes too long (504 for a request, exit 124
 * for `tskvm run`). Without a deadline (`tskvm run` with no --timeout) waits last as long as they
 * would natively.
 *
 * One vCPU runs at a time on a thread, so one deadline per thread is all the state there is.
 */
import { E } from '../host/errno.js';
import { errno as lastErrno, libc } from '../host/libc.js';

/** When the run in progress must end, in performance.now() milliseconds. */
let deadline = Infinity;
let reached = false;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * The guest's own timers, as the run in progress sees them (signal.ts, signalWake): a wait also ends
 * when one fires, and if the signal it raised is one the thread would take now, the wait is
 * interrupted (-EINTR, as in Linux), so the run loop can deliver it at the syscall's return.
 */
export interface SignalWake {
  /** When the next guest timer fires, in performance.now() milliseconds; Infinity if none. */
  next(): number;
  /** Fires what is due; true if a signal is now pending that the thread does not block. */
  interrupts(): boolean;
}

let wake: SignalWake | null = null;

/**
 * Linux's internal "interrupted; restart under SA_RESTART" result of a wait: it never reaches the
 * guest, the run loop makes it EINTR (a handler without SA_RESTART runs) or runs the call again.
 */
export const ERESTARTSYS = 512;

/** The run loop sets the running process's wake for the length of a run (null: none). */
export function setSignalWake(w: SignalWake | null): void {
  wake = w;
}

/** A run starts: waits end `timeoutMs` from now (0: no limit). */
export function startDeadline(timeoutMs: number): void {
  deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
  reached = false;
}

export function endDeadline(): void {
  deadline = Infinity;
  reached = false;
}

/** The deadline of the run in progress, to put back with restoreDeadline after another run on this thread (run-loop.ts, nested). */
export function saveDeadline(): { deadline: number; reached: boolean; wake: SignalWake | null } {
  return { deadline, reached, wake };
}

export function restoreDeadline(saved: { deadline: number; reached: boolean; wake: SignalWake | null }): void {
  deadline = saved.deadline;
  reached = saved.reached;
  wake = saved.wake;
}

/** Milliseconds left until the deadline (Infinity without one). */
export function timeLeft(): number {
  return deadline === Infinity ? Infinity : deadline - performance.now();
}

/** Whether a wait of this run reached the deadline: the run is over, whatever the syscall returns. */
export function deadlineReached(): boolean {
  return reached;
}

/**
 * How long a wait of `ms` (-1: forever) may last now: whole milliseconds, rounded up, for poll(2)
 * (-1 when neither the call nor the run has a limit).
 */
export function waitLimit(ms: number): number {
  if (deadline === Infinity) return ms;
  const left = Math.max(0, Math.ceil(deadline - performance.now()));
  return ms < 0 ? left : Math.min(ms, left);
}

/** After a wait that ended with nothing to report: true if the deadline ended it. */
export function passedDeadline(): boolean {
  if (performance.now() >= deadline) reached = true;
  return reached;
}

/** When the guest's next timer is due (performance.now() ms; Infinity: none armed, or no run). */
export function nextTimerWake(): number {
  return wake?.next() ?? Infinity;
}

/** Whether a signal the thread would take now is pending (firing the guest's timers that are due). */
export function signalInterrupts(): boolean {
  return wake?.interrupts() ?? false;
}

/**
 * Waits with `attempt(limitMs)` (a poll(2), a sleep; limitMs as waitLimit gives it) until it reports
 * something (a non-zero result, returned), `ms` passes (-1: never; then 0), or the wait is
 * interrupted (-EINTR): by the run's deadline, or by a signal that a guest timer raised.
 */
export function waitFor(ms: number, attempt: (limitMs: number) => number): number {
  const end = ms < 0 ? Infinity : performance.now() + ms;
  for (;;) {
    const now = performance.now();
    const left = end === Infinity ? -1 : Math.max(0, end - now);
    const timer = wake ? wake.next() - now : Infinity;
    let limit = waitLimit(left);
    if (timer < Infinity && left !== 0) limit = Math.max(0, limit < 0 ? Math.ceil(timer) : Math.min(limit, Math.ceil(timer)));
    const n = attempt(limit);
    if (n !== 0) return n;
    if (passedDeadline() || signalInterrupts()) return -E.EINTR;
    if (left === 0 || performance.now() >= end) return 0;
  }
}

/** Sleeps `ms` (-1: forever) until the deadline or a signal; true when it slept the whole time asked. */
export function sleep(ms: number): boolean {
  return waitFor(ms, (limit) => {
    if (limit !== 0) Atomics.wait(sleeper, 0, 0, limit < 0 ? Infinity : limit);
    return 0;
  }) === 0;
}

/**
 * Thrown by a wait inside a call of a process with other threads (see mayPark): rather than hold the
 * vCPU's host thread, the calling guest thread parks until one of `files` is ready, when its call
 * runs again, or `timeoutMs` (-1: never) passes, when the call returns `onTimeout` (dispatch.ts).
 */
export class WouldBlock {
  constructor(readonly files: Array<{ hostFd: number; events: number }>, readonly timeoutMs: number, readonly onTimeout: number) {}
}

let parkable = false;

/** Set by the dispatcher around each call: whether a wait may park its thread (throw WouldBlock). */
export function setParkable(on: boolean): void {
  parkable = on;
}

export function mayPark(): boolean {
  return parkable;
}

/**
 * The one place a guest waits for host fds: poll(2) over `count` struct pollfd in `pollfds` for at
 * most `ms` (-1: forever), cut at the run's deadline. Every blocking call on a host object (a pipe,
 * a socket, an eventfd or timerfd, an epoll set, poll and select themselves) waits here. Returns the
 * number of ready entries, 0 when `ms` passed, -EINTR when the deadline (the run is then over) or a
 * signal ended the wait, or the host's -errno.
 *
 * In a process with other threads to run (mayPark), a wait that would block throws WouldBlock
 * instead, unless `park` is false: the calling thread parks and its call runs again when one of the
 * fds is ready, so the caller must not have done anything yet that running it again would do twice.
 */
export function waitForHost(pollfds: Buffer, count: number, ms: number, park = true): number {
  if (park && ms !== 0 && mayPark() && (count === 0 || (libc.poll(pollfds, count, 0) as number) === 0)) {
    const files = Array.from({ length: count }, (_, k) => ({ hostFd: pollfds.readInt32LE(k * 8), events: pollfds.readUInt16LE(k * 8 + 4) }));
    throw new WouldBlock(files, ms, 0);
  }
  return waitFor(ms, (limit) => {
    const n = libc.poll(pollfds, count, limit) as number;
    return n < 0 ? -lastErrno() : n;
  });
}
