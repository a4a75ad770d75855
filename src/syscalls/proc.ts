/**
 * Process identity, exit, limits and the odds and ends a libc asks for at start-up.
 * A tskvm guest is one process, pid 2, whose parent is pid 1, running as root inside its sandbox;
 * its threads are in threads.ts.
 */
import { E } from '../host/errno.js';
import { fillRandom } from '../host/random.js';
import { Process } from './process.js';
import type { SyscallDef } from './syscall.js';

const ARCH_SET_GS = 0x1001, ARCH_SET_FS = 0x1002, ARCH_GET_FS = 0x1003, ARCH_GET_GS = 0x1004;
const RLIM_INFINITY = -1;
const RLIMIT_DATA = 2, RLIMIT_STACK = 3, RLIMIT_NOFILE = 7, RLIMIT_AS = 9;
const PR_SET_NAME = 15, PR_GET_NAME = 16;
const GRND_MAX = 33554431;

const UTS_FIELD = 65;

/**
 * What uname and sysinfo tell the guest: fixed values, so that a guest learns nothing of the host (its
 * kernel's version, how long it has been up). The release is one whose system calls tskvm emulates.
 */
export const GUEST_UNAME = ['Linux', 'tskvm', '6.1.0', '#1 SMP tskvm', 'x86_64', '(none)'] as const;
const GUEST_UPTIME_S = 1;

function rlimit(p: Process, resource: number): [number, number] | null {
  if (resource < 0 || resource > 15) return null;
  switch (resource) {
    case RLIMIT_STACK: return [p.mm.stackTop - p.mm.stackBottom, RLIM_INFINITY];
    case RLIMIT_NOFILE: return [p.files.maxFiles, p.files.maxFiles];
    case RLIMIT_AS: case RLIMIT_DATA: return [p.mm.end, p.mm.end];
    default: return [RLIM_INFINITY, RLIM_INFINITY];
  }
}

function writeRlimit(p: Process, addr: number, value: [number, number]): void {
  p.mem.setU64(addr, value[0]);
  p.mem.setU64(addr + 8, value[1]);
}

const constant = (nr: number, name: string, value: number): SyscallDef => ({ nr, name, args: [], handler: () => value });

