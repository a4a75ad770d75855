/**
 * Files behind a host fd: what the guest opened, the host's own stdio, pipes. One class decides how
 * a position is kept and how a blocking read or write waits (in poll, bounded by the run's deadline),
 * so the three kinds differ only where Linux makes them differ.
 */
import fs from 'node:fs';
import { E, hostErrno } from '../../host/errno.js';
import { errno as lastErrno, libc } from '../../host/libc.js';
import { ERESTARTSYS, mayPark, waitForHost } from '../deadline.js';
import { refundWriteQuota, takeWriteQuota } from '../write-quota.js';
import type { FrozenFile } from './frozen-file.js';
import { fstatHost, O, OpenFile, SEEK_CUR, SEEK_DATA, SEEK_END, SEEK_HOLE, SEEK_SET, type FileKind, type FileStat } from './open-file.js';

const F_GETFL = 3;
const F_SETPIPE_SZ = 1031;
const PIPE_MAX_SIZE = 1 << 20;
const F_GETPIPE_SZ = 1032;
const FIONREAD = 0x541b;
const POLLIN = 0x1;
const POLLOUT = 0x4;

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
    return fstatHost(this.hostFd);
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

  override freeze(_indexOf?: (file: OpenFile) => number | undefined): FrozenFile | null {
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
   * `op` on the non-blocking host fd until it stops answering EAGAIN, waiting in between for
   * `events` (bounded by the run's deadline), unless this call must not block.
   */
  untilReady(events: number, op: () => number, nonblocking = this.nonblocking): number {
    for (;;) {
      const n = op();
      if (n !== -E.EAGAIN || nonblocking) return n;
      const ready = waitReady(this.hostFd, events, -1);
      if (ready < 0) return ready;
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
      if (ready <= 0) return ready === 0 ? -E.EAGAIN : restartable(ready);
    }
    for (;;) {
      try {
        return fs.readSync(this.hostFd, into, 0, into.length, null);
      } catch (error) {
        const errno = hostErrno(error);
        if (errno !== -E.EAGAIN || this.nonblocking) return errno;
        const ready = waitReady(this.hostFd, POLLIN, -1);
        if (ready < 0) return restartable(ready);
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
        if (done > 0 && mayPark()) return done; // parking would write it twice: a short write, as a signal would make
        const ready = waitReady(this.hostFd, POLLOUT, -1);
        if (ready < 0) return done > 0 ? done : restartable(ready);
      }
    } while (done < from.length && !this.nonblocking);
    return done;
  }
}

/** A read or write that a signal interrupted before it moved any byte is restarted under SA_RESTART, as in Linux. */
const restartable = (errno: number): number => (errno === -E.EINTR ? -ERESTARTSYS : errno);

const pollFd = Buffer.alloc(8); // struct pollfd { int fd; short events; short revents; }

/**
 * poll(2) on one fd: 1 when ready (or hung up), 0 on timeout, or -errno. The run's deadline or a
 * signal cuts a wait short (-EINTR; at the deadline the run then ends as a timeout). With `park`, a
 * wait in a process with other threads throws WouldBlock instead (deadline.ts): the call must not
 * have done anything yet that running it again would do twice.
 */
export function waitReady(fd: number, events: number, timeoutMs: number, park = true): number {
  pollFd.writeInt32LE(fd, 0);
  pollFd.writeInt16LE(events, 4);
  pollFd.writeInt16LE(0, 6);
  return waitForHost(pollFd, 1, timeoutMs, park);
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
