/**
 * Calls that name a file by path: open, create, remove, rename, link, read a link, check access,
 * change mode or owner. Each resolves its path once through the PathPolicy and acts on the entry with
 * *at calls, so a concurrent rename or symlink cannot lead it out of the sandbox.
 */
import fs from 'node:fs';
import { E, hostErrno } from '../../host/errno.js';
import { libc } from '../../host/libc.js';
import { DirectoryFile } from '../open-files/directory-file.js';
import { HostFile, waitReady } from '../open-files/host-file.js';
import { O, type OpenFile } from '../open-files/open-file.js';
import type { ResolvedPath } from '../path-policy.js';
import { ERESTARTSYS, sleep } from '../deadline.js';
import type { Process } from '../process.js';
import type { SyscallDef } from '../syscall.js';
import {
  AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, F_OK,
  baseDir, entryStat, exists, guestString, hostResult, inGuest, installNew, int, isAboveRoot, onEntry, uint,
} from './args.js';
import { POLLIN } from './polling.js';
import { openProcFile } from './proc-maps.js';

const AT_REMOVEDIR = 0x200;
const AT_EACCESS = 0x200;

const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
const RENAME_WHITEOUT = 4;

/**
 * The mode bits a guest may give a file or directory: permissions only. Setuid, setgid and sticky never
 * reach the host, so a guest (tskvm often runs as root) cannot plant a setuid-root program.
 */
const PERMISSION_BITS = 0o777;

