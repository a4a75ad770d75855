/**
 * What every family does with its guest arguments before it acts: check a pointer and a length
 * against guest memory, read a path, resolve it through the PathPolicy to an entry, install a new
 * file. One place, so each call checks the way Linux does, in Linux's order.
 */
import fs from 'node:fs';
import { GuestFault } from '../../paging/guest-memory.js';
import { E, hostErrno } from '../../host/errno.js';
import { errno as lastErrno, libc } from '../../host/libc.js';
import { DirectoryFile } from '../open-files/directory-file.js';
import { O, type FileStat, type OpenFile } from '../open-files/open-file.js';
import type { PathWant, ResolvedPath } from '../path-policy.js';
import type { Process } from '../process.js';

export const AT_FDCWD = -100;
export const F_OK = 0;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_EMPTY_PATH = 0x1000;

/** Linux caps one read/write at this many bytes. */
export const MAX_RW_COUNT = 0x7ffff000;
/** x86-64 TASK_SIZE_MAX: a range reaching past it fails access_ok() with -EFAULT. */
const USER_END = 2 ** 47 - 4096;
const PATH_MAX = 4096;

/** Whether [addr, addr+len) is guest memory (and never the null page). */
export function inGuest(p: Process, addr: number, len: number): boolean {
  return p.mem.contains(addr, len);
}

/** Whether [addr, addr+len) lies in user space (Linux's access_ok), mapped or not. */
export function inUserSpace(p: Process, addr: number, len: number): boolean {
  return addr >= 0 && len >= 0 && addr + len <= USER_END;
}

/**
 * The usable part of a read/write buffer: Linux refuses a range that leaves user
 * space (-EFAULT) and copies until the first unmapped byte, so a buffer running
 * off the end of guest memory gives a short count. 0 needs no valid address. One
 * call moves at most 1 GiB (what the host sees of guest memory at once), a short
 * count as Linux's at 2 GiB.
 */
export function ioLength(p: Process, addr: number, len: number): number {
  if (len === 0) return 0;
  const extent = p.mem.extent(addr);
  if (len < 0 || extent === 0 || addr + len > USER_END) return -E.EFAULT;
  return Math.min(len, MAX_RW_COUNT, extent);
}

/** Linux's UIO_MAXIOV: most segments a vectored call takes. */
export const IOV_MAX = 1024;

/**
 * A guest struct iovec array (`count` entries at `iovAddr`, which the caller checked is guest memory),
 * as Linux's import_iovec reads it: each segment cut to what may move (the total at MAX_RW_COUNT, a
 * buffer at the end of guest memory), empty ones left out; -EINVAL for a negative length, -EFAULT
 * for a buffer outside user space.
 */
export function iovecSegments(p: Process, iovAddr: number, count: number): Array<{ addr: number; len: number }> | number {
  const segments: { addr: number; len: number }[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const addr = p.mem.u64(iovAddr + i * 16);
    let len = p.mem.i64(iovAddr + i * 16 + 8);
    if (len < 0) return -E.EINVAL;
    len = Math.min(len, MAX_RW_COUNT - total);
    const usable = ioLength(p, addr, len);
    if (usable < 0) return usable;
    if (usable > 0) segments.push({ addr, len: usable });
    total += len;
  }
  return segments;
}

/** A NUL-terminated guest path: the string, -EFAULT, or -ENAMETOOLONG. */
export function guestString(p: Process, addr: number): string | number {
  try {
    return p.mem.cString(addr, PATH_MAX - 1) ?? -E.ENAMETOOLONG;
  } catch (error) {
    if (error instanceof GuestFault) return -E.EFAULT;
    throw error;
  }
}

/** The guest directory a relative path in an *at call starts from (undefined: the cwd). */
export function baseDir(p: Process, dirfd: number, path: string): string | undefined | number {
  if (path.startsWith('/') || dirfd === AT_FDCWD) return undefined;
  const dir = p.files.get(dirfd);
  if (!dir) return -E.EBADF;
  return dir instanceof DirectoryFile ? dir.guestPath : -E.ENOTDIR;
}

function resolvePath(p: Process, dirfd: number, path: string, want: PathWant, followLast: boolean): ResolvedPath | number {
  if (path === '') return -E.ENOENT;
  const base = baseDir(p, dirfd, path);
  if (typeof base === 'number') return base;
  return p.paths.resolve(path, want, { followLast, baseGuestDir: base });
}

/**
 * Resolves a guest path (a string, or its address for an *at call) and runs `use`
 * on the entry it names; the lookup's fds are let go after.
 */
export function onEntry(p: Process, dirfd: number, path: string | number, want: PathWant, followLast: boolean, use: (entry: ResolvedPath) => number): number {
  const guest = typeof path === 'string' ? path : guestString(p, path);
  if (typeof guest === 'number') return guest;
  const entry = resolvePath(p, dirfd, guest, want, followLast);
  if (typeof entry === 'number') return entry;
  try {
    return use(entry);
  } finally {
    entry.release();
  }
}

/** A libc call's result: itself, or -errno when it failed. */
export function hostResult(result: number): number {
  return result < 0 ? -lastErrno() : result;
}

/** Whether the entry exists (a dangling symlink too). */
export function exists(entry: ResolvedPath): boolean {
  return libc.faccessat(entry.dir, entry.name, F_OK, AT_SYMLINK_NOFOLLOW) === 0;
}

/** stat of the entry itself (resolve() followed any symlink it was asked to). */
export function entryStat(entry: ResolvedPath): FileStat | number {
  const fd = hostResult(libc.openat(entry.dir, entry.name, O.PATH | O.NOFOLLOW | O.CLOEXEC, 0) as number);
  if (fd < 0) return fd;
  try {
    return fs.fstatSync(fd, { bigint: true });
  } catch (error) {
    return hostErrno(error);
  } finally {
    libc.close(fd);
  }
}

/** Installs a file that no descriptor holds yet; closes it again when the table is full. */
export function installNew(p: Process, file: OpenFile, cloexec: boolean): number {
  const fd = p.files.install(file, 0, cloexec);
  if (fd < 0) file.close();
  return fd;
}

/** Whether a lookup that failed (`result`: not exposed, or escaping) named a directory above a root. */
export function isAboveRoot(p: Process, dirfd: number, path: string, result: unknown): boolean {
  if (result !== -E.ENOENT && result !== -E.EACCES) return false;
  const base = baseDir(p, dirfd, path);
  return typeof base !== 'number' && p.paths.isAboveRoot(path, { baseGuestDir: base });
}

/** A C `int` argument. */
export const int = (x: number): number => x | 0;
/** A C `unsigned int` argument. */
export const uint = (x: number): number => x >>> 0;
