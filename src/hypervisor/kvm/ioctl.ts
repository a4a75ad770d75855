/**
 * One place where ioctls are issued, so every failure names the ioctl, the
 * file-descriptor kind, the errno and what was being attempted.
 */
import { ioctls, type IoctlName } from './abi.js';
import { libc, sysError } from './libc.js';

export type IoctlArg = number | Uint8Array | bigint;

/** Issues `name` on `fd`; returns the ioctl's non-negative result or throws. */
export function ioctl(fd: number, name: IoctlName, arg: IoctlArg = 0, context = ''): number {
  const request = ioctls[name];
  const rc = typeof arg === 'number'
    ? libc.ioctlInt(fd, request, arg)
    : typeof arg === 'bigint' ? libc.ioctlAddr(fd, request, arg) : libc.ioctlPtr(fd, request, arg);
  if (rc < 0) throw sysError('TSKVM_ERR_KVM_IOCTL', `${name}${context ? ` (${context})` : ''}`, undefined, { ioctl: name });
  return rc;
}
