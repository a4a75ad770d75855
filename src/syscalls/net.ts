/**
 * Networking: a guest has none (it reaches the outside only through the guest API's sys_fetch).
 * socket() answers EAFNOSUPPORT, as a kernel built without the address family does; C libraries
 * then go on without what they wanted a socket for (glibc's name lookups try nscd's socket first
 * and fall back to the files).
 */
import { E } from '../host/errno.js';
import type { SyscallDef } from './syscall.js';

export const netSyscalls: SyscallDef[] = [
  { nr: 41, name: 'socket', args: ['int', 'hex', 'int'], handler: () => -E.EAFNOSUPPORT },
];