/** The last component of a guest path, trailing slashes ignored ("a/b/" → "b"). */
function lastComponent(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

// ── open ───────────────────────────────────────────────────────────────────────

/** Status flags an open file keeps (Linux drops the open-time-only ones; O_CLOEXEC is the fd's). */
const OPEN_ONLY = O.CREAT | O.EXCL | O.NOCTTY | O.TRUNC | O.CLOEXEC;
/** Flags passed through to the host open(2); O_APPEND and O_DIRECT stay our bookkeeping. */
const HOST_OPEN = O.CREAT | O.EXCL | O.TRUNC | O.NONBLOCK | O.DIRECTORY | O.DSYNC | O.SYNC | O.NOCTTY;

function openAt(p: Process, dirfd: number, pathAddr: number, flags: number, mode: number): number {
  if ((flags & O.TMPFILE) === O.TMPFILE) return -E.EOPNOTSUPP;
  const pathOnly = (flags & O.PATH) !== 0;
  const access = flags & O.ACCMODE;
  if (access === O.ACCMODE && !pathOnly) return -E.EINVAL;
  const path = guestString(p, pathAddr);
  if (typeof path === 'number') return path;
  const proc = dirfd === AT_FDCWD || path.startsWith('/') ? openProcFile(p, path, flags) : null;
  if (proc !== null) return proc;
  const creating = !pathOnly && (flags & O.CREAT) !== 0;
  if (creating && path.endsWith('/')) return -E.EISDIR;
  const modifies = !pathOnly && (access !== O.RDONLY || (flags & O.TRUNC) !== 0);
  // O_CREAT|O_EXCL never follows a last-component symlink: it fails with EEXIST.
  const followLast = (flags & O.NOFOLLOW) === 0 && !(creating && flags & O.EXCL);
  return onEntry(p, dirfd, path, modifies ? 'write' : 'read', followLast, (target) => openEntry(p, target, flags, mode, creating));
}

const FIFO_RETRY_MS = 10;

function openEntry(p: Process, target: ResolvedPath, flags: number, mode: number, creating: boolean): number {
  const createMode = mode & PERMISSION_BITS & ~p.umask;
  const existed = !creating || exists(target);
  // O_CREAT without write access is a write only when it creates the file.
  if (!existed && !target.writable) return -E.EROFS;
  // resolve() followed the symlinks it was asked to, so O_NOFOLLOW only stops one swapped in since.
  // O_NONBLOCK always: opening a FIFO (or a device) must not block the host thread where the
  // deadline cannot end it; the file's blocking reads and writes wait in poll instead.
  const hostFlags = (flags & O.PATH ? O.PATH : flags & O.ACCMODE) | (flags & HOST_OPEN) | O.NONBLOCK | O.NOFOLLOW | O.CLOEXEC;
  let hostFd = hostResult(libc.openat(target.dir, target.name, hostFlags, createMode) as number);
  // A FIFO opened for writing with no reader: natively open(2) waits for one; here in short sleeps,
  // as long as the deadline allows (it ends the run), unless the guest asked for O_NONBLOCK.
  while (hostFd === -E.ENXIO && !(flags & O.NONBLOCK)) {
    if (!sleep(FIFO_RETRY_MS)) return -ERESTARTSYS; // a signal (or the deadline, which ends the run)
    hostFd = hostResult(libc.openat(target.dir, target.name, hostFlags, createMode) as number);
  }
  if (hostFd < 0) return hostFd;
  let st: fs.Stats;
  try {
    st = fs.fstatSync(hostFd);
    // The host's own umask applies too; give the file exactly the guest's mode.
    if (!existed && (st.mode & 0o7777) !== createMode) fs.fchmodSync(hostFd, createMode);
  } catch (error) {
    fs.closeSync(hostFd);
    return hostErrno(error);
  }
  if (st.isFIFO() && (flags & O.ACCMODE) === O.RDONLY && !(flags & (O.NONBLOCK | O.PATH))) {
    // Natively open(2) waits for a writer; here poll waits for its first bytes (or its going away).
    const ready = waitReady(hostFd, POLLIN, -1, false); // the fd is not the guest's yet: no parking
    if (ready < 0) {
      fs.closeSync(hostFd);
      return ready;
    }
  }

  const fileFlags = (flags & ~OPEN_ONLY) | O.LARGEFILE;
  const file: OpenFile = st.isDirectory()
    ? new DirectoryFile(hostFd, target.guestPath, fileFlags, target.writable)
    : new HostFile(hostFd, fileFlags, {
      positioning: st.isFile() || st.isBlockDevice() ? 'tracked' : 'stream',
      guestPath: target.guestPath,
      mutable: target.writable,
      hostNonblocking: true,
    });
  return installNew(p, file, (flags & O.CLOEXEC) !== 0);
}

// ── paths ──────────────────────────────────────────────────────────────────────

function accessAt(p: Process, dirfd: number, pathAddr: number, mode: number, flags: number): number {
  if (mode & ~7) return -E.EINVAL;
  if (flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return -E.EINVAL;
  const path = guestString(p, pathAddr);
  if (typeof path === 'number') return path;
  const W_OK = 2;
  if (path === '' && flags & AT_EMPTY_PATH && dirfd !== AT_FDCWD) {
    const file = p.files.get(dirfd);
    if (!file) return -E.EBADF;
    return mode & W_OK && file.guestPath !== null && !file.mutable ? -E.EROFS : 0;
  }
  return onEntry(p, dirfd, path, mode & W_OK ? 'write' : 'stat', (flags & AT_SYMLINK_NOFOLLOW) === 0,
    (entry) => hostResult(libc.faccessat(entry.dir, entry.name, mode, AT_SYMLINK_NOFOLLOW) as number));
}

function mkdirAt(p: Process, dirfd: number, pathAddr: number, mode: number): number {
  const path = guestString(p, pathAddr);
  if (typeof path === 'number') return path;
  const dirMode = mode & PERMISSION_BITS & ~p.umask;
  const made = onEntry(p, dirfd, path, 'write', false, (entry) => {
    const result = hostResult(libc.mkdirat(entry.dir, entry.name, dirMode) as number);
    if (result < 0) return result;
    // The host's umask applies too; give the directory exactly the guest's mode.
    const st = entryStat(entry);
    if (typeof st === 'number' || (Number(st.mode) & 0o7777) === dirMode) return 0;
    return hostResult(libc.fchmodat(entry.dir, entry.name, dirMode, AT_SYMLINK_NOFOLLOW) as number);
  });
  if (made === -E.EROFS) {
    // Linux reports an existing entry before a read-only file system (mkdir -p relies on it).
    return onEntry(p, dirfd, path, 'stat', false, (entry) => (exists(entry) ? -E.EEXIST : made));
  }
  return isAboveRoot(p, dirfd, path, made) ? -E.EEXIST : made;
}

function unlinkAt(p: Process, dirfd: number, pathAddr: number, flags: number): number {
  if (flags & ~AT_REMOVEDIR) return -E.EINVAL;
  const path = guestString(p, pathAddr);
  if (typeof path === 'number') return path;
  if (flags & AT_REMOVEDIR) {
    const last = lastComponent(path);
    if (last === '.') return -E.EINVAL;
    if (last === '..') return -E.ENOTEMPTY;
  }
  return onEntry(p, dirfd, path, 'write', false,
    (entry) => (entry.isRoot ? -E.EBUSY : hostResult(libc.unlinkat(entry.dir, entry.name, flags & AT_REMOVEDIR) as number)));
}

function renameAt(p: Process, oldDirfd: number, oldAddr: number, newDirfd: number, newAddr: number, flags: number): number {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) return -E.EINVAL;
  if (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE) return -E.EINVAL;
  return onEntry(p, oldDirfd, oldAddr, 'write', false, (from) => onEntry(p, newDirfd, newAddr, 'write', false, (to) => {
    if (from.isRoot || to.isRoot) return -E.EBUSY;
    return hostResult(libc.renameat2(from.dir, from.name, to.dir, to.name, flags) as number);
  }));
}

function symlinkAt(p: Process, targetAddr: number, dirfd: number, linkAddr: number): number {
  const target = guestString(p, targetAddr);
  if (typeof target === 'number') return target;
  if (target === '') return -E.ENOENT;
  // Stored as the guest wrote it: every lookup through it walks the target in the guest's view.
  return onEntry(p, dirfd, linkAddr, 'write', false, (link) => hostResult(libc.symlinkat(target, link.dir, link.name) as number));
}

/**
 * link/linkat. A file gets a second name only within the writable root that holds
 * it: a name in a writable root for a file of a read-only root (or of another root)
 * would let the guest change what it may only read, so that is -EXDEV, as a hard
 * link across mounts is on Linux (callers such as `cp -l` fall back to copying).
 * The source was resolved with the guest's AT_SYMLINK_FOLLOW, so linkat itself
 * follows nothing: a symlink swapped in since is linked as itself, in the root.
 */
function linkAt(p: Process, oldDirfd: number, oldAddr: number, newDirfd: number, newAddr: number, flags: number): number {
  const AT_SYMLINK_FOLLOW = 0x400;
  if (flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH)) return -E.EINVAL;
  return onEntry(p, oldDirfd, oldAddr, 'read', (flags & AT_SYMLINK_FOLLOW) !== 0, (from) => onEntry(p, newDirfd, newAddr, 'write', false, (to) => {
    if (!from.writable || from.root !== to.root) return -E.EXDEV;
    return hostResult(libc.linkat(from.dir, from.name, to.dir, to.name, 0) as number);
  }));
}

