/**
 * An epoll set (epoll_create1(2)) over a host epoll set. Each watch of a guest (fd, open file) pair
 * registers its own duplicate of the file's host fd, carrying the guest's events and its 64-bit data
 * as given: the host's struct epoll_event is the guest's (x86-64 packs both), so what epoll_wait
 * returns goes to the guest as it is, and the host does the checks (EINVAL, ELOOP) and the
 * edge-triggered and one-shot bookkeeping.
 *
 * Linux keys a watch by (fd number, open file) and drops it when the file's last descriptor closes,
 * not when the fd named in epoll_ctl does; so does this, through FileWatcher. Host fds are
 * process-wide, so the watches of one process are bounded (WatchBudget): a guest could otherwise
 * spend the host's fds, which every VM on the host shares.
 *
 * A frozen or saved set keeps its watches as (fd, file, events, data); a fork or a reset registers
 * them again, so edge-triggered and one-shot watches start afresh there.
 */
import { TskvmError } from '../../errors.js';
import { E } from '../../host/errno.js';
import { errno as lastErrno, libc } from '../../host/libc.js';
import type { FrozenFile } from './frozen-file.js';
import { HostFile, waitReady } from './host-file.js';
import { O, type FileKind, type FileWatcher, type OpenFile } from './open-file.js';

export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
const EPOLLIN = 0x1;
const EPOLLOUT = 0x4;
const EPOLLERR = 0x8;
const EPOLLHUP = 0x10;
const EPOLLET = 2 ** 31;
const EPOLLEXCLUSIVE = 1 << 28;
const EPOLLWAKEUP = 1 << 29;
/** What EPOLLEXCLUSIVE may come with (Linux's EPOLLEXCLUSIVE_OK_BITS). */
const EXCLUSIVE_OK = EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE;
/** sizeof(struct epoll_event) on x86-64 (packed: u32 events, u64 data). */
export const EPOLL_EVENT_SIZE = 12;
const POLLIN = 0x1;
const F_DUPFD_CLOEXEC = 1030;

/** What a watch asks of the host: the guest's events that the file can report, and epoll's own flags. */
function hostEvents(file: OpenFile, events: number): number {
  return events & (file.pollEvents | ~0xffff);
}

/** How many watches a process's epoll sets may hold together (each is a host fd); past it, ENOSPC as at Linux's max_user_watches. */
export interface WatchBudget {
  used: number;
  readonly max: number;
}

interface Watch {
  fd: number;
  file: OpenFile;
  events: number;
  data: bigint;
}

interface HostWatch extends Watch {
  hostFd: number;
}

export type SavedWatches = Watch[];

export class EpollFile extends HostFile implements FileWatcher {
  override readonly kind: FileKind = 'epoll';
  /** Per watched file, its watches by guest fd. */
  private readonly watches = new Map<OpenFile, Map<number, HostWatch>>();
  /** A call since the last saveState that a reset must undo (a watch changed, or fired). */
  private changed = false;
  private readonly event = Buffer.alloc(EPOLL_EVENT_SIZE);

  private constructor(hostFd: number, flags: number, private readonly budget: WatchBudget) {
    super(hostFd, flags, { positioning: 'stream', mutable: true, hostNonblocking: true });
  }

  /** epoll_create1(2): a new set, or -errno. */
  static create(flags: number, budget: WatchBudget): EpollFile | number {
    const fd = libc.epollCreate1(O.CLOEXEC) as number;
    if (fd < 0) return -lastErrno();
    return new EpollFile(fd, O.RDWR | (flags & O.NONBLOCK), budget);
  }

  /**
   * epoll_ctl(2) on guest fd `fd`, open as `file` (the caller checked both exist), in Linux's order
   * of checks. `events` and `data` are the guest's struct epoll_event (ignored by DEL).
   */
  ctl(op: number, fd: number, file: OpenFile, events: number, data: bigint): number {
    if (file.pollFd === null) return -E.EPERM; // regular files and directories, as Linux
    if (file === this) return -E.EINVAL;
    // EPOLLWAKEUP needs CAP_BLOCK_SUSPEND, without which Linux drops it: the host's suspend is not the guest's.
    events &= ~EPOLLWAKEUP;
    if ((op === EPOLL_CTL_ADD || op === EPOLL_CTL_MOD) && events & EPOLLEXCLUSIVE) {
      if (op === EPOLL_CTL_MOD || file.kind === 'epoll' || events & ~EXCLUSIVE_OK) return -E.EINVAL;
    }
    const watch = this.watches.get(file)?.get(fd);
    switch (op) {
      case EPOLL_CTL_ADD:
        return watch ? -E.EEXIST : this.add({ fd, file, events, data });
      case EPOLL_CTL_DEL:
        if (!watch) return -E.ENOENT;
        this.remove(watch);
        return 0;
      case EPOLL_CTL_MOD: {
        if (!watch) return -E.ENOENT;
        if (watch.events & EPOLLEXCLUSIVE) return -E.EINVAL;
        const r = this.hostCtl(EPOLL_CTL_MOD, watch.hostFd, hostEvents(file, events), data);
        if (r < 0) return r;
        this.changed = true;
        watch.events = events;
        watch.data = data;
        return 0;
      }
      default:
        return -E.EINVAL;
    }
  }

