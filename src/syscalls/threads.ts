/**
 * Thread syscalls: clone and clone3 for threads, futex, thread exit, thread ids, robust lists,
 * sched_yield. The threads themselves and their scheduling are in thread-table.ts.
 *
 * clone makes threads only — CLONE_VM | CLONE_SIGHAND | CLONE_THREAD, the flag sets glibc, musl, Go
 * and Rust use — and answers anything that would make a second process (fork, vfork, posix_spawn's
 * clone) with ENOSYS, as fork, vfork and execve are: a sandbox has one process.
 */
import { E } from '../host/errno.js';
import type { Process } from './process.js';
import type { SyscallDef } from './syscall.js';
import { readTimespec, nowMs } from './time.js';
import { wallMs } from './thread-table.js';

const CLONE_VM = 0x100, CLONE_FS = 0x200, CLONE_FILES = 0x400, CLONE_SIGHAND = 0x800, CLONE_PIDFD = 0x1000;
const CLONE_VFORK = 0x4000, CLONE_PARENT = 0x8000, CLONE_THREAD = 0x10000, CLONE_SYSVSEM = 0x40000;
const CLONE_SETTLS = 0x80000, CLONE_PARENT_SETTID = 0x100000, CLONE_CHILD_CLEARTID = 0x200000, CLONE_DETACHED = 0x400000;
const CLONE_CHILD_SETTID = 0x1000000, CSIGNAL = 0xff;
/** Flags a thread may be created with: what libcs and runtimes pass, and nothing that makes a new process or namespace. */
const THREAD_FLAGS = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS
  | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | CLONE_DETACHED | CLONE_CHILD_SETTID;
const REQUIRED = CLONE_VM | CLONE_SIGHAND | CLONE_THREAD;

/** struct clone_args: its first version's size, and the largest clone3 reads (Linux: a page). */
const CLONE_ARGS_SIZE_VER0 = 64, CLONE_ARGS_MAX = 4096;

const FUTEX_PRIVATE_FLAG = 128, FUTEX_CLOCK_REALTIME = 256;
const FUTEX_WAIT = 0, FUTEX_WAKE = 1, FUTEX_REQUEUE = 3, FUTEX_CMP_REQUEUE = 4, FUTEX_WAKE_OP = 5;
const FUTEX_WAIT_BITSET = 9, FUTEX_WAKE_BITSET = 10;
const FUTEX_BITSET_MATCH_ANY = -1;
const CLOCK_REALTIME = 0, CLOCK_MONOTONIC = 1;
const ROBUST_LIST_HEAD_SIZE = 24;

interface CloneRequest {
  flags: number;
  stack: number;
  parentTid: number;
  childTid: number;
  tls: number;
}

/** A new thread as `req` asks, or -errno. The child starts as its parent returns from the call, with rax 0. */
function cloneThread(p: Process, req: CloneRequest): number {
  const { flags } = req;
  if ((flags & CLONE_VFORK) || (flags & REQUIRED) !== REQUIRED) return -E.ENOSYS; // another process: see the file's comment
  if (flags & ~THREAD_FLAGS & ~CSIGNAL) return -E.EINVAL;
  if (flags & CSIGNAL) return -E.EINVAL; // a thread has no exit signal
  if ((flags & CLONE_SETTLS) && (req.tls < 0 || req.tls >= 2 ** 47)) return -E.EPERM;
  const context = p.cpu!.childContext(req.stack, flags & CLONE_SETTLS ? req.tls : p.fsBase, p.gsBase);
  const child = p.threads.spawn(context);
  if (!child) return -E.EAGAIN;
  const writeTid = (addr: number): void => {
    try { p.mem.setU32(addr, child.tid); } catch { /* Linux ignores a bad address here */ }
  };
  if (flags & CLONE_PARENT_SETTID) writeTid(req.parentTid);
  if (flags & CLONE_CHILD_SETTID) writeTid(req.childTid);
  if (flags & CLONE_CHILD_CLEARTID) child.clearChildTid = req.childTid;
  return child.tid;
}

