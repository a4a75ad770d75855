/**
 * The guest's file descriptors and the open files behind them.
 *
 *   fd table (per process)          open files (shared by dup'd fds)
 *   ┌────┬─────────┬─────────┐
 *   │ 0  │ cloexec │ ───────────────► StdioFile(host fd 0)   refs 1
 *   │ 1  │         │ ───────────┬───► StdioFile(host fd 1)   refs 2
 *   │ 2  │         │ ───────────┘     (dup2(1, 2))
 *   │ 3  │ cloexec │ ───────────────► HostFile(host fd 27, position 4096)
 *   └────┴─────────┴─────────┘
 *
 * An open file carries what Linux keeps in a `struct file`: status flags
 * (F_GETFL), the file position, the host resource. The close-on-exec flag belongs
 * to the descriptor. An open file's host fd is closed when its last reference goes
 * (a descriptor, or a snapshot kept for resetting request forks).
 *
 * Open files move bytes between the host and *views* of guest memory
 * (`readInto(view)`): GuestMemory's windows are Uint8Arrays over the guest's RAM,
 * so `fs.readSync(hostFd, view)` lands straight in the guest. The syscall layer
 * checks guest addresses and lengths first (fs.ts); `read(mem, addr, len)` and
 * friends are the checked entry points for other families (mmap of a file).
 */
import fs from 'node:fs';
import type { GuestMemory } from '../paging/guest-memory.js';
import { E, hostErrno } from '../host/errno.js';
import { errno as lastErrno, libc } from '../host/libc.js';
import { TskvmError } from '../errors.js';
import { passedDeadline, waitLimit } from './deadline.js';
import { refundWriteQuota, takeWriteQuota } from './write-quota.js';

/** Linux open(2)/fcntl(2) flags as the guest passes them (x86-64, <asm-generic/fcntl.h>). */
export const O = {
  RDONLY: 0, WRONLY: 1, RDWR: 2, ACCMODE: 3,
  CREAT: 0o100, EXCL: 0o200, NOCTTY: 0o400, TRUNC: 0o1000, APPEND: 0o2000, NONBLOCK: 0o4000,
  DSYNC: 0o10000, ASYNC: 0o20000, DIRECT: 0o40000, LARGEFILE: 0o100000, DIRECTORY: 0o200000,
  NOFOLLOW: 0o400000, NOATIME: 0o1000000, CLOEXEC: 0o2000000, SYNC: 0o4010000, PATH: 0o10000000,
  TMPFILE: 0o20200000,
} as const;

export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/** What stat(2) reports; node's BigIntStats has exactly these fields. */
export type FileStat = Pick<fs.BigIntStats,
  'dev' | 'ino' | 'nlink' | 'mode' | 'uid' | 'gid' | 'rdev' | 'size' | 'blksize' | 'blocks' |
  'atimeNs' | 'mtimeNs' | 'ctimeNs' | 'birthtimeNs'>;

export type FileKind = 'file' | 'dir' | 'pipe' | 'stdio' | 'sink' | 'buffer';

const EMPTY = new Uint8Array(0);

const F_GETFL = 3;
const F_SETPIPE_SZ = 1031;
const PIPE_MAX_SIZE = 1 << 20;
const F_GETPIPE_SZ = 1032;
const FIONREAD = 0x541b;
const POLLIN = 0x1;
const POLLOUT = 0x4;

/**
 * One open file description. Subclasses implement the byte-level operations they
 * support; the defaults answer what Linux answers for a file that lacks them.
 */
export abstract class OpenFile {
  abstract readonly kind: FileKind;
  /** What F_GETFL reports: the access mode and status flags (O_APPEND, O_NONBLOCK, …). */
  flags: number;
  /** Descriptors and snapshots referring to this file; maintained by FileTable. */
  refs = 0;
  /** The host fd, for fstat/fchmod/futimens; null for files that live in tskvm. */
  readonly hostFd: number | null = null;
  /** The guest path it was opened by (for *at bases and fchdir); null for pipes and stdio. */
  readonly guestPath: string | null = null;
  /** Whether it lies in a writable root (fchmod, futimens). */
  readonly mutable: boolean = false;

  protected constructor(flags: number) {
    this.flags = flags;
  }

  /** lseek and pread work; readv/writev may then go segment by segment. */
  get seekable(): boolean {
    return false;
  }
  get readable(): boolean {
    return (this.flags & O.ACCMODE) !== O.WRONLY && (this.flags & O.PATH) === 0;
  }
  get writable(): boolean {
    return (this.flags & O.ACCMODE) !== O.RDONLY && (this.flags & O.PATH) === 0;
  }
  get nonblocking(): boolean {
    return (this.flags & O.NONBLOCK) !== 0;
  }
  /** The host fd whose readiness poll(2) must ask the host about; null: always ready (files, buffers). */
  get pollFd(): number | null {
    return null;
  }