/**
 * chown/lchown/fchownat. Ownership never changes on the host (tskvm usually runs as root, and a guest
 * must not hand a file to another user, or to root): as for an unprivileged process, only the ids the
 * files already have are accepted — the host's own, or -1 for "unchanged" — and then nothing is done;
 * any other id is EPERM. The path is checked first, as Linux does.
 */
function chownAt(p: Process, dirfd: number, pathAddr: number, uid: number, gid: number, flags: number): number {
  if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return -E.EINVAL;
  const path = guestString(p, pathAddr);
  if (typeof path === 'number') return path;
  if (path === '' && flags & AT_EMPTY_PATH && dirfd !== AT_FDCWD) return fchown(p, dirfd, uid, gid);
  return onEntry(p, dirfd, path, 'write', (flags & AT_SYMLINK_NOFOLLOW) === 0, (entry) => {
    const found = hostResult(libc.faccessat(entry.dir, entry.name, F_OK, AT_SYMLINK_NOFOLLOW) as number);
    return found < 0 ? found : ownIds(uid, gid);
  });
}

function fchown(p: Process, fd: number, uid: number, gid: number): number {
  const file = p.files.get(fd);
  if (!file) return -E.EBADF;
  if (file.hostFd === null || file.guestPath === null) return 0; // a pipe or stdio: nothing to record
  if (!file.mutable) return -E.EROFS;
  return ownIds(uid, gid);
}