/** clone3's struct clone_args, read as Linux does: a size it knows, unknown trailing bytes zero. */
function clone3(p: Process, addr: number, size: number): number {
  if (size < CLONE_ARGS_SIZE_VER0) return -E.EINVAL;
  if (size > CLONE_ARGS_MAX) return -E.E2BIG;
  const known = Math.min(size, 88);
  const raw = p.mem.read(addr, size);
  if (raw.subarray(known).some((b) => b !== 0)) return -E.E2BIG;
  const u64 = (at: number): number => (at + 8 <= known ? p.mem.u64(addr + at) : 0);
  const flags = u64(0), exitSignal = u64(32), stack = u64(40), stackSize = u64(48);
  if (flags >= 2 ** 32 || exitSignal !== 0 && (flags & CLONE_THREAD)) return -E.EINVAL;
  if (flags & (CLONE_PIDFD | CLONE_PARENT)) return -E.EINVAL;
  if (u64(72) !== 0 || u64(80) !== 0) return -E.EINVAL; // set_tid, cgroup: not for threads
  if ((stack === 0) !== (stackSize === 0)) return -E.EINVAL;
  return cloneThread(p, { flags, stack: stack + stackSize, parentTid: u64(24), childTid: u64(16), tls: u64(56) });
}

/** FUTEX_WAKE_OP's operation on *uaddr2 and its comparison, from val3 (Linux's futex_atomic_op_inuser). */
function wakeOp(p: Process, uaddr2: number, val3: number): number | null {
  const op = (val3 >>> 28) & 7, cmp = (val3 >>> 24) & 15;
  let oparg = (val3 << 8) >> 20, cmparg = (val3 << 20) >> 20;
  if ((val3 >>> 31) & 1) { // FUTEX_OP_OPARG_SHIFT
    if (oparg < 0 || oparg > 31) return null;
    oparg = 1 << oparg;
  }
  const old = p.mem.u32(uaddr2) | 0;
  let next: number;
  switch (op) {
    case 0: next = oparg; break; // SET
    case 1: next = old + oparg; break; // ADD
    case 2: next = old | oparg; break; // OR
    case 3: next = old & ~oparg; break; // ANDN
    case 4: next = old ^ oparg; break; // XOR
    default: return null;
  }
  p.mem.setU32(uaddr2, next >>> 0);
  cmparg = cmparg | 0;
  switch (cmp) {
    case 0: return old === cmparg ? 1 : 0;
    case 1: return old !== cmparg ? 1 : 0;
    case 2: return old < cmparg ? 1 : 0;
    case 3: return old <= cmparg ? 1 : 0;
    case 4: return old > cmparg ? 1 : 0;
    case 5: return old >= cmparg ? 1 : 0;
    default: return null;
  }
}

/**
 * futex(2) for one process: private and shared futexes are the same (there is no other process to
 * share with). A wait parks the thread (thread-table.ts); its result comes from whoever ends the wait.
 */
function futex(p: Process, a: Float64Array): number {
  const [uaddr, rawOp, val, timeout, uaddr2, val3] = [a[0]!, a[1]! | 0, a[2]! | 0, a[3]!, a[4]!, a[5]! | 0];
  const op = rawOp & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
  const realtime = (rawOp & FUTEX_CLOCK_REALTIME) !== 0;
  if (realtime && op !== FUTEX_WAIT && op !== FUTEX_WAIT_BITSET) return -E.ENOSYS;
  if (uaddr % 4 !== 0) return -E.EINVAL;
  const threads = p.threads;
  switch (op) {
    case FUTEX_WAIT: case FUTEX_WAIT_BITSET: {
      const bitset = op === FUTEX_WAIT ? FUTEX_BITSET_MATCH_ANY : val3;
      if (bitset === 0) return -E.EINVAL;
      let until = Infinity;
      if (timeout) {
        const ms = readTimespec(p, timeout);
        if (ms === null) return -E.EINVAL;
        // FUTEX_WAIT's timeout is relative; FUTEX_WAIT_BITSET's is absolute, on the clock asked.
        until = op === FUTEX_WAIT ? wallMs() + ms : wallMs() + (ms - nowMs(realtime ? CLOCK_REALTIME : CLOCK_MONOTONIC));
      }
      if ((p.mem.u32(uaddr) | 0) !== val) return -E.EAGAIN;
      threads.block({ kind: 'futex', addr: uaddr, bitset, until });
      return 0; // the result is what ends the wait
    }
    case FUTEX_WAKE: case FUTEX_WAKE_BITSET: {
      const bitset = op === FUTEX_WAKE ? FUTEX_BITSET_MATCH_ANY : val3;
      if (bitset === 0) return -E.EINVAL;
      p.mem.check(uaddr, 4);
      return val <= 0 ? 0 : threads.wake(uaddr, val, bitset);
    }
    case FUTEX_REQUEUE: case FUTEX_CMP_REQUEUE: {
      const requeue = timeout | 0; // val2 travels in the timeout argument
      if (val < 0 || requeue < 0 || uaddr2 % 4 !== 0) return -E.EINVAL;
      if (op === FUTEX_CMP_REQUEUE && (p.mem.u32(uaddr) | 0) !== val3) return -E.EAGAIN;
      p.mem.check(uaddr2, 4);
      return threads.requeue(uaddr, val, uaddr2, requeue);
    }
    case FUTEX_WAKE_OP: {
      if (uaddr2 % 4 !== 0) return -E.EINVAL;
      p.mem.check(uaddr, 4);
      const fire = wakeOp(p, uaddr2, val3);
      if (fire === null) return -E.ENOSYS;
      const woken = val > 0 ? threads.wake(uaddr, val, FUTEX_BITSET_MATCH_ANY) : 0;
      const val2 = timeout | 0;
      return woken + (fire && val2 > 0 ? threads.wake(uaddr2, val2, FUTEX_BITSET_MATCH_ANY) : 0);
    }
    default:
      return -E.ENOSYS; // the priority-inheritance operations, FUTEX_WAIT_REQUEUE_PI…
  }
}