export const procSyscalls: SyscallDef[] = [
  constant(39, 'getpid', Process.PID),
  constant(110, 'getppid', Process.PPID),
  constant(102, 'getuid', 0),
  constant(107, 'geteuid', 0),
  constant(104, 'getgid', 0),
  constant(108, 'getegid', 0),
  constant(111, 'getpgrp', Process.PID),
  { nr: 121, name: 'getpgid', args: ['int'], handler: () => Process.PID },
  { nr: 124, name: 'getsid', args: ['int'], handler: () => Process.PID },
  { nr: 109, name: 'setpgid', args: ['int', 'int'], handler: () => 0 },
  { nr: 112, name: 'setsid', args: [], handler: () => -E.EPERM },
  { nr: 115, name: 'getgroups', args: ['int', 'ptr'], handler: () => 0 },
  {
    nr: 118, name: 'getresuid', args: ['ptr', 'ptr', 'ptr'],
    handler: (p, a) => { for (let i = 0; i < 3; i++) p.mem.setU32(a[i]!, 0); return 0; },
  },
  {
    nr: 120, name: 'getresgid', args: ['ptr', 'ptr', 'ptr'],
    handler: (p, a) => { for (let i = 0; i < 3; i++) p.mem.setU32(a[i]!, 0); return 0; },
  },
  { nr: 105, name: 'setuid', args: ['int'], handler: (_p, a) => ((a[0]! | 0) === 0 ? 0 : -E.EPERM) },
  { nr: 106, name: 'setgid', args: ['int'], handler: (_p, a) => ((a[0]! | 0) === 0 ? 0 : -E.EPERM) },
  {
    nr: 158, name: 'arch_prctl', args: ['arch_prctl', 'hex'],
    handler: (p, a) => {
      const [code, addr] = [a[0]! | 0, a[1]!];
      switch (code) {
        case ARCH_SET_FS:
          if (addr < 0 || addr >= 2 ** 47) return -E.EPERM;
          p.fsBase = addr;
          p.cpu?.setFsBase(addr);
          return 0;
        case ARCH_SET_GS:
          if (addr < 0 || addr >= 2 ** 47) return -E.EPERM;
          p.gsBase = addr;
          p.cpu?.setGsBase(addr);
          return 0;
        case ARCH_GET_FS: p.mem.setU64(addr, p.fsBase); return 0;
        case ARCH_GET_GS: p.mem.setU64(addr, p.gsBase); return 0;
        default: return -E.EINVAL;
      }
    },
  },
  // Restartable sequences need the kernel to fix up preempted critical sections; libc copes without.
  { nr: 334, name: 'rseq', args: ['ptr', 'size', 'int', 'hex'], handler: () => -E.ENOSYS },
  {
    nr: 63, name: 'uname', args: ['ptr'],
    handler: (p, a) => {
      const out = p.mem.write(a[0]!, UTS_FIELD * GUEST_UNAME.length);
      out.fill(0);
      GUEST_UNAME.forEach((f, i) => out.set(Buffer.from(f).subarray(0, UTS_FIELD - 1), i * UTS_FIELD));
      return 0;
    },
  },
  {
    nr: 99, name: 'sysinfo', args: ['ptr'],
    handler: (p, a) => {
      const at = a[0]!;
      p.mem.write(at, 112).fill(0);
      p.mem.setU64(at, GUEST_UPTIME_S);
      p.mem.setU64(at + 32, p.mm.end); // totalram
      p.mem.setU64(at + 40, Math.max(0, p.mm.stackBottom - p.mm.brk)); // freeram (roughly)
      p.mem.write(at + 80, 2).set([1, 0]); // procs
      p.mem.setU32(at + 104, 1); // mem_unit
      return 0;
    },
  },
  {
    nr: 97, name: 'getrlimit', args: ['rlimit', 'ptr'],
    handler: (p, a) => {
      const value = rlimit(p, a[0]! | 0);
      if (!value) return -E.EINVAL;
      writeRlimit(p, a[1]!, value);
      return 0;
    },
  },
  { nr: 160, name: 'setrlimit', args: ['rlimit', 'ptr'], handler: (p, a) => (rlimit(p, a[0]! | 0) ? 0 : -E.EINVAL) },
  {
    nr: 302, name: 'prlimit64', args: ['int', 'rlimit', 'ptr', 'ptr'],
    handler: (p, a) => {
      const [pid, resource, , old] = [a[0]! | 0, a[1]! | 0, a[2]!, a[3]!];
      if (pid !== 0 && pid !== Process.PID) return -E.ESRCH;
      const value = rlimit(p, resource);
      if (!value) return -E.EINVAL;
      if (old) writeRlimit(p, old, value);
      return 0;
    },
  },
  {
    nr: 318, name: 'getrandom', args: ['outbuf', 'size', 'hex'],
    handler: (p, a) => {
      const len = Math.min(a[1]!, GRND_MAX);
      if (len < 0) return -E.EFAULT;
      fillRandom(p.mem.write(a[0]!, len));
      return len;
    },
  },
  {
    nr: 204, name: 'sched_getaffinity', args: ['int', 'size', 'ptr'],
    handler: (p, a) => {
      const len = a[1]!;
      if (len < 8 || len % 8 !== 0) return -E.EINVAL;
      p.mem.setU64(a[2]!, 1); // one CPU: the vCPU
      return 8;
    },
  },
  { nr: 203, name: 'sched_setaffinity', args: ['int', 'size', 'ptr'], handler: () => 0 },
  {
    nr: 309, name: 'getcpu', args: ['ptr', 'ptr', 'ptr'],
    handler: (p, a) => { if (a[0]) p.mem.setU32(a[0], 0); if (a[1]) p.mem.setU32(a[1], 0); return 0; },
  },
  {
    nr: 157, name: 'prctl', args: ['int', 'hex', 'hex', 'hex', 'hex'],
    handler: (p, a) => {
      switch (a[0]! | 0) {
        case PR_SET_NAME: {
          const name = p.mem.cBytes(a[1]!, 15) ?? p.mem.read(a[1]!, 15);
          p.threads.current.name.fill(0);
          p.threads.current.name.set(name);
          return 0;
        }
        case PR_GET_NAME: p.mem.put(a[1]!, p.threads.current.name); return 0;
        default: return -E.EINVAL;
      }
    },
  },
  // There is never a child process to wait for: clone makes threads only (threads.ts).
  { nr: 61, name: 'wait4', args: ['int', 'ptr', 'hex', 'ptr'], handler: () => -E.ECHILD },
  { nr: 247, name: 'waitid', args: ['int', 'int', 'ptr', 'hex', 'ptr'], handler: () => -E.ECHILD },
  {
    nr: 98, name: 'getrusage', args: ['int', 'ptr'],
    handler: (p, a) => { p.mem.write(a[1]!, 144).fill(0); return 0; },
  },
];
