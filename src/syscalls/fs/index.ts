/**
 * File-system syscalls: descriptors, reads and writes, paths, metadata,
 * directories, pipes, event descriptors, socket pairs, one file per family; here they make one table.
 *
 * Every guest path goes through the PathPolicy (../path-policy.ts), which resolves
 * it once to a directory fd and a name; handlers act on that with *at calls and
 * fds, never on a host path string, so a concurrent rename or symlink cannot lead
 * them out of the sandbox. Every guest pointer and length is checked here, before
 * an open file (../open-files/) gets a view of guest memory. Answers follow Linux,
 * including the order of its checks where a program can tell (EBADF before
 * EFAULT, ERANGE before EFAULT in getcwd, …).
 */
import type { SyscallDef } from '../syscall.js';
import { attributeSyscalls } from './attributes.js';
import { descriptorSyscalls } from './descriptors.js';
import { directorySyscalls } from './directories.js';
import { eventSyscalls } from './events.js';
import { ioSyscalls } from './io.js';
import { metadataSyscalls } from './metadata.js';
import { pathSyscalls } from './paths.js';
import { pollingSyscalls } from './polling.js';
import { socketSyscalls } from './sockets.js';

export const fsSyscalls: SyscallDef[] = [
  ...ioSyscalls,
  ...pathSyscalls,
  ...descriptorSyscalls,
  ...pollingSyscalls,
  ...metadataSyscalls,
  ...directorySyscalls,
  ...attributeSyscalls,
  ...eventSyscalls,
  ...socketSyscalls,
];
