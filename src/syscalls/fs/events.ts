/**
 * Event descriptors: epoll sets, eventfds and timerfds, each over the host object of the same kind
 * (../open-files/epoll-file.ts, event-files.ts), and signalfds (signal-file.ts). Arguments are
 * checked here in Linux's order; every wait is bounded by the run's deadline.
 */
import { E } from '../../host/errno.js';
import { EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_EVENT_SIZE, EpollFile } from '../open-files/epoll-file.js';
import { EventFdFile, TimerFdFile } from '../open-files/event-files.js';
import { O, type OpenFile } from '../open-files/open-file.js';
import { SignalFdFile } from '../open-files/signal-file.js';
import type { Process } from '../process.js';
import type { SyscallDef } from '../syscall.js';
import { inGuest, installNew, int, inUserSpace, uint } from './args.js';
import { timeoutMs } from './polling.js';

/** Linux's EP_MAX_EVENTS: INT_MAX / sizeof(struct epoll_event). */
const EP_MAX_EVENTS = Math.floor(0x7fffffff / EPOLL_EVENT_SIZE);
const EFD_SEMAPHORE = 1;
const TFD_SETTIME_FLAGS = 3; // TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET
const ITIMERSPEC_SIZE = 32;
const SIGSET_SIZE = 8;

function install(p: Process, file: OpenFile | number, cloexec: boolean): number {
  return typeof file === 'number' ? file : installNew(p, file, cloexec);
}

function epollCreate(p: Process, flags: number): number {
  if (flags & ~O.CLOEXEC) return -E.EINVAL;
  return install(p, EpollFile.create(0, p.files.watches), (flags & O.CLOEXEC) !== 0);
}

function epollCtl(p: Process, epfd: number, op: number, fd: number, eventAddr: number): number {
  const hasEvent = op === EPOLL_CTL_ADD || op === EPOLL_CTL_MOD;
  if (hasEvent && !inGuest(p, eventAddr, EPOLL_EVENT_SIZE)) return -E.EFAULT;
  const epoll = p.files.get(epfd);
  const target = p.files.get(fd);
  if (!epoll || !target) return -E.EBADF;
  if (target.pollFd === null) return -E.EPERM;
  if (!(epoll instanceof EpollFile)) return -E.EINVAL;
  const events = hasEvent ? p.mem.u32(eventAddr) : 0;
  const data = hasEvent ? p.mem.u64n(eventAddr + 4) : 0n;
  return epoll.ctl(op, fd, target, events, data);
}

/** epoll_wait and its variants once their timeout and signal mask are read. */
function epollWait(p: Process, epfd: number, eventsAddr: number, maxEvents: number, timeout: number): number {
  if (maxEvents <= 0 || maxEvents > EP_MAX_EVENTS) return -E.EINVAL;
  // access_ok: the whole array must lie in user space (where it is mapped is checked as it is filled).
  if (!inUserSpace(p, eventsAddr, maxEvents * EPOLL_EVENT_SIZE)) return -E.EFAULT;
  const epoll = p.files.get(epfd);
  if (!epoll) return -E.EBADF;
  if (!(epoll instanceof EpollFile)) return -E.EINVAL;
  p.signals.updateWatchers(); // a signalfd in the set shows what this thread has pending
  const room = Math.min(maxEvents, Math.max(1, epoll.watchCount));
  const events = Buffer.alloc(room * EPOLL_EVENT_SIZE);
  const n = epoll.wait(events, room, timeout);
  if (n <= 0) return n;
  if (!inGuest(p, eventsAddr, n * EPOLL_EVENT_SIZE)) return -E.EFAULT;
  p.mem.put(eventsAddr, events.subarray(0, n * EPOLL_EVENT_SIZE));
  return n;
}

/** The signal mask of epoll_pwait/epoll_pwait2 is checked as Linux does, not applied: no signal reaches a waiting guest. */
function sigmaskError(p: Process, addr: number, size: number): number {
  if (addr === 0) return 0;
  if (size !== SIGSET_SIZE) return -E.EINVAL;
  return inGuest(p, addr, SIGSET_SIZE) ? 0 : -E.EFAULT;
}

function eventfd(p: Process, initval: number, flags: number): number {
  if (flags & ~(O.CLOEXEC | O.NONBLOCK | EFD_SEMAPHORE)) return -E.EINVAL;
  return install(p, EventFdFile.create(initval, flags), (flags & O.CLOEXEC) !== 0);
}

function timerfdCreate(p: Process, clock: number, flags: number): number {
  return install(p, TimerFdFile.create(clock, flags), (flags & O.CLOEXEC) !== 0);
}

/**
 * signalfd4 (and signalfd, with no flags): a new signalfd for `fd` -1, else a new mask for the
 * signalfd `fd`; in Linux's order: the size, the mask's address, the flags, the fd.
 */
function signalfd4(p: Process, fd: number, maskAddr: number, size: number, flags: number): number {
  if (size !== SIGSET_SIZE) return -E.EINVAL;
  if (!inGuest(p, maskAddr, SIGSET_SIZE)) return -E.EFAULT;
  const raw = p.mem.read(maskAddr, SIGSET_SIZE);
  const mask = new DataView(raw.buffer, raw.byteOffset, SIGSET_SIZE).getBigUint64(0, true);
  if (flags & ~(O.NONBLOCK | O.CLOEXEC)) return -E.EINVAL;
  if (fd === -1) return install(p, SignalFdFile.create(p, mask, flags), (flags & O.CLOEXEC) !== 0);
  const file = p.files.get(fd);
  if (!file) return -E.EBADF;
  if (!(file instanceof SignalFdFile)) return -E.EINVAL;
  file.setMask(mask);
  return fd;
}

