/**
 * The working directory and directory listings: the cwd is a guest path kept by the PathPolicy, and a
 * listing is read from an open directory, so neither names a host path.
 */
import { E } from '../../host/errno.js';
import { DirectoryFile } from '../open-files/directory-file.js';
import { O, recordFilled } from '../open-files/open-file.js';
import type { Process } from '../process.js';
import type { SyscallDef } from '../syscall.js';
import { guestString, inGuest, int, ioLength, uint } from './args.js';

function getcwd(p: Process, bufAddr: number, size: number): number {
  const cwd = Buffer.from(p.paths.cwd + '\0');
  if (size < cwd.length) return -E.ERANGE;
  if (!inGuest(p, bufAddr, cwd.length)) return -E.EFAULT;
  p.mem.put(bufAddr, cwd);
  return cwd.length;
}

export const directorySyscalls: SyscallDef[] = [
  { nr: 79, name: 'getcwd', args: ['outbuf', 'size'], handler: (p, a) => getcwd(p, a[0]!, a[1]!) },
  {
    nr: 80, name: 'chdir', args: ['path'],
    handler: (p, a) => {
      const path = guestString(p, a[0]!);
      return typeof path === 'number' ? path : p.paths.chdir(path);
    },
  },
  {
    nr: 81, name: 'fchdir', args: ['fd'],
    handler: (p, a) => {
      const file = p.files.get(int(a[0]!));
      if (!file) return -E.EBADF;
      return file instanceof DirectoryFile ? p.paths.chdir(file.guestPath) : -E.ENOTDIR;
    },
  },
  {
    nr: 217, name: 'getdents64', args: ['fd', 'ptr', 'size'],
    handler: (p, a) => {
      const file = p.files.get(int(a[0]!));
      if (!file || file.flags & O.PATH) return -E.EBADF;
      const n = ioLength(p, a[1]!, uint(a[2]!));
      if (n < 0) return n;
      return recordFilled(p.mem, a[1]!, file.getdents(n === 0 ? new Uint8Array(0) : p.mem.read(a[1]!, n)));
    },
  },
];