export const threadSyscalls: SyscallDef[] = [
  {
    nr: 56, name: 'clone', args: ['cloneflags', 'ptr', 'ptr', 'ptr', 'hex'],
    handler: (p, a) => cloneThread(p, { flags: a[0]!, stack: a[1]!, parentTid: a[2]!, childTid: a[3]!, tls: a[4]! }),
  },
  { nr: 435, name: 'clone3', args: ['ptr', 'size'], handler: (p, a) => clone3(p, a[0]!, a[1]!) },
  { nr: 57, name: 'fork', args: [], handler: () => -E.ENOSYS },
  { nr: 58, name: 'vfork', args: [], handler: () => -E.ENOSYS },
  { nr: 59, name: 'execve', args: ['path', 'ptr', 'ptr'], handler: () => -E.ENOSYS },
  { nr: 322, name: 'execveat', args: ['dirfd', 'path', 'ptr', 'ptr', 'atflags'], handler: () => -E.ENOSYS },
  { nr: 202, name: 'futex', args: ['ptr', 'futexop', 'int', 'ptr', 'ptr', 'int'], handler: futex },
  {
    nr: 60, name: 'exit', args: ['int'],
    handler: (p, a) => {
      // The last thread's exit ends the process, as exit_group does.
      if (!p.threads.exitCurrent(p)) p.exit = { status: a[0]! & 0xff };
      return 0;
    },
  },
  {
    nr: 231, name: 'exit_group', args: ['int'],
    handler: (p, a) => { p.exit = { status: a[0]! & 0xff }; return 0; },
  },
  { nr: 186, name: 'gettid', args: [], handler: (p) => p.threads.current.tid },
  {
    nr: 218, name: 'set_tid_address', args: ['ptr'],
    handler: (p, a) => { p.threads.current.clearChildTid = a[0]!; return p.threads.current.tid; },
  },
  {
    nr: 273, name: 'set_robust_list', args: ['ptr', 'size'],
    handler: (p, a) => {
      if (a[1] !== ROBUST_LIST_HEAD_SIZE) return -E.EINVAL;
      p.threads.current.robustList = a[0]!;
      return 0;
    },
  },
  {
    nr: 274, name: 'get_robust_list', args: ['int', 'ptr', 'ptr'],
    handler: (p, a) => {
      const tid = a[0]! | 0;
      const t = tid === 0 ? p.threads.current : p.threads.find(tid);
      if (!t) return -E.ESRCH;
      p.mem.setU64(a[1]!, t.robustList);
      p.mem.setU64(a[2]!, ROBUST_LIST_HEAD_SIZE);
      return 0;
    },
  },
  { nr: 24, name: 'sched_yield', args: [], handler: (p) => { p.threads.yield(); return 0; } },
];