/** A guest struct itimerspec as a host copy, or -EINVAL (a bad timespec) / -EFAULT. */
function itimerspec(p: Process, addr: number): Buffer | number {
  if (!inGuest(p, addr, ITIMERSPEC_SIZE)) return -E.EFAULT;
  const spec = Buffer.from(p.mem.read(addr, ITIMERSPEC_SIZE));
  for (const at of [0, 16]) {
    const sec = spec.readBigInt64LE(at);
    const nsec = spec.readBigInt64LE(at + 8);
    if (sec < 0n || nsec < 0n || nsec >= 1_000_000_000n) return -E.EINVAL;
  }
  return spec;
}

function timerfd(p: Process, fd: number): TimerFdFile | number {
  const file = p.files.get(fd);
  if (!file) return -E.EBADF;
  return file instanceof TimerFdFile ? file : -E.EINVAL;
}

function timerfdSettime(p: Process, fd: number, flags: number, newAddr: number, oldAddr: number): number {
  const spec = itimerspec(p, newAddr);
  if (spec === -E.EFAULT) return spec;
  if (flags & ~TFD_SETTIME_FLAGS || typeof spec === 'number') return -E.EINVAL;
  const file = timerfd(p, fd);
  if (typeof file === 'number') return file;
  const old = Buffer.alloc(ITIMERSPEC_SIZE);
  const r = file.settime(flags, spec, old);
  if (r < 0 || oldAddr === 0) return r;
  // As in Linux, the timer is set even when the old value cannot be written back.
  if (!inGuest(p, oldAddr, ITIMERSPEC_SIZE)) return -E.EFAULT;
  p.mem.put(oldAddr, old);
  return 0;
}

function timerfdGettime(p: Process, fd: number, addr: number): number {
  const file = timerfd(p, fd);
  if (typeof file === 'number') return file;
  const spec = Buffer.alloc(ITIMERSPEC_SIZE);
  const r = file.gettime(spec);
  if (r < 0) return r;
  if (!inGuest(p, addr, ITIMERSPEC_SIZE)) return -E.EFAULT;
  p.mem.put(addr, spec);
  return 0;
}

export const eventSyscalls: SyscallDef[] = [
  { nr: 213, name: 'epoll_create', args: ['int'], ret: 'fd', handler: (p, a) => (int(a[0]!) <= 0 ? -E.EINVAL : epollCreate(p, 0)) },
  { nr: 291, name: 'epoll_create1', args: ['fdflags'], ret: 'fd', handler: (p, a) => epollCreate(p, int(a[0]!)) },
  { nr: 233, name: 'epoll_ctl', args: ['fd', 'epollop', 'fd', 'epollevent'], handler: (p, a) => epollCtl(p, int(a[0]!), int(a[1]!), int(a[2]!), a[3]!) },
  // A negative timeout waits forever.
  { nr: 232, name: 'epoll_wait', args: ['fd', 'ptr', 'int', 'int'], handler: (p, a) => epollWait(p, int(a[0]!), a[1]!, int(a[2]!), Math.max(-1, int(a[3]!))) },
  {
    nr: 281, name: 'epoll_pwait', args: ['fd', 'ptr', 'int', 'int', 'ptr', 'size'],
    handler: (p, a) => sigmaskError(p, a[4]!, a[5]!) || epollWait(p, int(a[0]!), a[1]!, int(a[2]!), Math.max(-1, int(a[3]!))),
  },
  {
    nr: 441, name: 'epoll_pwait2', args: ['fd', 'ptr', 'int', 'ptr', 'ptr', 'size'],
    handler: (p, a) => {
      const timeout = timeoutMs(p, a[3]!);
      if (timeout < -1) return timeout;
      return sigmaskError(p, a[4]!, a[5]!) || epollWait(p, int(a[0]!), a[1]!, int(a[2]!), timeout);
    },
  },
  { nr: 284, name: 'eventfd', args: ['uint'], ret: 'fd', handler: (p, a) => eventfd(p, uint(a[0]!), 0) },
  { nr: 290, name: 'eventfd2', args: ['uint', 'efdflags'], ret: 'fd', handler: (p, a) => eventfd(p, uint(a[0]!), int(a[1]!)) },
  { nr: 283, name: 'timerfd_create', args: ['clock', 'fdflags'], ret: 'fd', handler: (p, a) => timerfdCreate(p, int(a[0]!), int(a[1]!)) },
  { nr: 286, name: 'timerfd_settime', args: ['fd', 'hex', 'ptr', 'ptr'], handler: (p, a) => timerfdSettime(p, int(a[0]!), int(a[1]!), a[2]!, a[3]!) },
  { nr: 282, name: 'signalfd', args: ['fd', 'sigset', 'size'], ret: 'fd', handler: (p, a) => signalfd4(p, int(a[0]!), a[1]!, a[2]!, 0) },
  { nr: 289, name: 'signalfd4', args: ['fd', 'sigset', 'size', 'sfdflags'], ret: 'fd', handler: (p, a) => signalfd4(p, int(a[0]!), a[1]!, a[2]!, int(a[3]!)) },
  { nr: 287, name: 'timerfd_gettime', args: ['fd', 'ptr'], handler: (p, a) => timerfdGettime(p, int(a[0]!), a[1]!) },
];