/** 0 when chown would give the ids the host's files already have, else -EPERM (see chownAt). */
function ownIds(uid: number, gid: number): number {
  return (uid === -1 || uid === process.getuid!()) && (gid === -1 || gid === process.getgid!()) ? 0 : -E.EPERM;
}

/** A uid_t/gid_t argument: (uid_t)-1 stays -1, "unchanged". */
const id = (x: number): number => (x | 0) === -1 ? -1 : x >>> 0;

function readlinkAt(p: Process, dirfd: number, pathAddr: number, bufAddr: number, size: number): number {
  if (size <= 0) return -E.EINVAL;
  const path = guestString(p, pathAddr);
  if (typeof path === 'number') return path;
  if (path === '') return -E.ENOENT;
  const base = baseDir(p, dirfd, path);
  if (typeof base === 'number') return base;
  const target = p.paths.readlink(path, { baseGuestDir: base });
  if (typeof target === 'number') return target;
  const n = Math.min(target.length, size);
  if (!inGuest(p, bufAddr, n)) return -E.EFAULT;
  p.mem.put(bufAddr, target.subarray(0, n)); // no NUL, truncated: readlink(2)
  return n;
}

function chmodAt(p: Process, dirfd: number, pathAddr: number, mode: number): number {
  return onEntry(p, dirfd, pathAddr, 'write', true, (entry) => hostResult(libc.fchmodat(entry.dir, entry.name, mode & PERMISSION_BITS, AT_SYMLINK_NOFOLLOW) as number));
}

