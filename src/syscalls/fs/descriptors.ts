/**
 * Calls on descriptors themselves rather than on what they name: close, dup, fcntl, ioctl, pipes.
 * stdio is never a terminal (TCGETS is -ENOTTY), so a guest's output buffering is the same in every run.
 */
import { E } from '../../host/errno.js';
import { PipeEnd } from '../open-files/host-file.js';
import { O } from '../open-files/open-file.js';
import type { Process } from '../process.js';
import type { SyscallDef } from '../syscall.js';
import { inGuest, installNew, int, uint } from './args.js';

const F_DUPFD = 0;
const F_GETFD = 1;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const F_GETLK = 5;
const F_SETLK = 6;
const F_SETLKW = 7;
const F_SETOWN = 8;
const F_GETOWN = 9;
const F_OFD_GETLK = 36;
const F_OFD_SETLK = 37;
const F_OFD_SETLKW = 38;
const F_DUPFD_CLOEXEC = 1030;
const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;
const FD_CLOEXEC = 1;
const F_UNLCK = 2;
/** What F_SETFL may change. */
const SETFL_MASK = O.APPEND | O.NONBLOCK | O.ASYNC | O.DIRECT | O.NOATIME;
/** sizeof(struct flock) on x86-64: short l_type, l_whence; off_t l_start, l_len; pid_t l_pid. */
const FLOCK_SIZE = 32;

function fcntl(p: Process, fd: number, cmd: number, arg: number): number {
  const file = p.files.get(fd);
  if (!file) return -E.EBADF;
  switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
      if (arg < 0 || arg >= p.files.maxFiles) return -E.EINVAL;
      return p.files.install(file, arg, cmd === F_DUPFD_CLOEXEC);
    case F_GETFD:
      return p.files.isCloexec(fd) ? FD_CLOEXEC : 0;
    case F_SETFD:
      return p.files.setCloexec(fd, (arg & FD_CLOEXEC) !== 0);
    case F_GETFL:
      return file.flags;
    case F_SETFL:
      file.flags = (file.flags & ~SETFL_MASK) | (arg & SETFL_MASK);
      return 0;
    // One process: no lock ever conflicts. F_GETLK answers "unlocked".
    case F_GETLK:
    case F_OFD_GETLK: {
      if (!inGuest(p, arg, FLOCK_SIZE)) return -E.EFAULT;
      const type = p.mem.read(arg, 2);
      if (type[0]! > F_UNLCK || type[1] !== 0) return -E.EINVAL;
      p.mem.put(arg, new Uint8Array([F_UNLCK, 0]));
      return 0;
    }
    case F_SETLK:
    case F_SETLKW:
    case F_OFD_SETLK:
    case F_OFD_SETLKW:
      return inGuest(p, arg, FLOCK_SIZE) ? 0 : -E.EFAULT;
    case F_GETOWN:
    case F_SETOWN:
      return 0;
    case F_GETPIPE_SZ:
    case F_SETPIPE_SZ:
      if (!(file instanceof PipeEnd)) return -E.EBADF;
      return cmd === F_GETPIPE_SZ ? file.capacity() : file.capacity(arg);
    default:
      return -E.EINVAL;
  }
}

const TCGETS = 0x5401;
const FIONCLEX = 0x5450;
const FIOCLEX = 0x5451;
const FIONBIO = 0x5421;
const FIONREAD = 0x541b;

function ioctl(p: Process, fd: number, request: number, arg: number): number {
  const file = p.files.get(fd);
  if (!file) return -E.EBADF;
  switch (request) {
    case FIONREAD: {
      const n = file.available();
      if (n < 0) return n;
      if (!inGuest(p, arg, 4)) return -E.EFAULT;
      p.mem.setI32(arg, n);
      return 0;
    }
    case FIOCLEX:
    case FIONCLEX:
      return p.files.setCloexec(fd, request === FIOCLEX);
    case FIONBIO:
      if (!inGuest(p, arg, 4)) return -E.EFAULT;
      file.flags = p.mem.i32(arg) ? file.flags | O.NONBLOCK : file.flags & ~O.NONBLOCK;
      return 0;
    case TCGETS: // and every other terminal request: stdio is never a tty
    default:
      return -E.ENOTTY;
  }
}

function pipe2(p: Process, fdsAddr: number, flags: number): number {
  if (flags & ~(O.CLOEXEC | O.NONBLOCK | O.DIRECT)) return -E.EINVAL;
  if (!inGuest(p, fdsAddr, 8)) return -E.EFAULT;
  const ends = PipeEnd.pair(flags);
  if (typeof ends === 'number') return ends;
  const cloexec = (flags & O.CLOEXEC) !== 0;
  const readFd = installNew(p, ends[0], cloexec);
  if (readFd < 0) {
    ends[1].close();
    return readFd;
  }
  const writeFd = installNew(p, ends[1], cloexec);
  if (writeFd < 0) {
    p.files.close(readFd);
    return writeFd;
  }
  p.mem.setI32(fdsAddr, readFd);
  p.mem.setI32(fdsAddr + 4, writeFd);
  return 0;
}

function closeRange(p: Process, first: number, last: number, flags: number): number {
  const CLOSE_RANGE_UNSHARE = 2;
  const CLOSE_RANGE_CLOEXEC = 4;
  if (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) || first > last) return -E.EINVAL;
  for (const fd of p.files.openFds()) {
    if (fd < first || fd > last) continue;
    if (flags & CLOSE_RANGE_CLOEXEC) p.files.setCloexec(fd, true);
    else p.files.close(fd);
  }
  return 0;
}

export const descriptorSyscalls: SyscallDef[] = [
  { nr: 3, name: 'close', args: ['fd'], handler: (p, a) => p.files.close(int(a[0]!)) },
  { nr: 436, name: 'close_range', args: ['uint', 'uint', 'hex'], handler: (p, a) => closeRange(p, uint(a[0]!), uint(a[1]!), uint(a[2]!)) },
  { nr: 32, name: 'dup', args: ['fd'], ret: 'fd', handler: (p, a) => p.files.dup(int(a[0]!)) },
  { nr: 33, name: 'dup2', args: ['fd', 'fd'], ret: 'fd', handler: (p, a) => p.files.dup2(int(a[0]!), int(a[1]!)) },
  {
    nr: 292, name: 'dup3', args: ['fd', 'fd', 'oflags'], ret: 'fd',
    handler: (p, a) => (int(a[2]!) & ~O.CLOEXEC ? -E.EINVAL : p.files.dup3(int(a[0]!), int(a[1]!), (int(a[2]!) & O.CLOEXEC) !== 0)),
  },
  { nr: 72, name: 'fcntl', args: ['fd', 'fcntl', 'hex'], handler: (p, a) => fcntl(p, int(a[0]!), int(a[1]!), a[2]!) },
  { nr: 16, name: 'ioctl', args: ['fd', 'ioctl', 'hex'], handler: (p, a) => ioctl(p, int(a[0]!), uint(a[1]!), a[2]!) },
  { nr: 22, name: 'pipe', args: ['ptr'], handler: (p, a) => pipe2(p, a[0]!, 0) },
  { nr: 293, name: 'pipe2', args: ['ptr', 'oflags'], handler: (p, a) => pipe2(p, a[0]!, int(a[1]!)) },
];
