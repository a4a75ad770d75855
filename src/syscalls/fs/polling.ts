/**
 * Waiting for descriptors: poll, ppoll, select, pselect6, all over one host poll(2). Files that live
 * in tskvm or on disk are always ready; a wait is bounded by the run's deadline.
 */
import { E } from '../../host/errno.js';
import { waitForHost } from '../deadline.js';
import type { Process } from '../process.js';
import type { SyscallDef } from '../syscall.js';
import { inGuest, int, uint } from './args.js';

export const POLLIN = 0x1;
const POLLPRI = 0x2;
const POLLOUT = 0x4;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;
const POLLRDNORM = 0x40;
const POLLWRNORM = 0x100;
/** What Linux reports for a file with no poll method of its own (regular files, directories). */
const DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;

/**
 * Readiness of guest fds, as poll(2) reports it: one revents per entry (fd < 0: 0, as poll skips
 * it), or -errno. Files that live in tskvm or on disk are always ready; pipes and ttys are asked of
 * the host in one poll(2), which also does the waiting, bounded by the run's deadline.
 */
function pollFiles(p: Process, entries: Array<{ fd: number; events: number }>, timeoutMs: number): number[] | number {
  p.signals.updateWatchers(); // a signalfd shows what this thread has pending
  const revents = new Array<number>(entries.length).fill(0);
  const host = Buffer.alloc(entries.length * 8); // struct pollfd { int fd; short events; short revents; }
  const hostEntries: number[] = []; // index in `entries` of each host pollfd
  entries.forEach(({ fd, events }, i) => {
    if (fd < 0) return;
    const file = p.files.get(fd);
    if (!file) {
      revents[i] = POLLNVAL;
    } else if (file.pollFd === null) {
      revents[i] = DEFAULT_POLLMASK & (events | POLLERR | POLLHUP);
    } else {
      host.writeInt32LE(file.pollFd, hostEntries.length * 8);
      host.writeUInt16LE(events & file.pollEvents, hostEntries.length * 8 + 4);
      hostEntries.push(i);
    }
  });
  const wait = revents.some((r) => r !== 0) ? 0 : timeoutMs;
  const n = waitForHost(host, hostEntries.length, wait);
  if (n < 0) return n;
  hostEntries.forEach((i, k) => { revents[i] = host.readUInt16LE(k * 8 + 6); });
  return revents;
}

/** poll(2) over the guest's struct pollfd array. */
function poll(p: Process, fdsAddr: number, count: number, timeoutMs: number): number {
  if (count < 0 || count > p.files.maxFiles) return -E.EINVAL;
  if (count > 0 && !inGuest(p, fdsAddr, count * 8)) return -E.EFAULT;
  const entries = Array.from({ length: count }, (_, i) => ({
    fd: p.mem.i32(fdsAddr + i * 8), events: p.mem.u16(fdsAddr + i * 8 + 4),
  }));
  const revents = pollFiles(p, entries, timeoutMs);
  if (typeof revents === 'number') return revents;
  revents.forEach((r, i) => p.mem.setU16(fdsAddr + i * 8 + 6, r));
  if (count > 0) p.mem.recordWrite(fdsAddr, count * 8);
  return revents.filter((r) => r !== 0).length;
}

/** What select(2) counts as ready in each of its three sets, in poll's terms (Linux's POLLIN_SET etc.). */
const SELECT_SETS = [
  { events: POLLIN | POLLRDNORM, ready: POLLIN | POLLRDNORM | POLLHUP | POLLERR },
  { events: POLLOUT | POLLWRNORM, ready: POLLOUT | POLLWRNORM | POLLERR },
  { events: POLLPRI, ready: POLLPRI },
];
const FD_SETSIZE = 1024;

/**
 * select(2) and pselect6(2) over poll: each fd named in any of the three fd_set bitmaps becomes one
 * poll entry; the sets are rewritten to the ready fds. An fd that is not open is EBADF, as in Linux.
 */
