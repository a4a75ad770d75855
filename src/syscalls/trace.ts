/**
 * strace-style rendering of one syscall, e.g.
 *   openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = -1 EACCES (Permission denied)
 *   read(3, "hello\n", 4096) = 6
 * Called after the handler ran, so output buffers show what the guest received.
 * Reading guest memory here is best-effort: a bad pointer prints as an address.
 */
import type { GuestMemory } from '../paging/guest-memory.js';
import { errnoMessage, errnoName } from '../host/errno.js';
import type { ArgKind, SyscallArgs, SyscallDef } from './syscall.js';
import { SIG } from './signal-state.js';
import { ERESTARTSYS } from './deadline.js';

const MAX_STRING = 32;

const flagSets: Record<string, Array<[number, string]>> = {
  prot: [[1, 'PROT_READ'], [2, 'PROT_WRITE'], [4, 'PROT_EXEC']],
  mapflags: [[0x10, 'MAP_FIXED'], [0x20, 'MAP_ANONYMOUS'], [0x100, 'MAP_GROWSDOWN'], [0x800, 'MAP_DENYWRITE'], [0x1000, 'MAP_EXECUTABLE'], [0x4000, 'MAP_NORESERVE'],
    [0x8000, 'MAP_POPULATE'], [0x20000, 'MAP_STACK'], [0x100000, 'MAP_FIXED_NOREPLACE']],
  oflags: [[0o100, 'O_CREAT'], [0o200, 'O_EXCL'], [0o400, 'O_NOCTTY'], [0o1000, 'O_TRUNC'], [0o2000, 'O_APPEND'],
    [0o4000, 'O_NONBLOCK'], [0o200000, 'O_DIRECTORY'], [0o400000, 'O_NOFOLLOW'], [0o2000000, 'O_CLOEXEC'], [0o10000000, 'O_PATH']],
  cloneflags: [[0x100, 'CLONE_VM'], [0x200, 'CLONE_FS'], [0x400, 'CLONE_FILES'], [0x800, 'CLONE_SIGHAND'], [0x4000, 'CLONE_VFORK'],
    [0x10000, 'CLONE_THREAD'], [0x40000, 'CLONE_SYSVSEM'], [0x80000, 'CLONE_SETTLS'], [0x100000, 'CLONE_PARENT_SETTID'],
    [0x200000, 'CLONE_CHILD_CLEARTID'], [0x400000, 'CLONE_DETACHED'], [0x1000000, 'CLONE_CHILD_SETTID']],
  msgflags: [[0x1, 'MSG_OOB'], [0x2, 'MSG_PEEK'], [0x4, 'MSG_DONTROUTE'], [0x20, 'MSG_TRUNC'], [0x40, 'MSG_DONTWAIT'],
    [0x80, 'MSG_EOR'], [0x100, 'MSG_WAITALL'], [0x4000, 'MSG_NOSIGNAL'], [0x8000, 'MSG_MORE'], [0x40000000, 'MSG_CMSG_CLOEXEC']],
  epollevents: [[0x1, 'EPOLLIN'], [0x2, 'EPOLLPRI'], [0x4, 'EPOLLOUT'], [0x8, 'EPOLLERR'], [0x10, 'EPOLLHUP'], [0x2000, 'EPOLLRDHUP'],
    [1 << 28, 'EPOLLEXCLUSIVE'], [1 << 29, 'EPOLLWAKEUP'], [1 << 30, 'EPOLLONESHOT'], [-(2 ** 31), 'EPOLLET']],
  socktype: [[0o4000, 'SOCK_NONBLOCK'], [0o2000000, 'SOCK_CLOEXEC']],
  fdflags: [[0o4000, 'O_NONBLOCK'], [0o2000000, 'O_CLOEXEC']],
  efdflags: [[1, 'EFD_SEMAPHORE'], [0o4000, 'EFD_NONBLOCK'], [0o2000000, 'EFD_CLOEXEC']],
  sfdflags: [[0o4000, 'SFD_NONBLOCK'], [0o2000000, 'SFD_CLOEXEC']],
  atflags: [[0x100, 'AT_SYMLINK_NOFOLLOW'], [0x200, 'AT_REMOVEDIR'], [0x400, 'AT_SYMLINK_FOLLOW'], [0x800, 'AT_NO_AUTOMOUNT'], [0x1000, 'AT_EMPTY_PATH']],
};

