/**
 * What stat says about a file (struct stat, struct statx) and the times a guest may set. A directory
 * above a root is reported as one, with nothing of the host's, so tools that walk up still work.
 */
import { E } from '../../host/errno.js';
import { errno as lastErrno, libc } from '../../host/libc.js';
import type { FileStat } from '../open-files/open-file.js';
import type { Process } from '../process.js';
import type { SyscallDef } from '../syscall.js';
import { AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, entryStat, guestString, hostResult, inGuest, int, isAboveRoot, onEntry, uint } from './args.js';

const AT_NO_AUTOMOUNT = 0x800;
const AT_STATX_SYNC_TYPE = 0x6000;

const UTIME_NOW = 0x3fffffff;
const UTIME_OMIT = 0x3ffffffe;

/** Seconds and nanoseconds of a time in nanoseconds (floored, so nsec is never negative). */
function splitNs(ns: bigint): [bigint, number] {
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += 1_000_000_000n;
  }
  return [sec, Number(nsec)];
}

/**
 * struct stat (x86-64, 144 bytes): st_dev u64@0, st_ino u64@8, st_nlink u64@16,
 * st_mode u32@24, st_uid u32@28, st_gid u32@32, pad, st_rdev u64@40, st_size i64@48,
 * st_blksize i64@56, st_blocks i64@64, st_atim {sec, nsec}@72, st_mtim@88, st_ctim@104, unused@120.
 */
function putStat(p: Process, addr: number, s: FileStat): void {
  const out = p.mem.write(addr, 144);
  out.fill(0);
  const v = new DataView(out.buffer, out.byteOffset, 144);
  v.setBigUint64(0, s.dev, true);
  v.setBigUint64(8, s.ino, true);
  v.setBigUint64(16, s.nlink, true);
  v.setUint32(24, Number(s.mode), true);
  v.setUint32(28, Number(s.uid), true);
  v.setUint32(32, Number(s.gid), true);
  v.setBigUint64(40, s.rdev, true);
  v.setBigInt64(48, s.size, true);
  v.setBigInt64(56, s.blksize, true);
  v.setBigInt64(64, s.blocks, true);
  [s.atimeNs, s.mtimeNs, s.ctimeNs].forEach((ns, i) => {
    const [sec, nsec] = splitNs(ns);
    v.setBigInt64(72 + i * 16, sec, true);
    v.setBigInt64(80 + i * 16, BigInt(nsec), true);
  });
}

const STATX_BASIC_STATS = 0x7ff;
const STATX_BTIME = 0x800;
const STATX__RESERVED = 0x80000000;

/** glibc's dev_t encoding (what node reports) split into major and minor. */
function devParts(dev: bigint): [number, number] {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return [Number(BigInt.asUintN(32, major)), Number(BigInt.asUintN(32, minor))];
}

/**
 * struct statx (256 bytes, <linux/stat.h>): stx_mask u32@0, stx_blksize u32@4,
 * stx_attributes u64@8, stx_nlink u32@16, stx_uid u32@20, stx_gid u32@24, stx_mode u16@28,
 * stx_ino u64@32, stx_size u64@40, stx_blocks u64@48, stx_attributes_mask u64@56,
 * timestamps {i64 sec, u32 nsec, pad} atime@64 btime@80 ctime@96 mtime@112,
 * rdev major/minor u32@128/132, dev major/minor u32@136/140, stx_mnt_id u64@144, ….
 * Like ext4, every basic field is filled whatever was asked (stx_mask says so),
 * plus the birth time where the host has one.
 */
function putStatx(p: Process, addr: number, s: FileStat): void {
  const out = p.mem.write(addr, 256);
  out.fill(0);
  const v = new DataView(out.buffer, out.byteOffset, 256);
  v.setUint32(0, STATX_BASIC_STATS | (s.birthtimeNs !== 0n ? STATX_BTIME : 0), true);
  v.setUint32(4, Number(s.blksize), true);
  v.setUint32(16, Number(s.nlink), true);
  v.setUint32(20, Number(s.uid), true);
  v.setUint32(24, Number(s.gid), true);
  v.setUint16(28, Number(s.mode), true);
  v.setBigUint64(32, s.ino, true);
  v.setBigUint64(40, BigInt.asUintN(64, s.size), true);
  v.setBigUint64(48, BigInt.asUintN(64, s.blocks), true);
  ([[64, s.atimeNs], [80, s.birthtimeNs], [96, s.ctimeNs], [112, s.mtimeNs]] as const).forEach(([at, ns]) => {
    const [sec, nsec] = splitNs(ns);
    v.setBigInt64(at, sec, true);
    v.setUint32(at + 8, nsec, true);
  });
  const [rdevMajor, rdevMinor] = devParts(s.rdev);
  const [devMajor, devMinor] = devParts(s.dev);
  v.setUint32(128, rdevMajor, true);
  v.setUint32(132, rdevMinor, true);
  v.setUint32(136, devMajor, true);
  v.setUint32(140, devMinor, true);
}

/** What stat/lstat/newfstatat/statx look at: a path, or with AT_EMPTY_PATH and "" the dirfd itself. */
function statAt(p: Process, dirfd: number, path: string, flags: number): FileStat | number {
  if (path === '' && flags & AT_EMPTY_PATH) {
    if (dirfd !== AT_FDCWD) return p.files.get(dirfd)?.stat() ?? -E.EBADF;
    path = '.';
  }
  let st: FileStat | number = -E.ENOENT;
  const found = onEntry(p, dirfd, path, 'stat', (flags & AT_SYMLINK_NOFOLLOW) === 0, (entry) => {
    st = entryStat(entry);
    return 0;
  });
  if (found < 0) st = found;
  return isAboveRoot(p, dirfd, path, st) ? ABOVE_ROOT_STAT : st;
}