  readInto(_into: Uint8Array): number { return -E.EINVAL; }
  writeFrom(_from: Uint8Array): number { return -E.EINVAL; }
  preadInto(_into: Uint8Array, _offset: number): number { return -E.ESPIPE; }
  pwriteFrom(_from: Uint8Array, _offset: number): number { return -E.ESPIPE; }
  seek(_offset: number, _whence: number): number { return -E.ESPIPE; }
  abstract stat(): FileStat | number;
  truncate(_length: number): number { return -E.EINVAL; }
  sync(_dataOnly: boolean): number { return -E.EINVAL; }
  /** getdents64 records into `into`: bytes used, 0 at the end, or -errno. */
  getdents(_into: Uint8Array): number { return -E.ENOTDIR; }
  /** FIONREAD: bytes readable without blocking. */
  available(): number { return -E.ENOTTY; }
  /** Per-file state a snapshot must bring back (the position); see FileTable.snapshot. */
  saveState(): unknown { return undefined; }
  restoreState(_state: unknown): void {}
  /** Releases the host resource; called once, when the last reference goes. */
  abstract close(): void;
  /** A description another thread can rebuild this file from (thawFile), or null when it cannot cross. */
  freeze(): FrozenFile | null { return null; }

  // Entry points on guest memory. The caller has checked that the range is guest
  // memory; a bad one throws GuestFault (-EFAULT). A zero length touches nothing.
  // Reads go into a window from mem.read() and then record as written only the
  // bytes that arrived: a fork's reset cost follows what was really written
  // (docs/ARCHITECTURE.md, "Reset"), not the size of the buffer offered.
  read(mem: GuestMemory, addr: number, len: number): number {
    return recordFilled(mem, addr, this.readInto(len === 0 ? EMPTY : mem.read(addr, len)));
  }
  write(mem: GuestMemory, addr: number, len: number): number {
    return this.writeFrom(len === 0 ? EMPTY : mem.read(addr, len));
  }
  pread(mem: GuestMemory, addr: number, len: number, offset: number): number {
    return recordFilled(mem, addr, this.preadInto(len === 0 ? EMPTY : mem.read(addr, len), offset));
  }
  pwrite(mem: GuestMemory, addr: number, len: number, offset: number): number {
    return this.pwriteFrom(len === 0 ? EMPTY : mem.read(addr, len), offset);
  }
}

/** Records the first `n` bytes at `addr` as written by the host; passes `n` (or an errno) through. */
export function recordFilled(mem: GuestMemory, addr: number, n: number): number {
  if (n > 0) mem.recordWrite(addr, n);
  return n;
}

/**
 * How a host file's position is kept:
 *   tracked — by us, with positional host reads (files the guest opened): lseek is
 *             bookkeeping and a snapshot restores it for free;
 *   kernel  — by the host kernel (a regular file inherited as stdin/stdout, whose
 *             offset the invoking shell shares);
 *   stream  — no position (pipes, ttys, character devices): lseek is -ESPIPE.
 */
export type Positioning = 'tracked' | 'kernel' | 'stream';

export interface HostFileOptions {
  positioning: Positioning;
  guestPath?: string | null;
  mutable?: boolean;
  /** Close the host fd with the file (false for the host's own stdio). */
  ownsFd?: boolean;
  /** The host fd itself is O_NONBLOCK (so reads must wait for readiness on EAGAIN). */
  hostNonblocking?: boolean;
}

/** A file behind a host fd: regular files, devices, FIFOs, and (subclasses) pipes and stdio. */
export class HostFile extends OpenFile {
  readonly kind: FileKind = 'file';
  override readonly hostFd: number;
  override readonly guestPath: string | null;
  override readonly mutable: boolean;
  private readonly positioning: Positioning;
  private readonly ownsFd: boolean;
  private readonly hostNonblocking: boolean;
  private position = 0;

  constructor(hostFd: number, flags: number, opts: HostFileOptions) {
    super(flags);
    this.hostFd = hostFd;
    this.positioning = opts.positioning;
    this.guestPath = opts.guestPath ?? null;
    this.mutable = opts.mutable ?? false;
    this.ownsFd = opts.ownsFd ?? true;
    this.hostNonblocking = opts.hostNonblocking ?? false;
  }

  override get seekable(): boolean {
    return this.positioning !== 'stream';
  }
  override get pollFd(): number | null {
    return this.positioning === 'stream' ? this.hostFd : null;
  }

  override readInto(into: Uint8Array): number {
    if (this.positioning === 'stream') return this.readStream(into);
    if (this.positioning === 'kernel') return this.hostRead(into, null);
    const n = this.hostRead(into, this.position);
    if (n > 0) this.position += n;
    return n;
  }