const names: Record<string, Record<number, string>> = {
  whence: { 0: 'SEEK_SET', 1: 'SEEK_CUR', 2: 'SEEK_END', 3: 'SEEK_DATA', 4: 'SEEK_HOLE' },
  clock: { 0: 'CLOCK_REALTIME', 1: 'CLOCK_MONOTONIC', 2: 'CLOCK_PROCESS_CPUTIME_ID', 3: 'CLOCK_THREAD_CPUTIME_ID', 4: 'CLOCK_MONOTONIC_RAW', 5: 'CLOCK_REALTIME_COARSE', 6: 'CLOCK_MONOTONIC_COARSE', 7: 'CLOCK_BOOTTIME' },
  ioctl: { 0x5401: 'TCGETS', 0x5402: 'TCSETS', 0x5413: 'TIOCGWINSZ', 0x541b: 'FIONREAD', 0x540f: 'TIOCGPGRP' },
  fcntl: { 0: 'F_DUPFD', 1: 'F_GETFD', 2: 'F_SETFD', 3: 'F_GETFL', 4: 'F_SETFL', 5: 'F_GETLK', 6: 'F_SETLK', 7: 'F_SETLKW', 1030: 'F_DUPFD_CLOEXEC' },
  futexop: { 0: 'FUTEX_WAIT', 1: 'FUTEX_WAKE', 3: 'FUTEX_REQUEUE', 4: 'FUTEX_CMP_REQUEUE', 5: 'FUTEX_WAKE_OP', 131: 'FUTEX_REQUEUE_PRIVATE', 132: 'FUTEX_CMP_REQUEUE_PRIVATE', 133: 'FUTEX_WAKE_OP_PRIVATE', 9: 'FUTEX_WAIT_BITSET', 10: 'FUTEX_WAKE_BITSET', 128: 'FUTEX_WAIT_PRIVATE', 129: 'FUTEX_WAKE_PRIVATE', 137: 'FUTEX_WAIT_BITSET_PRIVATE', 138: 'FUTEX_WAKE_BITSET_PRIVATE' },
  arch_prctl: { 0x1001: 'ARCH_SET_GS', 0x1002: 'ARCH_SET_FS', 0x1003: 'ARCH_GET_FS', 0x1004: 'ARCH_GET_GS', 0x3001: 'ARCH_CET_STATUS' },
  rlimit: { 0: 'RLIMIT_CPU', 1: 'RLIMIT_FSIZE', 2: 'RLIMIT_DATA', 3: 'RLIMIT_STACK', 4: 'RLIMIT_CORE', 5: 'RLIMIT_RSS', 6: 'RLIMIT_NPROC', 7: 'RLIMIT_NOFILE', 8: 'RLIMIT_MEMLOCK', 9: 'RLIMIT_AS' },
  shuthow: { 0: 'SHUT_RD', 1: 'SHUT_WR', 2: 'SHUT_RDWR' },
  epollop: { 1: 'EPOLL_CTL_ADD', 2: 'EPOLL_CTL_DEL', 3: 'EPOLL_CTL_MOD' },
  sockdomain: { 1: 'AF_UNIX', 2: 'AF_INET', 10: 'AF_INET6', 16: 'AF_NETLINK' },
  signal: Object.fromEntries(Object.entries(SIG).map(([k, v]) => [v, k])),
  sighow: { 0: 'SIG_BLOCK', 1: 'SIG_UNBLOCK', 2: 'SIG_SETMASK' },
  itimer: { 0: 'ITIMER_REAL', 1: 'ITIMER_VIRTUAL', 2: 'ITIMER_PROF' },
};

