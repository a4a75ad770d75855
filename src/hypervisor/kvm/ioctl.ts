/**
 * One place where ioctls are issued, so every failure names the ioctl, the
 * file-descriptor kind, the errno and what was being attempted.
 */
import { ioctls, type IoctlName } from './abi.js';
import { errno, libc, sysError } from '../../host/libc.js';

const EINTR = 4;

export type IoctlArg = number | Uint8Array | bigint;

/** Issues `name` on `fd`; returns the ioctl's non-negative result or throws. */
export function ioctl(fd: number, name: IoctlName, arg: IoctlArg = 0, context = ''): number {
  const request = ioctls[name];
  let rc: number;
  // A signal (a profiler's, another timer's) may interrupt a set-up ioctl: issue it again.
  // KVM_RUN does not come through here; its EINTR means "stop" (Vcpu.run).
  do {
    rc = typeof arg === 'number'
      ? libc.ioctlInt(fd, request, arg)
      : typeof arg === 'bigint' ? libc.ioctlAddr(fd, request, arg) : libc.ioctlPtr(fd, request, arg);
  } while (rc < 0 && errno() === EINTR);
  if (rc < 0) throw sysError('TSKVM_ERR_KVM_IOCTL', `${name}${context ? ` (${context})` : ''}`, undefined, { ioctl: name });
  return rc;
}