  override writeFrom(from: Uint8Array): number {
    if (this.positioning === 'stream') return this.writeStream(from);
    if (this.positioning === 'kernel') return this.hostWrite(from, null);
    const n = this.pwriteFrom(from, this.position);
    if (n >= 0) this.position = (this.flags & O.APPEND ? this.size() : this.position + n);
    return n;
  }

  override preadInto(into: Uint8Array, offset: number): number {
    return this.positioning === 'stream' ? -E.ESPIPE : this.hostRead(into, offset);
  }

  /** Like Linux, pwrite on an O_APPEND file appends whatever the offset. */
  override pwriteFrom(from: Uint8Array, offset: number): number {
    if (this.positioning === 'stream') return -E.ESPIPE;
    if (this.flags & O.APPEND && this.positioning === 'tracked') offset = this.size();
    return this.hostWrite(from, offset);
  }

  override seek(offset: number, whence: number): number {
    if (this.positioning === 'stream') return -E.ESPIPE;
    if (this.positioning === 'kernel') {
      const at = Number(libc.lseek(this.hostFd, offset, whence));
      return at < 0 ? -lastErrno() : at;
    }
    let at: number;
    switch (whence) {
      case SEEK_SET: at = offset; break;
      case SEEK_CUR: at = this.position + offset; break;
      case SEEK_END: at = this.size() + offset; break;
      case SEEK_DATA: at = offset < this.size() ? offset : -E.ENXIO; break; // no holes reported:
      case SEEK_HOLE: at = offset < this.size() ? this.size() : -E.ENXIO; break; // all data, one hole at EOF
      default: return -E.EINVAL;
    }
    if (whence >= SEEK_DATA && at < 0) return at;
    if (at < 0 || !Number.isSafeInteger(at)) return -E.EINVAL;
    this.position = at;
    return at;
  }

  override stat(): FileStat | number {
    try {
      return fs.fstatSync(this.hostFd, { bigint: true });
    } catch (error) {
      return hostErrno(error);
    }
  }

  override truncate(length: number): number {
    if (this.positioning === 'stream') return -E.EINVAL;
    if (length > Number.MAX_SAFE_INTEGER) return -E.EFBIG;
    let growth = 0;
    try {
      if (this.quotaApplies) {
        growth = Math.max(0, length - this.size());
        const granted = takeWriteQuota(growth);
        if (granted < growth) {
          refundWriteQuota(granted);
          return -E.EFBIG;
        }
      }
      fs.ftruncateSync(this.hostFd, length);
      return 0;
    } catch (error) {
      refundWriteQuota(growth);
      return hostErrno(error);
    }
  }

  /** Writes here draw on the request's write quota (write-quota.ts): a file in a writable root. */
  private get quotaApplies(): boolean {
    return this.mutable && this.positioning !== 'stream';
  }

  override sync(dataOnly: boolean): number {
    if (this.positioning === 'stream') return -E.EINVAL;
    try {
      if (dataOnly) fs.fdatasyncSync(this.hostFd);
      else fs.fsyncSync(this.hostFd);
      return 0;
    } catch (error) {
      return hostErrno(error);
    }
  }

  override available(): number {
    if (this.positioning === 'tracked') return Math.max(0, this.size() - this.position);
    if (this.positioning === 'kernel') return Math.max(0, this.size() - this.seek(0, SEEK_CUR));
    const count = new Int32Array(1);
    return libc.ioctlPtr(this.hostFd, FIONREAD, count) < 0 ? -lastErrno() : count[0]!;
  }

  override saveState(): unknown {
    if (this.positioning === 'tracked') return this.position;
    if (this.positioning === 'kernel') return this.seek(0, SEEK_CUR);
    return undefined;
  }

  override restoreState(state: unknown): void {
    if (typeof state === 'number' && state >= 0) this.seek(state, SEEK_SET);
  }

  override freeze(): FrozenFile | null {
    return {
      type: 'host', fd: this.hostFd, flags: this.flags, state: this.saveState(), positioning: this.positioning,
      guestPath: this.guestPath, mutable: this.mutable, ownsFd: this.ownsFd, hostNonblocking: this.hostNonblocking,
    };
  }

  override close(): void {
    if (!this.ownsFd) return;
    try {
      fs.closeSync(this.hostFd);
    } catch {
      // The guest's view of close() has already succeeded; a host EIO here has nowhere to go.
    }
  }

  private size(): number {
    return fs.fstatSync(this.hostFd).size;
  }

  /** A read at `offset`, or at the kernel's file offset when null. */
  /*
   * Offsets come from the guest as 64-bit integers, and Node's file calls refuse what a double cannot
   * hold exactly (they throw). No host file reaches 2^53 bytes, so answer as Linux does at an offset
   * past a file system's largest file: a read finds the end of the file, a write or truncate is EFBIG.
   */
  private hostRead(into: Uint8Array, offset: number | null): number {
    if (offset !== null && offset > Number.MAX_SAFE_INTEGER) return 0;
    try {
      return fs.readSync(this.hostFd, into, 0, into.length, offset);
    } catch (error) {
      return hostErrno(error);
    }
  }

