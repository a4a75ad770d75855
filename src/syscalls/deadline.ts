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
export function saveDeadline(): { deadline: number; reached: boolean } {
  return { deadline, reached };
}

export function restoreDeadline(saved: { deadline: number; reached: boolean }): void {
  deadline = saved.deadline;
  reached = saved.reached;
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

/** Sleeps `ms` (-1: forever) or until the deadline; true when it slept the whole time asked. */
export function sleep(ms: number): boolean {
  const limit = waitLimit(ms);
  if (limit !== 0) Atomics.wait(sleeper, 0, 0, limit < 0 ? Infinity : limit);
  return !passedDeadline();
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
 * number of ready entries, 0 when `ms` passed, -EINTR when the deadline ended the wait (the run is
 * then over), or the host's -errno.
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
  const n = libc.poll(pollfds, count, waitLimit(ms)) as number;
  if (n < 0) return -lastErrno();
  return n === 0 && ms !== 0 && passedDeadline() ? -E.EINTR : n;
}
