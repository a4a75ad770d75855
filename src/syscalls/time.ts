/**
 * Clocks and sleeping. Clock reads go straight to the host's clock_gettime,
 * writing into guest memory (no copy); a sleep blocks the vCPU's host thread when the guest has one
 * thread, and parks the sleeper when it has more (thread-table.ts); sleeps end at the run's deadline (deadline.ts). Most clock reads never get here: the
 * vDSO (src/paging/vdso.ts) serves realtime and monotonic clocks, gettimeofday
 * and time without an exit, from the same host clocks; what reaches these
 * handlers is the other clocks and programs that make the syscall themselves.
 */
import { E } from '../host/errno.js';
import type { SyscallDef } from './syscall.js';
import type { Process } from './process.js';
import { libc } from '../host/libc.js';
import { deadlineReached, sleep } from './deadline.js';
import { wallMs } from './thread-table.js';

const TIMER_ABSTIME = 1;

function clockInto(p: Process, clock: number, addr: number, fn: typeof libc.clockGettime): number {
  if (clock < 0 || clock > 11) return -E.EINVAL;
  if (!addr) return fn === libc.clockGetres ? 0 : -E.EFAULT;
  const host = p.mem.hostAddress(addr, 16);
  if (fn(clock, host) < 0) return -E.EINVAL;
  p.mem.recordWrite(addr, 16);
  return 0;
}

/** Reads a struct timespec, in ms; null when it is invalid (-EINVAL). */
export function readTimespec(p: Process, addr: number): number | null {
  const sec = p.mem.i64(addr);
  const nsec = p.mem.i64(addr + 8);
  if (sec < 0 || nsec < 0 || nsec >= 1e9) return null;
  return sec * 1e3 + nsec / 1e6;
}

const scratch = Buffer.alloc(16);

/** A host clock's time, in ms. */
export function nowMs(clock: number): number {
  libc.clockGettimeInto(clock, scratch);
  return Number(scratch.readBigInt64LE(0)) * 1e3 + Number(scratch.readBigInt64LE(8)) / 1e6;
}

/**
 * Sleeps `ms` (nothing when ≤ 0): the run's deadline may end it, and then the run is over; a signal
 * may interrupt it: then the time left is written to `rem` (if not 0) and the result is EINTR. With
 * other threads, the sleeper parks and they run meanwhile (thread-table.ts).
 */
function sleepMs(p: Process, ms: number, rem: number): number {
  if (p.threads.count > 1) {
    if (ms > 0) p.threads.block({ kind: 'sleep', until: wallMs() + ms });
    else p.threads.yield();
    return 0;
  }
  if (ms <= 0) return 0;
  const end = performance.now() + ms;
  if (sleep(ms) || deadlineReached()) return 0;
  if (rem) {
    const left = Math.max(0, end - performance.now());
    p.mem.setU64(rem, Math.floor(left / 1e3));
    p.mem.setU64(rem + 8, Math.round((left % 1e3) * 1e6) % 1e9);
  }
  return -E.EINTR;
}

export const timeSyscalls: SyscallDef[] = [
  { nr: 228, name: 'clock_gettime', args: ['clock', 'ptr'], handler: (p, a) => clockInto(p, a[0]! | 0, a[1]!, libc.clockGettime) },
  { nr: 229, name: 'clock_getres', args: ['clock', 'ptr'], handler: (p, a) => clockInto(p, a[0]! | 0, a[1]!, libc.clockGetres) },
  {
    nr: 96, name: 'gettimeofday', args: ['ptr', 'ptr'],
    handler: (p, a) => {
      if (a[0]) {
        const ms = Date.now();
        const us = Math.floor((performance.timeOrigin + performance.now()) * 1000) % 1000;
        p.mem.setU64(a[0], Math.floor(ms / 1000));
        p.mem.setU64(a[0] + 8, (ms % 1000) * 1000 + us);
      }
      if (a[1]) p.mem.write(a[1], 8).fill(0);
      return 0;
    },
  },
  {
    nr: 201, name: 'time', args: ['ptr'],
    handler: (p, a) => {
      const t = Math.floor(Date.now() / 1000);
      if (a[0]) p.mem.setU64(a[0], t);
      return t;
    },
  },
  {
    // Ends at a signal the thread takes (or the run's deadline).
    nr: 34, name: 'pause', args: [],
    handler: (p) => {
      if (p.threads.count > 1) p.threads.block({ kind: 'sleep', until: Infinity });
      else sleep(-1);
      return -E.EINTR;
    },
  },
  {
    nr: 35, name: 'nanosleep', args: ['ptr', 'ptr'],
    handler: (p, a) => {
      const ms = readTimespec(p, a[0]!);
      if (ms === null) return -E.EINVAL;
      return sleepMs(p, ms, a[1]!);
    },
  },
  {
    nr: 230, name: 'clock_nanosleep', args: ['clock', 'int', 'ptr', 'ptr'],
    handler: (p, a) => {
      const [clock, flags, req] = [a[0]! | 0, a[1]! | 0, a[2]!];
      if (clock < 0 || clock > 11) return -E.EINVAL;
      const ms = readTimespec(p, req);
      if (ms === null) return -E.EINVAL;
      const absolute = (flags & TIMER_ABSTIME) !== 0;
      // -errno, as every syscall (the libc function turns it into a positive result); an absolute sleep leaves rem alone
      return sleepMs(p, absolute ? ms - nowMs(clock) : ms, absolute ? 0 : a[3]!);
    },
  },
];