  private hostWrite(from: Uint8Array, offset: number | null): number {
    if (offset !== null && offset > Number.MAX_SAFE_INTEGER - from.length) return -E.EFBIG;
    const granted = this.quotaApplies ? takeWriteQuota(from.length) : from.length;
    if (granted === 0 && from.length > 0) return -E.ENOSPC;
    try {
      const written = fs.writeSync(this.hostFd, from, 0, granted, offset);
      if (this.quotaApplies) refundWriteQuota(granted - written);
      return written;
    } catch (error) {
      if (this.quotaApplies) refundWriteQuota(granted);
      return hostErrno(error);
    }
  }

  /**
   * A read from a pipe or tty. Blocking (unless the guest asked for O_NONBLOCK)
   * is done in poll(2), which the run's deadline bounds (-EINTR), rather than
   * inside read(2), which nothing would end.
   */
  private readStream(into: Uint8Array): number {
    if (!this.hostNonblocking) {
      const ready = waitReady(this.hostFd, POLLIN, this.nonblocking ? 0 : -1);
      if (ready <= 0) return ready === 0 ? -E.EAGAIN : ready;
    }
    for (;;) {
      try {
        return fs.readSync(this.hostFd, into, 0, into.length, null);
      } catch (error) {
        const errno = hostErrno(error);
        if (errno !== -E.EAGAIN || this.nonblocking) return errno;
        const ready = waitReady(this.hostFd, POLLIN, -1);
        if (ready < 0) return ready;
      }
    }
  }

  /** A write to a pipe or tty: all of it, as a blocking write does, unless O_NONBLOCK. */
  private writeStream(from: Uint8Array): number {
    if (this.nonblocking && !this.hostNonblocking && waitReady(this.hostFd, POLLOUT, 0) === 0) return -E.EAGAIN;
    let done = 0;
    do {
      try {
        done += fs.writeSync(this.hostFd, from, done, from.length - done, null);
      } catch (error) {
        const errno = hostErrno(error);
        if (errno !== -E.EAGAIN || this.nonblocking) return done > 0 ? done : errno;
        const ready = waitReady(this.hostFd, POLLOUT, -1);
        if (ready < 0) return done > 0 ? done : ready;
      }
    } while (done < from.length && !this.nonblocking);
    return done;
  }
}

const pollFd = Buffer.alloc(8); // struct pollfd { int fd; short events; short revents; }

/**
 * poll(2) on one fd: 1 when ready (or hung up), 0 on timeout, or -errno. The run's deadline cuts a
 * wait short (-EINTR; the run then ends as a timeout).
 */
export function waitReady(fd: number, events: number, timeoutMs: number): number {
  pollFd.writeInt32LE(fd, 0);
  pollFd.writeInt16LE(events, 4);
  pollFd.writeInt16LE(0, 6);
  const n = libc.poll(pollFd, 1, waitLimit(timeoutMs)) as number;
  if (n < 0) return -lastErrno();
  return n === 0 && timeoutMs !== 0 && passedDeadline() ? -E.EINTR : n;
}

/**
 * One of the host's own stdin/stdout/stderr, as the CLI hands it to the guest.
 * Never closed by the guest. Its access mode and O_APPEND come from the host fd;
 * the host's O_NONBLOCK (node may set it on pipes) is hidden: the guest sees a
 * blocking file, as it would natively from a shell.
 */
export class StdioFile extends HostFile {
  override readonly kind: FileKind = 'stdio';

  constructor(hostFd: number) {
    const hostFlags = libc.fcntlInt(hostFd, F_GETFL, 0) as number;
    const known = hostFlags >= 0;
    let positioning: Positioning = 'stream';
    try {
      const st = fs.fstatSync(hostFd);
      if (st.isFile() || st.isBlockDevice()) positioning = 'kernel';
    } catch {
      // A closed host stdio fd: reads and writes will report EBADF, as natively.
    }
    const flags = known ? hostFlags & (O.ACCMODE | O.APPEND | O.LARGEFILE) : hostFd === 0 ? O.RDONLY : O.WRONLY;
    super(hostFd, flags, { positioning, ownsFd: false, hostNonblocking: known && (hostFlags & O.NONBLOCK) !== 0 });
  }

  override freeze(): FrozenFile {
    return { type: 'stdio', fd: this.hostFd };
  }
}

/** One end of a pipe(2). The host pipe is non-blocking; blocking is done in poll. */
export class PipeEnd extends HostFile {
  override readonly kind: FileKind = 'pipe';

  private constructor(hostFd: number, flags: number) {
    super(hostFd, flags, { positioning: 'stream', mutable: true, hostNonblocking: true });
  }