export const pathSyscalls: SyscallDef[] = [
  { nr: 2, name: 'open', args: ['path', 'oflags', 'mode'], ret: 'fd', handler: (p, a) => openAt(p, AT_FDCWD, a[0]!, int(a[1]!), uint(a[2]!)) },
  { nr: 257, name: 'openat', args: ['dirfd', 'path', 'oflags', 'mode'], ret: 'fd', handler: (p, a) => openAt(p, int(a[0]!), a[1]!, int(a[2]!), uint(a[3]!)) },
  {
    nr: 85, name: 'creat', args: ['path', 'mode'], ret: 'fd',
    handler: (p, a) => openAt(p, AT_FDCWD, a[0]!, O.CREAT | O.WRONLY | O.TRUNC, uint(a[1]!)),
  },
  { nr: 21, name: 'access', args: ['path', 'int'], handler: (p, a) => accessAt(p, AT_FDCWD, a[0]!, int(a[1]!), 0) },
  { nr: 269, name: 'faccessat', args: ['dirfd', 'path', 'int'], handler: (p, a) => accessAt(p, int(a[0]!), a[1]!, int(a[2]!), 0) },
  {
    nr: 439, name: 'faccessat2', args: ['dirfd', 'path', 'int', 'atflags'],
    handler: (p, a) => accessAt(p, int(a[0]!), a[1]!, int(a[2]!), int(a[3]!)),
  },
  { nr: 89, name: 'readlink', args: ['path', 'outbuf', 'size'], handler: (p, a) => readlinkAt(p, AT_FDCWD, a[0]!, a[1]!, int(a[2]!)) },
  {
    nr: 267, name: 'readlinkat', args: ['dirfd', 'path', 'outbuf', 'size'],
    handler: (p, a) => readlinkAt(p, int(a[0]!), a[1]!, a[2]!, int(a[3]!)),
  },
  { nr: 83, name: 'mkdir', args: ['path', 'mode'], handler: (p, a) => mkdirAt(p, AT_FDCWD, a[0]!, uint(a[1]!)) },
  { nr: 258, name: 'mkdirat', args: ['dirfd', 'path', 'mode'], handler: (p, a) => mkdirAt(p, int(a[0]!), a[1]!, uint(a[2]!)) },
  { nr: 84, name: 'rmdir', args: ['path'], handler: (p, a) => unlinkAt(p, AT_FDCWD, a[0]!, AT_REMOVEDIR) },
  { nr: 87, name: 'unlink', args: ['path'], handler: (p, a) => unlinkAt(p, AT_FDCWD, a[0]!, 0) },
  { nr: 263, name: 'unlinkat', args: ['dirfd', 'path', 'atflags'], handler: (p, a) => unlinkAt(p, int(a[0]!), a[1]!, int(a[2]!)) },
  { nr: 82, name: 'rename', args: ['path', 'path'], handler: (p, a) => renameAt(p, AT_FDCWD, a[0]!, AT_FDCWD, a[1]!, 0) },
  {
    nr: 264, name: 'renameat', args: ['dirfd', 'path', 'dirfd', 'path'],
    handler: (p, a) => renameAt(p, int(a[0]!), a[1]!, int(a[2]!), a[3]!, 0),
  },
  {
    nr: 316, name: 'renameat2', args: ['dirfd', 'path', 'dirfd', 'path', 'hex'],
    handler: (p, a) => renameAt(p, int(a[0]!), a[1]!, int(a[2]!), a[3]!, uint(a[4]!)),
  },
  {
    nr: 95, name: 'umask', args: ['mode'],
    handler: (p, a) => {
      const previous = p.umask;
      p.umask = uint(a[0]!) & 0o777;
      return previous;
    },
  },
  { nr: 90, name: 'chmod', args: ['path', 'mode'], handler: (p, a) => chmodAt(p, AT_FDCWD, a[0]!, uint(a[1]!)) },
  { nr: 268, name: 'fchmodat', args: ['dirfd', 'path', 'mode'], handler: (p, a) => chmodAt(p, int(a[0]!), a[1]!, uint(a[2]!)) },
  {
    nr: 91, name: 'fchmod', args: ['fd', 'mode'],
    handler: (p, a) => {
      const file = p.files.get(int(a[0]!));
      if (!file) return -E.EBADF;
      if (file.hostFd === null || file.guestPath === null) return 0; // a pipe or stdio: nothing to record
      if (!file.mutable) return -E.EROFS;
      try {
        fs.fchmodSync(file.hostFd, uint(a[1]!) & PERMISSION_BITS);
        return 0;
      } catch (error) {
        return hostErrno(error);
      }
    },
  },
  { nr: 88, name: 'symlink', args: ['str', 'path'], handler: (p, a) => symlinkAt(p, a[0]!, AT_FDCWD, a[1]!) },
  { nr: 266, name: 'symlinkat', args: ['str', 'dirfd', 'path'], handler: (p, a) => symlinkAt(p, a[0]!, int(a[1]!), a[2]!) },
  { nr: 86, name: 'link', args: ['path', 'path'], handler: (p, a) => linkAt(p, AT_FDCWD, a[0]!, AT_FDCWD, a[1]!, 0) },
  {
    nr: 265, name: 'linkat', args: ['dirfd', 'path', 'dirfd', 'path', 'atflags'],
    handler: (p, a) => linkAt(p, int(a[0]!), a[1]!, int(a[2]!), a[3]!, int(a[4]!)),
  },
  { nr: 92, name: 'chown', args: ['path', 'int', 'int'], handler: (p, a) => chownAt(p, AT_FDCWD, a[0]!, id(a[1]!), id(a[2]!), 0) },
  {
    nr: 94, name: 'lchown', args: ['path', 'int', 'int'],
    handler: (p, a) => chownAt(p, AT_FDCWD, a[0]!, id(a[1]!), id(a[2]!), AT_SYMLINK_NOFOLLOW),
  },
  { nr: 93, name: 'fchown', args: ['fd', 'int', 'int'], handler: (p, a) => fchown(p, int(a[0]!), id(a[1]!), id(a[2]!)) },
  {
    nr: 260, name: 'fchownat', args: ['dirfd', 'path', 'int', 'int', 'atflags'],
    handler: (p, a) => chownAt(p, int(a[0]!), a[1]!, id(a[2]!), id(a[3]!), int(a[4]!)),
  },
];