function select(p: Process, nfds: number, setAddrs: number[], timeoutMs: number): number {
  if (nfds < 0 || nfds > Math.max(FD_SETSIZE, p.files.maxFiles)) return -E.EINVAL;
  const bytes = Math.ceil(nfds / 64) * 8;
  for (const addr of setAddrs) if (addr && bytes > 0 && !inGuest(p, addr, bytes)) return -E.EFAULT;
  const entries: Array<{ fd: number; events: number }> = [];
  for (let fd = 0; fd < nfds; fd++) {
    let events = 0;
    setAddrs.forEach((addr, set) => {
      if (addr && (p.mem.u8(addr + (fd >> 3)) & (1 << (fd & 7)))) events |= SELECT_SETS[set]!.events;
    });
    if (!events) continue;
    if (!p.files.get(fd)) return -E.EBADF;
    entries.push({ fd, events });
  }
  const revents = pollFiles(p, entries, timeoutMs);
  if (typeof revents === 'number') return revents;
  let ready = 0;
  setAddrs.forEach((addr, set) => {
    if (!addr || bytes === 0) return;
    const bits = p.mem.write(addr, bytes);
    bits.fill(0);
    entries.forEach(({ fd, events }, i) => {
      if (events & SELECT_SETS[set]!.events && revents[i]! & SELECT_SETS[set]!.ready) {
        bits[fd >> 3]! |= 1 << (fd & 7);
        ready++;
      }
    });
  });
  return ready;
}

/**
 * A wait's timeout in guest memory: struct timespec (ppoll, pselect6: `subunits` 1e9) or struct
 * timeval (select: 1e6); NULL for none. In milliseconds, rounded up, -1 for forever, or -errno.
 */
export function timeoutMs(p: Process, addr: number, subunits = 1e9): number {
  if (addr === 0) return -1;
  if (!inGuest(p, addr, 16)) return -E.EFAULT;
  const sec = p.mem.i64(addr);
  const sub = p.mem.i64(addr + 8);
  if (sec < 0 || sub < 0 || sub >= subunits) return -E.EINVAL;
  return Math.min(0x7fffffff, sec * 1000 + Math.ceil(sub / (subunits / 1000)));
}

/** select and pselect6 write back the time left of their timeout, as Linux does. */
function selectWithTimeout(p: Process, nfds: number, sets: number[], addr: number, subunits: number): number {
  const limit = timeoutMs(p, addr, subunits);
  if (limit < -1) return limit;
  const started = performance.now();
  const ready = select(p, nfds, sets, limit);
  if (addr && ready >= 0) {
    const leftMs = Math.max(0, limit - (performance.now() - started));
    p.mem.setU64(addr, Math.floor(leftMs / 1000));
    p.mem.setU64(addr + 8, Math.floor((leftMs % 1000) * (subunits / 1000)));
  }
  return ready;
}

export const pollingSyscalls: SyscallDef[] = [
  // The timeout is an int: a negative one waits forever.
  { nr: 7, name: 'poll', args: ['ptr', 'uint', 'int'], handler: (p, a) => poll(p, a[0]!, uint(a[1]!), Math.max(-1, int(a[2]!))) },
  {
    // The signal mask (a[3]) is not applied: no signal reaches the guest while it waits.
    nr: 271, name: 'ppoll', args: ['ptr', 'uint', 'ptr', 'ptr', 'size'],
    handler: (p, a) => {
      const timeout = timeoutMs(p, a[2]!);
      return timeout < -1 ? timeout : poll(p, a[0]!, uint(a[1]!), timeout);
    },
  },
  { nr: 23, name: 'select', args: ['int', 'ptr', 'ptr', 'ptr', 'ptr'], handler: (p, a) => selectWithTimeout(p, int(a[0]!), [a[1]!, a[2]!, a[3]!], a[4]!, 1e6) },
  {
    // Like ppoll, the signal mask (behind a[5]) is not applied.
    nr: 270, name: 'pselect6', args: ['int', 'ptr', 'ptr', 'ptr', 'ptr', 'ptr'],
    handler: (p, a) => selectWithTimeout(p, int(a[0]!), [a[1]!, a[2]!, a[3]!], a[4]!, 1e9),
  },
];
