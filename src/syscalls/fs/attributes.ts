/**
 * Extended attributes and file-system statistics, as far as a program's file view has them.
 *
 * The guest sees no extended attributes: getting one answers ENODATA (what Linux answers for a file
 * without it) and a list is empty, once the path or fd has been checked as Linux checks it. Tools ask
 * for them on every file (ls asks for SELinux labels and ACLs, cp -a copies them) and take "none" in
 * their stride. statfs answers for a path in the view with the host file system's figures, as the
 * guest's fstat answers with the host file's.
 */
import { E } from '../../host/errno.js';
import { libc } from '../../host/libc.js';
import type { Process } from '../process.js';
import type { SyscallArgs, SyscallDef } from '../syscall.js';
import { AT_FDCWD, guestString, hostResult, inGuest, int, isAboveRoot, onEntry } from './args.js';
import { O } from '../open-files/open-file.js';

/** Linux's limit on an attribute name (XATTR_NAME_MAX). */
const XATTR_NAME_MAX = 255;
/** struct statfs on x86-64. */
const STATFS_SIZE = 120;

/** The path exists in the view (or is a directory above a root): 0, else its errno. */
function checkPath(p: Process, pathAddr: number, followLast: boolean): number {
  const path = guestString(p, pathAddr);
  if (typeof path === 'number') return path;
  const found = onEntry(p, AT_FDCWD, path, 'stat', followLast, (entry) => {
    const fd = hostResult(libc.openat(entry.dir, entry.name, O.PATH | O.NOFOLLOW | O.CLOEXEC, 0) as number);
    if (fd >= 0) libc.close(fd);
    return fd < 0 ? fd : 0;
  });
  return found < 0 && isAboveRoot(p, AT_FDCWD, path, found) ? 0 : found;
}

/** An attribute name as Linux checks it: readable, 1 to XATTR_NAME_MAX bytes. */
function checkName(p: Process, nameAddr: number): number {
  try {
    const name = p.mem.cBytes(nameAddr, XATTR_NAME_MAX);
    if (name === null) return -E.ERANGE;
    return name.length === 0 ? -E.ERANGE : 0;
  } catch {
    return -E.EFAULT;
  }
}

const getxattr = (followLast: boolean) => (p: Process, a: SyscallArgs): number => {
  const found = checkPath(p, a[0]!, followLast);
  if (found < 0) return found;
  const name = checkName(p, a[1]!);
  return name < 0 ? name : -E.ENODATA;
};

const listxattr = (followLast: boolean) => (p: Process, a: SyscallArgs): number => {
  const found = checkPath(p, a[0]!, followLast);
  return found < 0 ? found : 0;
};

export const attributeSyscalls: SyscallDef[] = [
  { nr: 191, name: 'getxattr', args: ['path', 'str', 'ptr', 'size'], handler: getxattr(true) },
  { nr: 192, name: 'lgetxattr', args: ['path', 'str', 'ptr', 'size'], handler: getxattr(false) },
  {
    nr: 193, name: 'fgetxattr', args: ['fd', 'str', 'ptr', 'size'],
    handler: (p, a) => {
      if (!p.files.get(int(a[0]!))) return -E.EBADF;
      const name = checkName(p, a[1]!);
      return name < 0 ? name : -E.ENODATA;
    },
  },
  { nr: 194, name: 'listxattr', args: ['path', 'ptr', 'size'], handler: listxattr(true) },
  { nr: 195, name: 'llistxattr', args: ['path', 'ptr', 'size'], handler: listxattr(false) },
  { nr: 196, name: 'flistxattr', args: ['fd', 'ptr', 'size'], handler: (p, a) => (p.files.get(int(a[0]!)) ? 0 : -E.EBADF) },
  {
    nr: 137, name: 'statfs', args: ['path', 'ptr'],
    handler: (p, a) => {
      const path = guestString(p, a[0]!);
      if (typeof path === 'number') return path;
      return onEntry(p, AT_FDCWD, path, 'stat', true, (entry) => {
        if (!inGuest(p, a[1]!, STATFS_SIZE)) return -E.EFAULT;
        const fd = hostResult(libc.openat(entry.dir, entry.name, O.PATH | O.CLOEXEC, 0) as number);
        if (fd < 0) return fd;
        try {
          const out = Buffer.alloc(STATFS_SIZE);
          const r = hostResult(libc.fstatfs(fd, out) as number);
          if (r < 0) return r;
          p.mem.put(a[1]!, out);
          return 0;
        } finally {
          libc.close(fd);
        }
      });
    },
  },
];