  /** A new pipe: [read end, write end], or -errno. `flags` may hold O_NONBLOCK. */
  static pair(flags: number): [PipeEnd, PipeEnd] | number {
    const fds = new Int32Array(2);
    if ((libc.pipe2(fds, O.NONBLOCK | O.CLOEXEC) as number) < 0) return -lastErrno();
    const status = flags & O.NONBLOCK;
    return [new PipeEnd(fds[0]!, O.RDONLY | status), new PipeEnd(fds[1]!, O.WRONLY | status)];
  }

  /** A pipe's buffered bytes cannot be shared by forks: a program must not be frozen with one open. */
  override freeze(): null {
    return null;
  }

  /**
   * F_GETPIPE_SZ / F_SETPIPE_SZ, answered by the host pipe. Past Linux's default pipe-max-size (1 MiB)
   * the answer is EPERM, as for an unprivileged process: tskvm often runs as root, whose pipes could
   * otherwise take 2 GiB of kernel memory each.
   */
  capacity(newSize?: number): number {
    if (newSize !== undefined && newSize > PIPE_MAX_SIZE) return -E.EPERM;
    const r = (newSize === undefined ? libc.fcntlInt(this.hostFd, F_GETPIPE_SZ, 0) : libc.fcntlInt(this.hostFd, F_SETPIPE_SZ, newSize)) as number;
    return r < 0 ? -lastErrno() : r;
  }
}

const S_IFIFO = 0o010000;
let nextSyntheticIno = 1n;

/** A stat for files that live in tskvm: a FIFO owned by the host user, like a pipe. */
function pipeStat(ino: bigint, createdNs: bigint): FileStat {
  return {
    dev: 0xcn, ino, nlink: 1n, mode: BigInt(S_IFIFO | 0o600),
    uid: BigInt(process.getuid?.() ?? 0), gid: BigInt(process.getgid?.() ?? 0), rdev: 0n,
    size: 0n, blksize: 4096n, blocks: 0n,
    atimeNs: createdNs, mtimeNs: createdNs, ctimeNs: createdNs, birthtimeNs: 0n,
  };
}

/** Files with no host fd behind them: a write-only sink, a read-only buffer. */
abstract class MemoryFile extends OpenFile {
  private readonly ino = nextSyntheticIno++;
  private readonly createdNs = BigInt(Date.now()) * 1_000_000n;
  override stat(): FileStat | number {
    return pipeStat(this.ino, this.createdNs);
  }
  override close(): void {}
}

/**
 * Output collected by a callback (a server's stdout/stderr log, a test). The
 * callback gets a copy of each write; it may return a negative errno to refuse
 * it (e.g. -EFBIG past an output limit).
 */
export class SinkFile extends MemoryFile {
  readonly kind: FileKind = 'sink';
  /** Which output this is ('stdout', 'stderr'): a frozen sink is rebuilt from its name. */
  readonly name: string;
  private readonly onWrite: (bytes: Uint8Array) => number | void;

  constructor(onWrite: (bytes: Uint8Array) => number | void, name = 'output') {
    super(O.WRONLY);
    this.onWrite = onWrite;
    this.name = name;
  }

  override freeze(): FrozenFile {
    return { type: 'sink', name: this.name };
  }

  override writeFrom(from: Uint8Array): number {
    const result = this.onWrite(from.slice());
    return typeof result === 'number' && result < 0 ? result : from.length;
  }
}

/** Input served from a buffer (a request body as stdin); end of file after it. */
export class BufferFile extends MemoryFile {
  readonly kind: FileKind = 'buffer';
  private readonly data: Uint8Array;
  private position = 0;

  constructor(data: Uint8Array) {
    super(O.RDONLY);
    this.data = data;
  }

  override readInto(into: Uint8Array): number {
    const n = Math.min(into.length, this.data.length - this.position);
    into.set(this.data.subarray(this.position, this.position + n));
    this.position += n;
    return n;
  }

  override available(): number {
    return this.data.length - this.position;
  }
  override freeze(): FrozenFile {
    return { type: 'buffer', data: this.data.slice(), state: this.position };
  }
  override saveState(): unknown {
    return this.position;
  }
  override restoreState(state: unknown): void {
    this.position = state as number;
  }
}

/** stdin that is at end of file at once (like `< /dev/null`). */
export class EmptyFile extends BufferFile {
  constructor() {
    super(EMPTY);
  }
}

const DT_DIR = 4;

interface DirEntry {
  name: Uint8Array;
  ino: bigint;
  type: number;
}

/**
 * An open directory. Entries come from getdents64 on the host, in the host's
 * order (so `find` lists what a native `find` lists, in the same order), after
 * "." and "..", as Linux returns them. The listing reads an fd of its own, opened
 * from the directory's fd (never by path, so a directory renamed or swapped since
 * is not another one). The position is the number of entries handed out: it is
 * each record's d_off, and lseek(fd, n, SEEK_SET) rewinds the listing and skips n
 * entries (rewinddir is lseek to 0).
 *
 *   struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
 *                            @0         @8         @16           @18         @19, NUL, pad to 8
 */
