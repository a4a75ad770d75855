/**
 * What every open file is (a Linux `struct file`): status flags, the byte-level operations with the
 * answers Linux gives a file that lacks one, and the checked entry points on guest memory; plus the
 * flag and stat vocabulary the syscall families share with the kinds of file.
 *
 * Open files move bytes between the host and *views* of guest memory
 * (`readInto(view)`): GuestMemory's windows are Uint8Arrays over the guest's RAM,
 * so `fs.readSync(hostFd, view)` lands straight in the guest. The syscall layer
 * checks guest addresses and lengths first (fs/); `read(mem, addr, len)` and
 * friends are the checked entry points for other families (mmap of a file).
 */
import fs from 'node:fs';
import type { GuestMemory } from '../../paging/guest-memory.js';
import { E, hostErrno } from '../../host/errno.js';
import type { FrozenFile } from './frozen-file.js';

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

export type FileKind = 'file' | 'dir' | 'pipe' | 'stdio' | 'sink' | 'buffer' | 'socket' | 'eventfd' | 'timerfd' | 'signalfd' | 'epoll';

/** What keeps a file in a set without holding it (an epoll set): told when no descriptor holds it any more. */
export interface FileWatcher {
  forget(file: OpenFile): void;
}

export const EMPTY = new Uint8Array(0);

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
  /** Descriptors alone (what the guest can still reach it by); maintained by FileTable. */
  descriptors = 0;
  /** Epoll sets it is in: Linux drops a file from every set when its last descriptor closes. */
  watchers: Set<FileWatcher> | null = null;
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
  /** The poll events it can report: its host fd may have others (a signalfd's eventfd is writable), which no wait asks for. */
  get pollEvents(): number {
    return 0xffff;
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
  /**
   * A description another thread can rebuild this file from (thawFile), or null when it cannot cross.
   * `indexOf` names another open file of the table by its index in the frozen table (an epoll set's members).
   */
  freeze(_indexOf: (file: OpenFile) => number | undefined): FrozenFile | null { return null; }
  /** Once every file of a thawed table exists: a file that names others (an epoll set) finds them. */
  relink(_frozen: FrozenFile, _files: readonly OpenFile[]): void {}
  /** Called by FileTable when the last descriptor goes. */
  unreachable(): void {
    if (this.watchers) for (const watcher of [...this.watchers]) watcher.forget(this);
  }

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

/** fstat(2) of a host fd, as an open file reports it: its stat, or the host's errno. */
export function fstatHost(fd: number): FileStat | number {
  try {
    return fs.fstatSync(fd, { bigint: true });
  } catch (error) {
    return hostErrno(error);
  }
}
