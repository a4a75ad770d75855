/**
 * The libc functions tskvm calls, bound once through koffi: the only place that loads libc.
 *
 * Pointers cross the boundary either as Node Buffers/typed arrays (koffi passes
 * their data pointer) or as raw addresses (`uintptr_t`, a bigint or Number),
 * e.g. a guest buffer's host address from GuestMemory.hostAddress().
 * `ioctl` is bound three times with fixed prototypes rather than as a variadic:
 * on x86-64 the calling convention is the same, and a fixed prototype is the
 * cheapest call koffi can make (KVM_RUN is on the hot path).
 */
import koffi from 'koffi';
import { errnoName } from './errno.js';
import { TskvmError, type ErrorCode } from '../errors.js';

const lib = koffi.load('libc.so.6');

export const libc = {
  open: lib.func('int open(const char *path, int flags, int mode)'),
  close: lib.func('int close(int fd)'),
  // The file sandbox walks guest paths one component at a time relative to directory fds (path-policy.ts).
  openat: lib.func('int openat(int dirfd, const char *path, int flags, int mode)'),
  readlinkat: lib.func('int64_t readlinkat(int dirfd, const char *path, void *buf, size_t size)'),
  faccessat: lib.func('int faccessat(int dirfd, const char *path, int mode, int flags)'),
  ioctlInt: lib.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']),
  ioctlPtr: lib.func('ioctl', 'int', ['int', 'unsigned long', 'void *']),
  ioctlAddr: lib.func('ioctl', 'int', ['int', 'unsigned long', 'uintptr_t']),
  mmap: lib.func('mmap', 'void *', ['uintptr_t', 'size_t', 'int', 'int', 'int', 'int64_t']),
  munmap: lib.func('int munmap(void *addr, size_t len)'),
  munmapAddr: lib.func('munmap', 'int', ['uintptr_t', 'size_t']),
  madvise: lib.func('madvise', 'int', ['uintptr_t', 'size_t', 'int']),
  // memmove of nothing returns its destination: the one way to turn an address into a pointer koffi can view.
  memmoveAddr: lib.func('memmove', 'void *', ['uintptr_t', 'uintptr_t', 'size_t']),
  memfdCreate: lib.func('int memfd_create(const char *name, unsigned int flags)'),
  ftruncate: lib.func('int ftruncate(int fd, int64_t length)'),
  fstatfs: lib.func('int fstatfs(int fd, void *buf)'),
  fallocate: lib.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)'),
  gettid: lib.func('int gettid()'),
  pthreadSigmask: lib.func('int pthread_sigmask(int how, const void *set, void *oldset)'),
  sigtimedwait: lib.func('int sigtimedwait(const void *set, void *info, const void *timeout)'),
  timerCreate: lib.func('int timer_create(int clockid, void *sevp, void *timerid)'),
  timerSettime: lib.func('timer_settime', 'int', ['uintptr_t', 'int', 'void *', 'void *']),
  timerDelete: lib.func('timer_delete', 'int', ['uintptr_t']),
  clockGettime: lib.func('clock_gettime', 'int', ['int', 'uintptr_t']),
  clockGettimeInto: lib.func('clock_gettime', 'int', ['int', 'void *']),
  clockGetres: lib.func('clock_getres', 'int', ['int', 'uintptr_t']),
  pipe2: lib.func('int pipe2(_Out_ int *fds, int flags)'),
  poll: lib.func('int poll(void *fds, unsigned long n, int timeout)'),
  // Event objects the guest's epoll sets, eventfds, timerfds and socket pairs are made of: always
  // created non-blocking, so that only poll (deadline.ts) ever waits.
  epollCreate1: lib.func('int epoll_create1(int flags)'),
  epollCtl: lib.func('int epoll_ctl(int epfd, int op, int fd, void *event)'),
  epollWait: lib.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)'),
  eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
  timerfdCreate: lib.func('int timerfd_create(int clockid, int flags)'),
  timerfdSettime: lib.func('int timerfd_settime(int fd, int flags, const void *new_value, void *old_value)'),
  timerfdGettime: lib.func('int timerfd_gettime(int fd, void *curr_value)'),
  socketpair: lib.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)'),
  sendmsg: lib.func('int64_t sendmsg(int fd, const void *msg, int flags)'),
  recvmsg: lib.func('int64_t recvmsg(int fd, void *msg, int flags)'),
  shutdown: lib.func('int shutdown(int fd, int how)'),
  getsockname: lib.func('int getsockname(int fd, void *addr, void *len)'),
  getpeername: lib.func('int getpeername(int fd, void *addr, void *len)'),
  getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *value, void *len)'),
  setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)'),
  // Files: what node:fs does not offer. The *at calls act on an entry the file sandbox resolved, a
  // directory fd and a name (path-policy.ts), never on a host path; names go in as strings (koffi
  // encodes UTF-8).
  lseek: lib.func('int64_t lseek(int fd, int64_t offset, int whence)'),
  getdents64: lib.func('int64_t getdents64(int fd, void *buf, size_t size)'),
  fcntlInt: lib.func('fcntl', 'int', ['int', 'int', 'int']),
  renameat2: lib.func('int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)'),
  utimensat: lib.func('int utimensat(int dirfd, const char *path, const void *times, int flags)'),
  futimens: lib.func('int futimens(int fd, const void *times)'),
  mkdirat: lib.func('int mkdirat(int dirfd, const char *path, unsigned int mode)'),
  unlinkat: lib.func('int unlinkat(int dirfd, const char *path, int flags)'),
  linkat: lib.func('int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)'),
  symlinkat: lib.func('int symlinkat(const char *target, int newdirfd, const char *linkpath)'),
  // glibc's fchmodat with AT_SYMLINK_NOFOLLOW changes the file it opened with O_PATH|O_NOFOLLOW
  // (fchmodat2, or its /proc/self/fd link before Linux 6.6), never a symlink's target.
  fchmodat: lib.func('int fchmodat(int dirfd, const char *path, unsigned int mode, int flags)'),
};

export const errno = (): number => koffi.errno();
export const addressOf = (pointer: unknown): bigint => koffi.address(pointer);
/** An ArrayBuffer over `len` bytes of host memory at `pointer` (no copy). */
export const viewOf = (pointer: unknown, len: number): ArrayBuffer => koffi.view(pointer, len);
/** A pointer koffi can view (viewOf) at a raw address, such as a place inside a larger mapping. */
export const pointerAt = (address: bigint): unknown => libc.memmoveAddr(address, address, 0);

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
export const MAP_PRIVATE = 2;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MADV_DONTNEED = 4;
export const MFD_CLOEXEC = 1;
export const FALLOC_FL_KEEP_SIZE = 1;
export const FALLOC_FL_PUNCH_HOLE = 2;

/** A failed libc/KVM call, naming the call, its context and the errno. */
export function sysError(code: ErrorCode, what: string, err = errno(), details: Record<string, unknown> = {}): TskvmError {
  return new TskvmError(code, `${what} failed: ${errnoName(err)} (${err})`, { ...details, errno: err, call: what });
}

/** mmap that throws a TskvmError naming `what` on failure. */
export function mapOrThrow(len: number, prot: number, flags: number, fd: number, what: string): { pointer: unknown; address: bigint } {
  const pointer = libc.mmap(0, len, prot, flags, fd, 0);
  const address = pointer === null ? -1n : addressOf(pointer);
  if (address === -1n || address === 0n) throw sysError('TSKVM_ERR_HOST_MMAP', `mmap of ${len} bytes for ${what}`);
  return { pointer, address };
}
