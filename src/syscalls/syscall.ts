/**
 * The shape every emulated Linux syscall has.
 *
 * Each family file (fs/, mm.ts, time.ts, …) exports a `SyscallDef[]`; the
 * dispatcher (dispatch.ts) indexes them by number. `args` describes each argument
 * for the strace-style tracer, so one table serves both dispatch and `--trace`.
 *
 * Arguments arrive as signed 64-bit integers converted to Numbers (exact within
 * ±2^53, which covers every guest address, size and offset we accept): -1 stays
 * -1, and a huge size_t becomes negative and fails the bounds checks. A 32-bit C
 * `int` argument is `a[i] | 0`. The handler returns the value for rax: a result,
 * or a negative errno.
 */
import type { Process } from './process.js';

/** How the tracer prints an argument. */
export type ArgKind =
  | 'int' | 'uint' | 'hex' | 'ptr' | 'size' | 'fd' | 'dirfd' | 'path' | 'str'
  | 'inbuf'    // bytes the guest passes in; the length is the next argument
  | 'outbuf'   // bytes the host fills; printed after the call, up to the result
  | 'iov' | 'oflags' | 'mode' | 'prot' | 'mapflags' | 'whence' | 'clock' | 'signal'
  | 'atflags' | 'cloneflags' | 'ioctl' | 'fcntl' | 'futexop' | 'arch_prctl' | 'rlimit' | 'sighow' | 'itimer'
  | 'epollop' | 'epollevent' | 'sockdomain' | 'socktype' | 'msgflags' | 'fdflags' | 'efdflags' | 'sfdflags' | 'shuthow'
  | 'sigset';  // a pointer to a sigset_t, printed as strace does: [USR1 USR2]

export type SyscallArgs = Float64Array;

export type SyscallHandler = (p: Process, a: SyscallArgs) => number;

export interface SyscallDef {
  nr: number;
  name: string;
  args: ArgKind[];
  /**
   * How to print the result: a number (default), hex (addresses), fd, or pcre (a regex hypercall:
   * -1 and -47 are PCRE2's "no match" and "match limit", not errnos).
   */
  ret?: 'int' | 'hex' | 'fd' | 'pcre';
  handler: SyscallHandler;
}