export class DirectoryFile extends OpenFile {
  readonly kind: FileKind = 'dir';
  override readonly hostFd: number;
  override readonly guestPath: string;
  override readonly mutable: boolean;
  /** The listing's own fd (O_RDONLY), opened on demand; -1 until then. */
  private listFd = -1;
  /** Records read from the host and not handed out yet (allocated by the first listing). */
  private host: Buffer | null = null;
  private hostUsed = 0;
  private hostAt = 0;
  private index = 0;
  /** An entry read from the host that did not fit in the last getdents buffer. */
  private pending: DirEntry | null = null;

  /** `hostFd` is an fd on the directory itself (fstat, *at bases). */
  constructor(hostFd: number, guestPath: string, flags: number, mutable: boolean) {
    super(flags);
    this.hostFd = hostFd;
    this.guestPath = guestPath;
    this.mutable = mutable;
  }
  override get seekable(): boolean {
    return true;
  }

  override readInto(): number { return -E.EISDIR; }
  override preadInto(): number { return -E.EISDIR; }
  override writeFrom(): number { return -E.EISDIR; }
  override pwriteFrom(): number { return -E.EISDIR; }

  override getdents(into: Uint8Array): number {
    const view = new DataView(into.buffer, into.byteOffset, into.byteLength);
    let used = 0;
    for (;;) {
      let entry: DirEntry | null;
      try {
        entry = this.nextEntry();
      } catch (error) {
        return used > 0 ? used : hostErrno(error);
      }
      if (!entry) break;
      const reclen = (19 + entry.name.length + 1 + 7) & ~7;
      if (used + reclen > into.length) {
        this.pending = entry;
        if (used === 0) return -E.EINVAL;
        break;
      }
      into.fill(0, used, used + reclen);
      view.setBigUint64(used, entry.ino, true);
      view.setBigInt64(used + 8, BigInt(this.index + 1), true);
      view.setUint16(used + 16, reclen, true);
      view.setUint8(used + 18, entry.type);
      into.set(entry.name, used + 19);
      used += reclen;
      this.index++;
    }
    return used;
  }

  override seek(offset: number, whence: number): number {
    if (whence === SEEK_CUR) offset += this.index;
    else if (whence !== SEEK_SET) return -E.EINVAL;
    if (offset < 0 || !Number.isSafeInteger(offset)) return -E.EINVAL;
    if (offset !== this.index) {
      try {
        if (offset < this.index) this.rewind();
        while (this.index < offset && this.nextEntry()) this.index++;
      } catch (error) {
        return hostErrno(error);
      }
    }
    return offset;
  }

  override stat(): FileStat | number {
    try {
      return fs.fstatSync(this.hostFd, { bigint: true });
    } catch (error) {
      return hostErrno(error);
    }
  }

  override sync(): number {
    try {
      fs.fsyncSync(this.hostFd);
      return 0;
    } catch (error) {
      return hostErrno(error);
    }
  }

  override freeze(): FrozenFile {
    return { type: 'dir', fd: this.hostFd, guestPath: this.guestPath, flags: this.flags, mutable: this.mutable, state: this.index };
  }
  override saveState(): unknown {
    return this.index;
  }
  override restoreState(state: unknown): void {
    this.seek(state as number, SEEK_SET);
  }

  override close(): void {
    if (this.listFd >= 0) libc.close(this.listFd);
    this.listFd = -1;
    try {
      fs.closeSync(this.hostFd);
    } catch {
      // see HostFile.close
    }
  }

  private rewind(): void {
    if (this.listFd >= 0) libc.lseek(this.listFd, 0, SEEK_SET);
    this.hostUsed = this.hostAt = 0;
    this.pending = null;
    this.index = 0;
  }

  /** The entry at `index` (not yet counted as handed out), or null at the end. Throws a host error. */
  private nextEntry(): DirEntry | null {
    if (this.pending) {
      const entry = this.pending;
      this.pending = null;
      return entry;
    }
    if (this.index === 0) return { name: Buffer.from('.'), ino: fs.fstatSync(this.hostFd, { bigint: true }).ino, type: DT_DIR };
    if (this.index === 1) return { name: Buffer.from('..'), ino: this.parentIno(), type: DT_DIR };
    if (this.listFd < 0) this.listFd = hostCall(libc.openat(this.hostFd, '.', O.RDONLY | O.DIRECTORY | O.CLOEXEC, 0) as number, 'opendir');
    const host = (this.host ??= Buffer.alloc(8192));
    for (;;) {
      if (this.hostAt >= this.hostUsed) {
        this.hostUsed = hostCall(Number(libc.getdents64(this.listFd, host, host.length)), 'getdents64');
        this.hostAt = 0;
        if (this.hostUsed === 0) return null;
      }
      const at = this.hostAt;
      this.hostAt += host.readUInt16LE(at + 16);
      const name = host.subarray(at + 19, host.indexOf(0, at + 19));
      if (name.length === 1 && name[0] === 0x2e) continue; // "." and ".." were handed out first
      if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) continue;
      return { name: Buffer.from(name), ino: host.readBigUInt64LE(at), type: host[at + 18]! };
    }
  }

  /** The inode of the directory's parent on the host (for a root's top, the host's: only its number shows). */
  private parentIno(): bigint {
    const fd = hostCall(libc.openat(this.hostFd, '..', O.PATH | O.CLOEXEC, 0) as number, 'open ..');
    try {
      return fs.fstatSync(fd, { bigint: true }).ino;
    } finally {
      libc.close(fd);
    }
  }
}