/**
 * What stat says about a directory above a root (`/`, the parent of an allowed
 * directory, a root's ".."): a directory, and nothing about the host's. BusyBox
 * `mkdir -p` and `ls -a` need it to be one.
 */
const ABOVE_ROOT_STAT: FileStat = {
  dev: 0n, ino: 1n, nlink: 2n, mode: BigInt(0o040755), uid: 0n, gid: 0n, rdev: 0n,
  size: 4096n, blksize: 4096n, blocks: 8n, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n, birthtimeNs: 0n,
};

function statPath(p: Process, dirfd: number, pathAddr: number, bufAddr: number, flags: number): number {
  if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH)) return -E.EINVAL;
  const path = guestString(p, pathAddr);
  if (typeof path === 'number') return path;
  if (!inGuest(p, bufAddr, 144)) return -E.EFAULT;
  const st = statAt(p, dirfd, path, flags);
  if (typeof st === 'number') return st;
  putStat(p, bufAddr, st);
  return 0;
}

function statx(p: Process, dirfd: number, pathAddr: number, flags: number, mask: number, bufAddr: number): number {
  if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE)) return -E.EINVAL;
  if ((flags & AT_STATX_SYNC_TYPE) === AT_STATX_SYNC_TYPE || mask & STATX__RESERVED) return -E.EINVAL;
  // Since Linux 6.11 a NULL path with AT_EMPTY_PATH means the dirfd itself.
  const path = pathAddr === 0 && flags & AT_EMPTY_PATH ? '' : guestString(p, pathAddr);
  if (typeof path === 'number') return path;
  if (!inGuest(p, bufAddr, 256)) return -E.EFAULT;
  const st = statAt(p, dirfd, path, flags);
  if (typeof st === 'number') return st;
  putStatx(p, bufAddr, st);
  return 0;
}

/**
 * utimensat(2) and futimens: struct timespec times[2] (atime, mtime), each with
 * UTIME_NOW/UTIME_OMIT in tv_nsec; NULL means both now.
 */
function utimensAt(p: Process, dirfd: number, pathAddr: number, timesAddr: number, flags: number): number {
  if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return -E.EINVAL;
  let times: Buffer | null = null;
  if (timesAddr !== 0) {
    if (!inGuest(p, timesAddr, 32)) return -E.EFAULT;
    times = Buffer.from(p.mem.read(timesAddr, 32));
    const nsecs = [Number(times.readBigInt64LE(8)), Number(times.readBigInt64LE(24))];
    if (nsecs.some((ns) => ns !== UTIME_NOW && ns !== UTIME_OMIT && (ns < 0 || ns > 999_999_999))) return -E.EINVAL;
    if (nsecs.every((ns) => ns === UTIME_OMIT)) return 0;
  }
  const path = pathAddr === 0 ? '' : guestString(p, pathAddr);
  if (typeof path === 'number') return path;
  if (path === '' && (pathAddr === 0 || flags & AT_EMPTY_PATH)) {
    if (dirfd === AT_FDCWD && pathAddr === 0) return -E.EFAULT;
    const file = dirfd === AT_FDCWD ? undefined : p.files.get(dirfd);
    if (dirfd !== AT_FDCWD && !file) return -E.EBADF;
    if (!file) return utimensPath(p, AT_FDCWD, '.', times, true);
    if (file.hostFd === null || file.guestPath === null) return 0; // a pipe or stdio: nothing to record
    if (!file.mutable) return -E.EROFS;
    return (libc.futimens(file.hostFd, times) as number) < 0 ? -lastErrno() : 0;
  }
  return utimensPath(p, dirfd, path, times, (flags & AT_SYMLINK_NOFOLLOW) === 0);
}

function utimensPath(p: Process, dirfd: number, path: string, times: Buffer | null, follow: boolean): number {
  return onEntry(p, dirfd, path, 'write', follow, (entry) => hostResult(libc.utimensat(entry.dir, entry.name, times, AT_SYMLINK_NOFOLLOW) as number));
}

export const metadataSyscalls: SyscallDef[] = [
  {
    nr: 4, name: 'stat', args: ['path', 'ptr'],
    handler: (p, a) => statPath(p, AT_FDCWD, a[0]!, a[1]!, 0),
  },
  {
    nr: 6, name: 'lstat', args: ['path', 'ptr'],
    handler: (p, a) => statPath(p, AT_FDCWD, a[0]!, a[1]!, AT_SYMLINK_NOFOLLOW),
  },
  {
    nr: 5, name: 'fstat', args: ['fd', 'ptr'],
    handler: (p, a) => {
      const file = p.files.get(int(a[0]!));
      if (!file) return -E.EBADF;
      if (!inGuest(p, a[1]!, 144)) return -E.EFAULT;
      const st = file.stat();
      if (typeof st === 'number') return st;
      putStat(p, a[1]!, st);
      return 0;
    },
  },
  {
    nr: 262, name: 'newfstatat', args: ['dirfd', 'path', 'ptr', 'atflags'],
    handler: (p, a) => statPath(p, int(a[0]!), a[1]!, a[2]!, int(a[3]!)),
  },
  {
    nr: 332, name: 'statx', args: ['dirfd', 'path', 'atflags', 'hex', 'ptr'],
    handler: (p, a) => statx(p, int(a[0]!), a[1]!, int(a[2]!), uint(a[3]!), a[4]!),
  },
  {
    nr: 280, name: 'utimensat', args: ['dirfd', 'path', 'ptr', 'atflags'],
    handler: (p, a) => utimensAt(p, int(a[0]!), a[1]!, a[2]!, int(a[3]!)),
  },
];