function hex(v: number): string {
  return v < 0 ? '0x' + BigInt.asUintN(64, BigInt(v)).toString(16) : '0x' + v.toString(16);
}

function flags(v: number, set: Array<[number, string]>, zero: string): string {
  const parts: string[] = [];
  let rest = v;
  for (const [bit, name] of set) {
    if ((v & bit) === bit) {
      parts.push(name);
      rest &= ~bit;
    }
  }
  if (rest) parts.push(hex(rest >>> 0));
  return parts.length ? parts.join('|') : zero;
}

/** Escapes bytes the way strace does: printable ASCII as is, the rest as \n, \t, \x.. . */
export function quote(bytes: Uint8Array, truncated: boolean): string {
  let s = '"';
  for (const b of bytes) {
    if (b === 0x22) s += '\\"';
    else if (b === 0x5c) s += '\\\\';
    else if (b === 0x0a) s += '\\n';
    else if (b === 0x09) s += '\\t';
    else if (b === 0x0d) s += '\\r';
    else if (b >= 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else s += '\\x' + b.toString(16).padStart(2, '0');
  }
  return s + '"' + (truncated ? '...' : '');
}

function buffer(mem: GuestMemory, addr: number, len: number): string {
  if (!addr) return 'NULL';
  try {
    const n = Math.max(0, Math.min(len, MAX_STRING));
    return quote(mem.read(addr, n), len > MAX_STRING);
  } catch {
    return hex(addr);
  }
}

function string(mem: GuestMemory, addr: number): string {
  if (!addr) return 'NULL';
  try {
    const bytes = mem.cBytes(addr, 4096);
    return bytes ? quote(bytes.subarray(0, 256), bytes.length > 256) : hex(addr);
  } catch {
    return hex(addr);
  }
}

/** A sigset_t as strace prints it: [USR1 USR2 RTMIN], ~[…] (those not in it) when more than half are. */
function sigset(mem: GuestMemory, addr: number): string {
  if (!addr) return 'NULL';
  let set: bigint;
  try {
    const raw = mem.read(addr, 8);
    set = new DataView(raw.buffer, raw.byteOffset, 8).getBigUint64(0, true);
  } catch {
    return hex(addr);
  }
  let count = 0;
  for (let sig = 1; sig <= 64; sig++) if (set & (1n << BigInt(sig - 1))) count++;
  const inverted = count > 32;
  const shown: string[] = [];
  for (let sig = 1; sig <= 64; sig++) {
    if (((set >> BigInt(sig - 1)) & 1n) === (inverted ? 0n : 1n)) shown.push(signalName(sig));
  }
  return `${inverted ? '~' : ''}[${shown.join(' ')}]`;
}

/** A signal's name without SIG, as strace's sigsets show it: USR1, RTMIN, RT_3, or the number. */
function signalName(sig: number): string {
  const name = names.signal![sig];
  if (name) return name.slice(3);
  return sig === 32 ? 'RTMIN' : sig > 32 ? `RT_${sig - 32}` : String(sig);
}

function arg(kind: ArgKind, a: SyscallArgs, i: number, result: number, mem: GuestMemory): string {
  const v = a[i]!;
  switch (kind) {
    case 'int': case 'fd': return String(v | 0);
    case 'dirfd': return (v | 0) === -100 ? 'AT_FDCWD' : String(v | 0);
    case 'uint': case 'size': return String(v);
    case 'hex': return hex(v);
    case 'ptr': case 'iov': return v ? hex(v) : 'NULL';
    case 'path': case 'str': return string(mem, v);
    case 'inbuf': return buffer(mem, v, a[i + 1]!);
    case 'outbuf': return result >= 0 ? buffer(mem, v, result) : hex(v);
    case 'mode': return '0' + (v >>> 0).toString(8);
    case 'oflags': {
      const access = ['O_RDONLY', 'O_WRONLY', 'O_RDWR', 'O_ACCMODE'][v & 3]!;
      const rest = flags(v & ~3, flagSets.oflags!, '');
      return rest ? `${access}|${rest}` : access;
    }
    case 'prot': return flags(v, flagSets.prot!, 'PROT_NONE');
    case 'mapflags': {
      const type = ['', 'MAP_SHARED', 'MAP_PRIVATE', 'MAP_SHARED_VALIDATE'][v & 0xf] ?? hex(v & 0xf);
      const rest = flags(v & ~0xf, flagSets.mapflags!, '');
      return rest ? `${type}|${rest}` : type;
    }
    case 'atflags': return flags(v, flagSets.atflags!, '0');
    case 'cloneflags': return flags(v & ~0xff, flagSets.cloneflags!, '0') + (v & 0xff ? `|${v & 0xff}` : '');
    case 'msgflags': return flags(v, flagSets.msgflags!, '0');
    case 'fdflags': return flags(v, flagSets.fdflags!, '0');
    case 'efdflags': return flags(v, flagSets.efdflags!, '0');
    case 'sfdflags': return flags(v, flagSets.sfdflags!, '0');
    case 'sigset': return sigset(mem, v);
    case 'socktype': {
      const type = ({ 1: 'SOCK_STREAM', 2: 'SOCK_DGRAM', 3: 'SOCK_RAW', 5: 'SOCK_SEQPACKET' } as Record<number, string>)[v & 0xf] ?? String(v & 0xf);
      const rest = flags(v & ~0xf, flagSets.socktype!, '');
      return rest ? `${type}|${rest}` : type;
    }
    case 'epollevent': {
      // struct epoll_event, as the guest passed it (read after the call, which does not change it).
      if (!v) return 'NULL';
      try {
        const events = flags(mem.u32(v) | 0, flagSets.epollevents!, '0');
        return `{events=${events}, data=0x${mem.u64n(v + 4).toString(16)}}`;
      } catch {
        return hex(v);
      }
    }
    default: return names[kind]?.[v | 0] ?? hex(v);
  }
}

/** The PCRE2 answers the regex hypercalls pass on (regex.ts). */
const PCRE2_RESULTS: Record<number, string> = { [-1]: 'no match', [-47]: 'match limit' };

function formatResult(result: number, ret: SyscallDef['ret']): string {
  if (ret === 'pcre' && PCRE2_RESULTS[result]) return `${result} (${PCRE2_RESULTS[result]})`;
  if (result === -ERESTARTSYS) return '? ERESTARTSYS (To be restarted if SA_RESTART is set)'; // as strace says it
  if (result < 0 && result > -4096) return `-1 ${errnoName(-result)} (${errnoMessage(-result)})`;
  return ret === 'hex' ? hex(result) : String(result);
}

/** One trace line for a call through `def` (or an unknown syscall `nr` when def is undefined). */
/** A call with its raw arguments, for messages about it (no guest memory is read). */
export function formatRawCall(nr: number, def: SyscallDef | undefined, a: SyscallArgs): string {
  return `${def?.name ?? `syscall_${nr}`}(${Array.from(def ? a.subarray(0, def.args.length) : a, hex).join(', ')})`;
}

export function formatCall(nr: number, def: SyscallDef | undefined, a: SyscallArgs, result: number, mem: GuestMemory): string {
  if (!def) return `syscall_${nr}(${Array.from(a, hex).join(', ')}) = ${formatResult(result, 'int')}`;
  const shown = def.args.map((kind, i) => arg(kind, a, i, result, mem));
  return `${def.name}(${shown.join(', ')}) = ${formatResult(result, def.ret)}`;
}