/** A libc call's result, or a thrown error carrying its errno for hostErrno (as node:fs throws). */
function hostCall(result: number, what: string): number {
  if (result >= 0) return result;
  const errno = lastErrno();
  throw Object.assign(new Error(`${what}: errno ${errno}`), { errno: -errno });
}

interface Slot {
  file: OpenFile;
  cloexec: boolean;
}

interface SavedFile {
  flags: number;
  state: unknown;
}

/**
 * An open file as plain data (structured-clonable), so the file table of a
 * frozen program can be rebuilt by request VMs on other threads. Host fds are
 * process-wide: a thawed file gets its own duplicate (F_DUPFD_CLOEXEC) and
 * keeps its own position, so forks never move each other's offsets.
 */
export type FrozenFile =
  | { type: 'host'; fd: number; flags: number; state: unknown; positioning: Positioning; guestPath: string | null; mutable: boolean; ownsFd: boolean; hostNonblocking: boolean }
  | { type: 'stdio'; fd: number }
  | { type: 'dir'; fd: number; guestPath: string; flags: number; mutable: boolean; state: unknown }
  | { type: 'buffer'; data: Uint8Array; state: unknown }
  | { type: 'sink'; name: string };

export interface FrozenFileTable {
  /** Per descriptor: index into `files` and close-on-exec, or null for a free slot. */
  slots: Array<{ file: number; cloexec: boolean } | null>;
  files: FrozenFile[];
  maxFiles: number;
}

const F_DUPFD_CLOEXEC = 1030;

function dupFd(fd: number): number {
  const copy = libc.fcntlInt(fd, F_DUPFD_CLOEXEC, 0) as number;
  if (copy < 0) throw new TskvmError('TSKVM_ERR_HOST_FD', `cannot duplicate host fd ${fd} for a request VM: errno ${lastErrno()}`);
  return copy;
}

/** Rebuilds a frozen file; `sink` gives the writer for a named output. */
export function thawFile(f: FrozenFile, sink: (name: string) => (bytes: Uint8Array) => number | void): OpenFile {
  let file: OpenFile;
  switch (f.type) {
    case 'stdio': return new StdioFile(f.fd);
    case 'sink': return new SinkFile(sink(f.name), f.name);
    case 'buffer': file = new BufferFile(f.data); break;
    case 'dir': file = new DirectoryFile(dupFd(f.fd), f.guestPath, f.flags, f.mutable); break;
    case 'host':
      file = new HostFile(f.ownsFd ? dupFd(f.fd) : f.fd, f.flags, {
        positioning: f.positioning, guestPath: f.guestPath, mutable: f.mutable, ownsFd: f.ownsFd, hostNonblocking: f.hostNonblocking,
      });
      break;
  }
  file.restoreState(f.state);
  return file;
}

/** What FileTable.snapshot() saved: the descriptors and each open file's flags and state. Opaque. */
export class FileTableSnapshot {
  /** @internal */
  constructor(readonly slots: ReadonlyArray<Slot | undefined>, readonly files: ReadonlyMap<OpenFile, SavedFile>) {}
}

export class FileTable {
  readonly maxFiles: number;
  private slots: (Slot | undefined)[] = [];

  /** `stdio`: the files for fds 0, 1, 2 (a thawed table starts empty). */
  constructor(stdio: [OpenFile, OpenFile, OpenFile] | [], maxFiles = 1024) {
    this.maxFiles = maxFiles;
    stdio.forEach((file, fd) => this.place(fd, file, false));
  }

  get(fd: number): OpenFile | undefined {
    return fd >= 0 ? this.slots[fd]?.file : undefined;
  }

  /** Open descriptors, ascending. */
  openFds(): number[] {
    const fds: number[] = [];
    this.slots.forEach((slot, fd) => slot && fds.push(fd));
    return fds;
  }

