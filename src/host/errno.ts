/**
 * Linux errno values as the guest sees them (a syscall returns -errno in rax),
 * and the conversion from a Node.js host error (`err.code === 'ENOENT'`) to one.
 */
import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

export const E = constants.errno as Readonly<Record<string, number>> & {
  readonly EPERM: number; readonly ENOENT: number; readonly ESRCH: number; readonly EINTR: number;
  readonly EIO: number; readonly EBADF: number; readonly ECHILD: number; readonly EAGAIN: number;
  readonly ENOMEM: number; readonly EACCES: number; readonly EFAULT: number; readonly EEXIST: number;
  readonly ENOTDIR: number; readonly EISDIR: number; readonly EINVAL: number; readonly EMFILE: number;
  readonly ENOTTY: number; readonly ESPIPE: number; readonly EROFS: number; readonly EPIPE: number;
  readonly ERANGE: number; readonly ENAMETOOLONG: number; readonly ENOSYS: number; readonly ENOTEMPTY: number;
  readonly ELOOP: number; readonly EOVERFLOW: number; readonly ETIMEDOUT: number; readonly EXDEV: number;
  readonly ENOTSUP: number; readonly EOPNOTSUPP: number; readonly ENODEV: number; readonly E2BIG: number;
  readonly ENOTSOCK: number; readonly EAFNOSUPPORT: number; readonly EDEADLK: number;
};

const byNumber = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  if (!byNumber.has(value) || name === 'EAGAIN' || name === 'ENOTSUP') byNumber.set(value, name);
}

/** `ENOENT` for 2; `E123` for numbers Node does not name. */
export function errnoName(errno: number): string {
  return byNumber.get(errno) ?? `E${errno}`;
}

/** The strerror-style text for an errno, as strace prints it: "No such file or directory". */
export function errnoMessage(errno: number): string {
  const text = getSystemErrorMap().get(-errno)?.[1];
  if (!text) return 'Unknown error ' + errno;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * The negative errno for a host failure thrown by node:fs and friends, so a
 * syscall handler can `catch (e) { return hostErrno(e); }`. Anything that is not
 * a system error is a bug in tskvm and is rethrown rather than hidden as EIO.
 */
export function hostErrno(error: unknown): number {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === 'string') {
    const n = (constants.errno as Record<string, number>)[code];
    if (n !== undefined) return -n;
  }
  const errno = (error as { errno?: unknown })?.errno;
  if (typeof errno === 'number' && errno < 0) return errno;
  throw error;
}