  /**
   * epoll_wait(2) into `into` (max events of EPOLL_EVENT_SIZE bytes, laid out as the guest's): how
   * many, or -errno. Waits in waitReady for the host set to have one, up to `timeoutMs` (-1: forever).
   */
  wait(into: Buffer, max: number, timeoutMs: number): number {
    const started = performance.now();
    for (;;) {
      const n = libc.epollWait(this.hostFd, into, max, 0) as number;
      if (n < 0) return -lastErrno();
      if (n > 0) {
        this.changed = true;
        return n;
      }
      const left = timeoutMs < 0 ? -1 : Math.max(0, Math.ceil(timeoutMs - (performance.now() - started)));
      if (left === 0) return 0;
      const ready = waitReady(this.hostFd, POLLIN, left);
      if (ready <= 0) return ready;
    }
  }

  /** Linux's noop_llseek: lseek succeeds and the position stays 0. */
  override seek(): number {
    return 0;
  }

  /** How many watches it holds: no wait can report more events. */
  get watchCount(): number {
    let n = 0;
    for (const byFd of this.watches.values()) n += byFd.size;
    return n;
  }

  /** The file's last descriptor closed: its watches go, as in Linux. */
  forget(file: OpenFile): void {
    for (const watch of [...(this.watches.get(file)?.values() ?? [])]) this.remove(watch);
  }

  override saveState(): SavedWatches {
    this.changed = false;
    return this.list();
  }

  override restoreState(state: unknown): void {
    if (!this.changed) return;
    this.clear();
    for (const watch of state as SavedWatches) this.add(watch);
    this.changed = false;
  }

  override freeze(indexOf: (file: OpenFile) => number | undefined): FrozenFile {
    const watches = this.list().flatMap(({ fd, file, events, data }) => {
      const i = indexOf(file);
      return i === undefined ? [] : [{ fd, file: i, events, data }];
    });
    return { type: 'epoll', flags: this.flags, watches };
  }

  static thaw(f: Extract<FrozenFile, { type: 'epoll' }>, budget: WatchBudget): EpollFile {
    const file = EpollFile.create(0, budget);
    if (typeof file === 'number') throw new TskvmError('TSKVM_ERR_HOST_FD', `cannot make an epoll set for a request VM: errno ${-file}`);
    file.flags = f.flags;
    return file;
  }

  override relink(frozen: FrozenFile, files: readonly OpenFile[]): void {
    if (frozen.type !== 'epoll') return;
    for (const { fd, file, events, data } of frozen.watches) this.add({ fd, file: files[file]!, events, data });
  }

  override close(): void {
    this.clear();
    super.close();
  }

  private list(): Watch[] {
    return [...this.watches.values()].flatMap((byFd) => [...byFd.values()].map(({ fd, file, events, data }) => ({ fd, file, events, data })));
  }

  private add(watch: Watch): number {
    if (this.budget.used >= this.budget.max) return -E.ENOSPC;
    const hostFd = libc.fcntlInt(watch.file.pollFd!, F_DUPFD_CLOEXEC, 0) as number;
    if (hostFd < 0) return lastErrno() === E.EMFILE ? -E.ENOMEM : -lastErrno();
    const r = this.hostCtl(EPOLL_CTL_ADD, hostFd, hostEvents(watch.file, watch.events), watch.data);
    if (r < 0) {
      libc.close(hostFd);
      return r;
    }
    this.budget.used++;
    this.changed = true;
    let byFd = this.watches.get(watch.file);
    if (!byFd) this.watches.set(watch.file, (byFd = new Map()));
    byFd.set(watch.fd, { ...watch, hostFd });
    (watch.file.watchers ??= new Set()).add(this);
    return 0;
  }

  private remove(watch: HostWatch): void {
    this.hostCtl(EPOLL_CTL_DEL, watch.hostFd, 0, 0n);
    libc.close(watch.hostFd);
    this.budget.used--;
    this.changed = true;
    const byFd = this.watches.get(watch.file)!;
    byFd.delete(watch.fd);
    if (byFd.size === 0) {
      this.watches.delete(watch.file);
      watch.file.watchers?.delete(this);
    }
  }

  private clear(): void {
    for (const byFd of [...this.watches.values()]) for (const watch of [...byFd.values()]) this.remove(watch);
  }

  private hostCtl(op: number, hostFd: number, events: number, data: bigint): number {
    this.event.writeUInt32LE(events >>> 0, 0);
    this.event.writeBigUInt64LE(data, 4);
    return libc.epollCtl(this.hostFd, op, hostFd, this.event) < 0 ? -lastErrno() : 0;
  }
}