  /** Puts `file` at the lowest free fd ≥ minFd: the fd, or -EMFILE. The caller closes a new file it could not install. */
  install(file: OpenFile, minFd = 0, cloexec = false): number {
    for (let fd = Math.max(0, minFd); fd < this.maxFiles; fd++) {
      if (!this.slots[fd]) {
        this.place(fd, file, cloexec);
        return fd;
      }
    }
    return -E.EMFILE;
  }

  close(fd: number): number {
    const slot = fd >= 0 ? this.slots[fd] : undefined;
    if (!slot) return -E.EBADF;
    this.slots[fd] = undefined;
    this.release(slot.file);
    return 0;
  }

  dup(fd: number): number {
    const file = this.get(fd);
    return file ? this.install(file) : -E.EBADF;
  }

  /** dup2(2): newFd becomes a copy of oldFd, closing what it held; newFd == oldFd is a no-op. */
  dup2(oldFd: number, newFd: number): number {
    const file = this.get(oldFd);
    if (!file || newFd < 0 || newFd >= this.maxFiles) return -E.EBADF;
    if (oldFd !== newFd) this.place(newFd, file, false);
    return newFd;
  }

  /** dup3(2): like dup2, but equal fds are -EINVAL and close-on-exec is chosen. */
  dup3(oldFd: number, newFd: number, cloexec: boolean): number {
    if (oldFd === newFd) return this.get(oldFd) ? -E.EINVAL : -E.EBADF;
    const file = this.get(oldFd);
    if (!file || newFd < 0 || newFd >= this.maxFiles) return -E.EBADF;
    this.place(newFd, file, cloexec);
    return newFd;
  }

  isCloexec(fd: number): boolean {
    return this.slots[fd]?.cloexec ?? false;
  }

  setCloexec(fd: number, cloexec: boolean): number {
    const slot = fd >= 0 ? this.slots[fd] : undefined;
    if (!slot) return -E.EBADF;
    slot.cloexec = cloexec;
    return 0;
  }

  closeAll(): void {
    for (const fd of this.openFds()) this.close(fd);
  }

  /**
   * Saves which descriptors are open, with their flags and each open file's
   * state (position). The snapshot holds its own reference to every file, so a
   * request that closes one does not close its host fd; `discard` lets go.
   */
  snapshot(): FileTableSnapshot {
    const files = new Map<OpenFile, SavedFile>();
    const slots = this.slots.map((slot) => {
      if (!slot) return undefined;
      if (!files.has(slot.file)) {
        files.set(slot.file, { flags: slot.file.flags, state: slot.file.saveState() });
        slot.file.refs++;
      }
      return { ...slot };
    });
    return new FileTableSnapshot(slots, files);
  }

  /** Brings the table back to `snapshot`: files opened since are closed, closed ones come back. */
  restore(snapshot: FileTableSnapshot): void {
    const previous = this.slots;
    this.slots = snapshot.slots.map((slot) => {
      if (!slot) return undefined;
      slot.file.refs++;
      return { ...slot };
    });
    for (const slot of previous) if (slot) this.release(slot.file);
    for (const [file, saved] of snapshot.files) {
      file.flags = saved.flags;
      file.restoreState(saved.state);
    }
  }

  /** The table as plain data (see FrozenFile); throws naming the descriptor that cannot be frozen. */
  freeze(): FrozenFileTable {
    const index = new Map<OpenFile, number>();
    const files: FrozenFile[] = [];
    const slots = this.slots.map((slot, fd) => {
      if (!slot) return null;
      let i = index.get(slot.file);
      if (i === undefined) {
        const frozen = slot.file.freeze();
        if (!frozen) {
          throw new TskvmError('TSKVM_ERR_PROGRAM_FREEZE', `fd ${fd} is a ${slot.file.kind}, which request VMs cannot share; close it before wait_for_requests()`);
        }
        i = files.push(frozen) - 1;
        index.set(slot.file, i);
      }
      return { file: i, cloexec: slot.cloexec };
    });
    return { slots, files, maxFiles: this.maxFiles };
  }

  /** A new table from a frozen one, with its own files. */
  static thaw(frozen: FrozenFileTable, sink: (name: string) => (bytes: Uint8Array) => number | void): FileTable {
    const files = frozen.files.map((f) => thawFile(f, sink));
    const table = new FileTable([], frozen.maxFiles);
    frozen.slots.forEach((slot, fd) => slot && table.place(fd, files[slot.file]!, slot.cloexec));
    return table;
  }

  /** Drops a snapshot's references (files no descriptor holds are closed). */
  discard(snapshot: FileTableSnapshot): void {
    for (const file of snapshot.files.keys()) this.release(file);
  }

  private place(fd: number, file: OpenFile, cloexec: boolean): void {
    file.refs++;
    const previous = this.slots[fd];
    this.slots[fd] = { file, cloexec };
    if (previous) this.release(previous.file);
  }

  private release(file: OpenFile): void {
    if (--file.refs === 0) file.close();
  }
}
