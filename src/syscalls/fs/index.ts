/**
 * File-system syscalls: descriptors, reads and writes, paths, metadata,
 * directories, pipes.
 *
 * Every guest path goes through the PathPolicy (../path-policy.ts), which resolves
 * it once to a directory fd and a name; handlers act on that with *at calls and
 * fds, never on a host path string, so a concurrent rename or symlink cannot lead
 * them out of the sandbox. Every guest pointer and length is checked here, before
 * an open file (open-files/) gets a view of guest memory. Answers follow Linux,
 * including the order of its checks where a program can tell (EBADF before
 * EFAULT, ERANGE before EFAULT in getcwd, …). stdio is never a terminal: TCGETS
 * is -ENOTTY, so a guest's output buffering is the same in every run.
 */
import fs from 'node:fs';
import { GuestFault } from '../../paging/guest-memory.js';
import { E, hostErrno } from '../../host/errno.js';
import { errno as lastErrno, libc } from '../../host/libc.js';
import { DirectoryFile } from '../open-files/directory-file.js';
import { HostFile, PipeEnd, waitReady } from '../open-files/host-file.js';
import { O, SEEK_CUR, SEEK_HOLE, recordFilled, type FileStat, type OpenFile } from '../open-files/open-file.js';
import type { PathWant, ResolvedPath } from '../path-policy.js';
import { passedDeadline, sleep, waitLimit } from '../deadline.js';
import type { Process } from '../process.js';
import type { SyscallDef } from '../syscall.js';

const AT_FDCWD = -100;
const F_OK = 0;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_REMOVEDIR = 0x200;
const AT_EACCESS = 0x200;
const AT_NO_AUTOMOUNT = 0x800;
const AT_EMPTY_PATH = 0x1000;
const AT_STATX_SYNC_TYPE = 0x6000;

/** Linux caps one read/write at this many bytes. */
const MAX_RW_COUNT = 0x7ffff000;
/** x86-64 TASK_SIZE_MAX: a range reaching past it fails access_ok() with -EFAULT. */
const USER_END = 2 ** 47 - 4096;
const IOV_MAX = 1024;
const PATH_MAX = 4096;
/** Largest host buffer a readv/writev on a pipe gathers into (a short count beyond, as for a full pipe). */
const STREAM_GATHER_MAX = 1 << 20;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
const RENAME_WHITEOUT = 4;

const UTIME_NOW = 0x3fffffff;
const UTIME_OMIT = 0x3ffffffe;


// ── guest arguments ────────────────────────────────────────────────────────────

/** Whether [addr, addr+len) is guest memory (and never the null page). */
function inGuest(p: Process, addr: number, len: number): boolean {
  return addr >= p.mem.lowest && len >= 0 && addr + len <= p.mem.size;
}

/**
 * The usable part of a read/write buffer: Linux refuses a range that leaves user
 * space (-EFAULT) and copies until the first unmapped byte, so a buffer running
 * off the end of guest memory gives a short count. 0 needs no valid address.
 */
function ioLength(p: Process, addr: number, len: number): number {
  if (len === 0) return 0;
  if (len < 0 || addr < p.mem.lowest || addr >= p.mem.size || addr + len > USER_END) return -E.EFAULT;
  return Math.min(len, MAX_RW_COUNT, p.mem.size - addr);
}

/**
 * The mode bits a guest may give a file or directory: permissions only. Setuid, setgid and sticky never
 * reach the host, so a guest (tskvm often runs as root) cannot plant a setuid-root program.
 */
const PERMISSION_BITS = 0o777;

/** A NUL-terminated guest path: the string, -EFAULT, or -ENAMETOOLONG. */
function guestString(p: Process, addr: number): string | number {
  try {
    return p.mem.cString(addr, PATH_MAX - 1) ?? -E.ENAMETOOLONG;
  } catch (error) {
    if (error instanceof GuestFault) return -E.EFAULT;
    throw error;
  }
}

/** The guest directory a relative path in an *at call starts from (undefined: the cwd). */
function baseDir(p: Process, dirfd: number, path: string): string | undefined | number {
  if (path.startsWith('/') || dirfd === AT_FDCWD) return undefined;
  const dir = p.files.get(dirfd);
  if (!dir) return -E.EBADF;
  return dir instanceof DirectoryFile ? dir.guestPath : -E.ENOTDIR;
}

function resolvePath(p: Process, dirfd: number, path: string, want: PathWant, followLast: boolean): ResolvedPath | number {
  if (path === '') return -E.ENOENT;
  const base = baseDir(p, dirfd, path);
  if (typeof base === 'number') return base;
  return p.paths.resolve(path, want, { followLast, baseGuestDir: base });
}

/**
 * Resolves a guest path (a string, or its address for an *at call) and runs `use`
 * on the entry it names; the lookup's fds are let go after.
 */
function onEntry(p: Process, dirfd: number, path: string | number, want: PathWant, followLast: boolean, use: (entry: ResolvedPath) => number): number {
  const guest = typeof path === 'string' ? path : guestString(p, path);
  if (typeof guest === 'number') return guest;
  const entry = resolvePath(p, dirfd, guest, want, followLast);
  if (typeof entry === 'number') return entry;
  try {
    return use(entry);
  } finally {
    entry.release();
  }
}

/** A libc call's result: itself, or -errno when it failed. */
function hostResult(result: number): number {
  return result < 0 ? -lastErrno() : result;
}

/** Whether the entry exists (a dangling symlink too). */
function exists(entry: ResolvedPath): boolean {
  return libc.faccessat(entry.dir, entry.name, F_OK, AT_SYMLINK_NOFOLLOW) === 0;
}

/** stat of the entry itself (resolve() followed any symlink it was asked to). */
function entryStat(entry: ResolvedPath): FileStat | number {
  const fd = hostResult(libc.openat(entry.dir, entry.name, O.PATH | O.NOFOLLOW | O.CLOEXEC, 0) as number);
  if (fd < 0) return fd;
  try {
    return fs.fstatSync(fd, { bigint: true });
  } catch (error) {
    return hostErrno(error);
  } finally {
    libc.close(fd);
  }
}

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
  while (hostFd === -E.ENXIO && !(flags & O.NONBLOCK) && sleep(FIFO_RETRY_MS)) {
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
    const ready = waitReady(hostFd, POLLIN, -1);
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

/** Installs a file that no descriptor holds yet; closes it again when the table is full. */
function installNew(p: Process, file: OpenFile, cloexec: boolean): number {
  const fd = p.files.install(file, 0, cloexec);
  if (fd < 0) file.close();
  return fd;
}

// ── read and write ─────────────────────────────────────────────────────────────

/** An fd open for reading or writing, or the errno Linux gives (EBADF). */
function fileFor(p: Process, fd: number, use: 'read' | 'write'): OpenFile | number {
  const file = p.files.get(fd);
  if (!file || !(use === 'read' ? file.readable : file.writable)) return -E.EBADF;
  return file;
}

function readWrite(p: Process, fd: number, addr: number, len: number, use: 'read' | 'write', offset: number | null): number {
  if (offset !== null && offset < 0) return -E.EINVAL;
  const file = p.files.get(fd);
  if (!file) return -E.EBADF;
  if (offset !== null && !file.seekable) return -E.ESPIPE;
  if (!(use === 'read' ? file.readable : file.writable)) return -E.EBADF;
  const n = ioLength(p, addr, len);
  if (n < 0) return n;
  if (use === 'read') return offset === null ? file.read(p.mem, addr, n) : file.pread(p.mem, addr, n, offset);
  return offset === null ? file.write(p.mem, addr, n) : file.pwrite(p.mem, addr, n, offset);
}

/**
 * readv/writev/preadv/pwritev. Seekable files go segment by segment (a short
 * count ends the transfer). A pipe gets one host call over a gathered buffer, so
 * the transfer is as atomic as Linux makes it and a second segment never blocks.
 */
function vectored(p: Process, fd: number, iovAddr: number, count: number, use: 'read' | 'write', offset: number | null): number {
  const file = p.files.get(fd);
  if (!file || !(use === 'read' ? file.readable : file.writable)) return -E.EBADF;
  if (offset !== null && offset < 0) return -E.EINVAL;
  if (count < 0 || count > IOV_MAX) return -E.EINVAL;
  if (count === 0) return 0;
  if (!inGuest(p, iovAddr, count * 16)) return -E.EFAULT;
  if (offset !== null && !file.seekable) return -E.ESPIPE;
  const segments: { addr: number; len: number }[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const addr = p.mem.u64(iovAddr + i * 16);
    let len = p.mem.i64(iovAddr + i * 16 + 8);
    if (len < 0) return -E.EINVAL;
    len = Math.min(len, MAX_RW_COUNT - total);
    const usable = ioLength(p, addr, len);
    if (usable < 0) return usable;
    if (usable > 0) segments.push({ addr, len: usable });
    total += len;
  }

  if (file.seekable || segments.length <= 1) {
    let done = 0;
    for (const { addr, len } of segments) {
      const at = offset === null ? null : offset + done;
      const n = use === 'read'
        ? (at === null ? file.read(p.mem, addr, len) : file.pread(p.mem, addr, len, at))
        : (at === null ? file.write(p.mem, addr, len) : file.pwrite(p.mem, addr, len, at));
      if (n < 0) return done > 0 ? done : n;
      done += n;
      if (n < len) break;
    }
    return done;
  }

  const gathered = new Uint8Array(Math.min(STREAM_GATHER_MAX, segments.reduce((sum, s) => sum + s.len, 0)));
  if (use === 'write') {
    let at = 0;
    for (const { addr, len } of segments) {
      const take = Math.min(len, gathered.length - at);
      gathered.set(p.mem.read(addr, take), at);
      at += take;
    }
    return file.writeFrom(gathered);
  }
  const n = file.readInto(gathered);
  let at = 0;
  for (const { addr, len } of segments) {
    if (at >= n) break;
    const take = Math.min(len, n - at);
    p.mem.put(addr, gathered.subarray(at, at + take));
    at += take;
  }
  return n;
}

/**
 * sendfile and copy_file_range: a copy through a host buffer, chunk by chunk,
 * until `count`, end of input, or a short write. From a pipe, one chunk (a second
 * read could block).
 */
const transferBuffer = new Uint8Array(128 * 1024);

function transfer(from: OpenFile, read: (into: Uint8Array) => number, write: (from: Uint8Array) => number, count: number): number {
  let done = 0;
  while (done < count) {
    const chunk = transferBuffer.subarray(0, Math.min(transferBuffer.length, count - done));
    const n = read(chunk);
    if (n <= 0) return done > 0 || n === 0 ? done : n;
    const written = write(chunk.subarray(0, n));
    if (written < 0) return done > 0 ? done : written;
    done += written;
    if (written < n || !from.seekable) break;
  }
  return done;
}

/** A guest `loff_t *` argument: null when absent, else its value; -EFAULT or -EINVAL when bad. */
function offsetArg(p: Process, addr: number): number | null | { errno: number } {
  if (addr === 0) return null;
  if (!inGuest(p, addr, 8)) return { errno: -E.EFAULT };
  const value = p.mem.i64(addr);
  return value < 0 ? { errno: -E.EINVAL } : value;
}

function sendfile(p: Process, outFd: number, inFd: number, offsetAddr: number, count: number): number {
  const input = fileFor(p, inFd, 'read');
  const output = fileFor(p, outFd, 'write');
  if (typeof input === 'number') return input;
  if (typeof output === 'number') return output;
  if (output.flags & O.APPEND) return -E.EINVAL;
  const offset = offsetArg(p, offsetAddr);
  if (offset !== null && typeof offset === 'object') return offset.errno;
  if (offset !== null && !input.seekable) return -E.ESPIPE;
  // Linux: EOVERFLOW from an offset at or past the largest file; here, past what the host can name.
  if (offset !== null && offset > Number.MAX_SAFE_INTEGER) return -E.EOVERFLOW;
  count = count < 0 ? MAX_RW_COUNT : Math.min(count, MAX_RW_COUNT);
  let at = offset ?? 0;
  const read = offset === null ? (b: Uint8Array) => input.readInto(b) : (b: Uint8Array) => input.preadInto(b, at);
  const done = transfer(input, read, (b) => {
    const written = output.writeFrom(b);
    if (written > 0) at += written;
    // Bytes read but not written go back to the input (its position only moves by what was sent).
    if (offset === null && written >= 0 && written < b.length && input.seekable) input.seek(written - b.length, SEEK_CUR);
    return written;
  }, count);
  if (offset !== null && done > 0) p.mem.setU64(offsetAddr, at);
  return done;
}

function copyFileRange(p: Process, inFd: number, inOffAddr: number, outFd: number, outOffAddr: number, count: number, flags: number): number {
  if (flags !== 0) return -E.EINVAL;
  const input = fileFor(p, inFd, 'read');
  const output = fileFor(p, outFd, 'write');
  if (typeof input === 'number') return input;
  if (typeof output === 'number') return output;
  if (output.flags & O.APPEND) return -E.EBADF;
  if (!isRegular(input) || !isRegular(output)) return -E.EINVAL;
  const inOff = offsetArg(p, inOffAddr);
  const outOff = offsetArg(p, outOffAddr);
  if (inOff !== null && typeof inOff === 'object') return inOff.errno;
  if (outOff !== null && typeof outOff === 'object') return outOff.errno;
  count = count < 0 ? MAX_RW_COUNT : Math.min(count, MAX_RW_COUNT);
  let inAt = inOff ?? 0;
  let outAt = outOff ?? 0;
  const done = transfer(
    input,
    (b) => (inOff === null ? input.readInto(b) : input.preadInto(b, inAt)),
    (b) => {
      const written = outOff === null ? output.writeFrom(b) : output.pwriteFrom(b, outAt);
      if (written > 0) {
        inAt += written;
        outAt += written;
      }
      if (inOff === null && written >= 0 && written < b.length) input.seek(written - b.length, SEEK_CUR);
      return written;
    },
    count,
  );
  if (done > 0 && inOff !== null) p.mem.setU64(inOffAddr, inAt);
  if (done > 0 && outOff !== null) p.mem.setU64(outOffAddr, outAt);
  return done;
}

function isRegular(file: OpenFile): boolean {
  const st = file.stat();
  return typeof st !== 'number' && (Number(st.mode) & S_IFMT) === S_IFREG;
}

// ── stat ───────────────────────────────────────────────────────────────────────

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

/** Whether a lookup that failed (`result`: not exposed, or escaping) named a directory above a root. */
function isAboveRoot(p: Process, dirfd: number, path: string, result: unknown): boolean {
  if (result !== -E.ENOENT && result !== -E.EACCES) return false;
  const base = baseDir(p, dirfd, path);
  return typeof base !== 'number' && p.paths.isAboveRoot(path, { baseGuestDir: base });
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

// ── descriptors ────────────────────────────────────────────────────────────────

const F_DUPFD = 0;
const F_GETFD = 1;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const F_GETLK = 5;
const F_SETLK = 6;
const F_SETLKW = 7;
const F_SETOWN = 8;
const F_GETOWN = 9;
const F_OFD_GETLK = 36;
const F_OFD_SETLK = 37;
const F_OFD_SETLKW = 38;
const F_DUPFD_CLOEXEC = 1030;
const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;
const FD_CLOEXEC = 1;
const F_UNLCK = 2;
/** What F_SETFL may change. */
const SETFL_MASK = O.APPEND | O.NONBLOCK | O.ASYNC | O.DIRECT | O.NOATIME;
/** sizeof(struct flock) on x86-64: short l_type, l_whence; off_t l_start, l_len; pid_t l_pid. */
const FLOCK_SIZE = 32;

function fcntl(p: Process, fd: number, cmd: number, arg: number): number {
  const file = p.files.get(fd);
  if (!file) return -E.EBADF;
  switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
      if (arg < 0 || arg >= p.files.maxFiles) return -E.EINVAL;
      return p.files.install(file, arg, cmd === F_DUPFD_CLOEXEC);
    case F_GETFD:
      return p.files.isCloexec(fd) ? FD_CLOEXEC : 0;
    case F_SETFD:
      return p.files.setCloexec(fd, (arg & FD_CLOEXEC) !== 0);
    case F_GETFL:
      return file.flags;
    case F_SETFL:
      file.flags = (file.flags & ~SETFL_MASK) | (arg & SETFL_MASK);
      return 0;
    // One process: no lock ever conflicts. F_GETLK answers "unlocked".
    case F_GETLK:
    case F_OFD_GETLK: {
      if (!inGuest(p, arg, FLOCK_SIZE)) return -E.EFAULT;
      const type = p.mem.read(arg, 2);
      if (type[0]! > F_UNLCK || type[1] !== 0) return -E.EINVAL;
      p.mem.put(arg, new Uint8Array([F_UNLCK, 0]));
      return 0;
    }
    case F_SETLK:
    case F_SETLKW:
    case F_OFD_SETLK:
    case F_OFD_SETLKW:
      return inGuest(p, arg, FLOCK_SIZE) ? 0 : -E.EFAULT;
    case F_GETOWN:
    case F_SETOWN:
      return 0;
    case F_GETPIPE_SZ:
    case F_SETPIPE_SZ:
      if (!(file instanceof PipeEnd)) return -E.EBADF;
      return cmd === F_GETPIPE_SZ ? file.capacity() : file.capacity(arg);
    default:
      return -E.EINVAL;
  }
}

const TCGETS = 0x5401;
const FIONCLEX = 0x5450;
const FIOCLEX = 0x5451;
const FIONBIO = 0x5421;
const FIONREAD = 0x541b;

function ioctl(p: Process, fd: number, request: number, arg: number): number {
  const file = p.files.get(fd);
  if (!file) return -E.EBADF;
  switch (request) {
    case FIONREAD: {
      const n = file.available();
      if (n < 0) return n;
      if (!inGuest(p, arg, 4)) return -E.EFAULT;
      p.mem.setI32(arg, n);
      return 0;
    }
    case FIOCLEX:
    case FIONCLEX:
      return p.files.setCloexec(fd, request === FIOCLEX);
    case FIONBIO:
      if (!inGuest(p, arg, 4)) return -E.EFAULT;
      file.flags = p.mem.i32(arg) ? file.flags | O.NONBLOCK : file.flags & ~O.NONBLOCK;
      return 0;
    case TCGETS: // and every other terminal request: stdio is never a tty
    default:
      return -E.ENOTTY;
  }
}

function pipe2(p: Process, fdsAddr: number, flags: number): number {
  if (flags & ~(O.CLOEXEC | O.NONBLOCK | O.DIRECT)) return -E.EINVAL;
  if (!inGuest(p, fdsAddr, 8)) return -E.EFAULT;
  const ends = PipeEnd.pair(flags);
  if (typeof ends === 'number') return ends;
  const cloexec = (flags & O.CLOEXEC) !== 0;
  const readFd = installNew(p, ends[0], cloexec);
  if (readFd < 0) {
    ends[1].close();
    return readFd;
  }
  const writeFd = installNew(p, ends[1], cloexec);
  if (writeFd < 0) {
    p.files.close(readFd);
    return writeFd;
  }
  p.mem.setI32(fdsAddr, readFd);
  p.mem.setI32(fdsAddr + 4, writeFd);
  return 0;
}

const POLLIN = 0x1;
const POLLPRI = 0x2;
const POLLOUT = 0x4;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;
const POLLRDNORM = 0x40;
const POLLWRNORM = 0x100;
/** What Linux reports for a file with no poll method of its own (regular files, directories). */
const DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;

/**
 * Readiness of guest fds, as poll(2) reports it: one revents per entry (fd < 0: 0, as poll skips
 * it), or -errno. Files that live in tskvm or on disk are always ready; pipes and ttys are asked of
 * the host in one poll(2), which also does the waiting, bounded by the run's deadline.
 */
function pollFiles(p: Process, entries: Array<{ fd: number; events: number }>, timeoutMs: number): number[] | number {
  const revents = new Array<number>(entries.length).fill(0);
  const host = Buffer.alloc(entries.length * 8); // struct pollfd { int fd; short events; short revents; }
  const hostEntries: number[] = []; // index in `entries` of each host pollfd
  entries.forEach(({ fd, events }, i) => {
    if (fd < 0) return;
    const file = p.files.get(fd);
    if (!file) {
      revents[i] = POLLNVAL;
    } else if (file.pollFd === null) {
      revents[i] = DEFAULT_POLLMASK & (events | POLLERR | POLLHUP);
    } else {
      host.writeInt32LE(file.pollFd, hostEntries.length * 8);
      host.writeUInt16LE(events, hostEntries.length * 8 + 4);
      hostEntries.push(i);
    }
  });
  const wait = revents.some((r) => r !== 0) ? 0 : timeoutMs;
  const n = libc.poll(host, hostEntries.length, waitLimit(wait)) as number;
  if (n < 0) return -lastErrno();
  if (n === 0 && wait !== 0 && passedDeadline()) return -E.EINTR;
  hostEntries.forEach((i, k) => { revents[i] = host.readUInt16LE(k * 8 + 6); });
  return revents;
}

/** poll(2) over the guest's struct pollfd array. */
function poll(p: Process, fdsAddr: number, count: number, timeoutMs: number): number {
  if (count < 0 || count > p.files.maxFiles) return -E.EINVAL;
  if (count > 0 && !inGuest(p, fdsAddr, count * 8)) return -E.EFAULT;
  const entries = Array.from({ length: count }, (_, i) => ({
    fd: p.mem.i32(fdsAddr + i * 8), events: p.mem.view.getUint16(fdsAddr + i * 8 + 4, true),
  }));
  const revents = pollFiles(p, entries, timeoutMs);
  if (typeof revents === 'number') return revents;
  revents.forEach((r, i) => p.mem.view.setUint16(fdsAddr + i * 8 + 6, r, true));
  if (count > 0) p.mem.recordWrite(fdsAddr, count * 8);
  return revents.filter((r) => r !== 0).length;
}

/** What select(2) counts as ready in each of its three sets, in poll's terms (Linux's POLLIN_SET etc.). */
const SELECT_SETS = [
  { events: POLLIN | POLLRDNORM, ready: POLLIN | POLLRDNORM | POLLHUP | POLLERR },
  { events: POLLOUT | POLLWRNORM, ready: POLLOUT | POLLWRNORM | POLLERR },
  { events: POLLPRI, ready: POLLPRI },
];
const FD_SETSIZE = 1024;

/**
 * select(2) and pselect6(2) over poll: each fd named in any of the three fd_set bitmaps becomes one
 * poll entry; the sets are rewritten to the ready fds. An fd that is not open is EBADF, as in Linux.
 */
function select(p: Process, nfds: number, setAddrs: number[], timeoutMs: number): number {
  if (nfds < 0 || nfds > Math.max(FD_SETSIZE, p.files.maxFiles)) return -E.EINVAL;
  const bytes = Math.ceil(nfds / 64) * 8;
  for (const addr of setAddrs) if (addr && bytes > 0 && !inGuest(p, addr, bytes)) return -E.EFAULT;
  const entries: Array<{ fd: number; events: number }> = [];
  for (let fd = 0; fd < nfds; fd++) {
    let events = 0;
    setAddrs.forEach((addr, set) => {
      if (addr && (p.mem.bytes[addr + (fd >> 3)]! & (1 << (fd & 7)))) events |= SELECT_SETS[set]!.events;
    });
    if (!events) continue;
    if (!p.files.get(fd)) return -E.EBADF;
    entries.push({ fd, events });
  }
  const revents = pollFiles(p, entries, timeoutMs);
  if (typeof revents === 'number') return revents;
  let ready = 0;
  setAddrs.forEach((addr, set) => {
    if (!addr || bytes === 0) return;
    const bits = p.mem.write(addr, bytes);
    bits.fill(0);
    entries.forEach(({ fd, events }, i) => {
      if (events & SELECT_SETS[set]!.events && revents[i]! & SELECT_SETS[set]!.ready) {
        bits[fd >> 3]! |= 1 << (fd & 7);
        ready++;
      }
    });
  });
  return ready;
}

/**
 * A wait's timeout in guest memory: struct timespec (ppoll, pselect6: `subunits` 1e9) or struct
 * timeval (select: 1e6); NULL for none. In milliseconds, rounded up, -1 for forever, or -errno.
 */
function timeoutMs(p: Process, addr: number, subunits = 1e9): number {
  if (addr === 0) return -1;
  if (!inGuest(p, addr, 16)) return -E.EFAULT;
  const sec = p.mem.i64(addr);
  const sub = p.mem.i64(addr + 8);
  if (sec < 0 || sub < 0 || sub >= subunits) return -E.EINVAL;
  return Math.min(0x7fffffff, sec * 1000 + Math.ceil(sub / (subunits / 1000)));
}

/** select and pselect6 write back the time left of their timeout, as Linux does. */
function selectWithTimeout(p: Process, nfds: number, sets: number[], addr: number, subunits: number): number {
  const limit = timeoutMs(p, addr, subunits);
  if (limit < -1) return limit;
  const started = performance.now();
  const ready = select(p, nfds, sets, limit);
  if (addr && ready >= 0) {
    const leftMs = Math.max(0, limit - (performance.now() - started));
    p.mem.setU64(addr, Math.floor(leftMs / 1000));
    p.mem.setU64(addr + 8, Math.floor((leftMs % 1000) * (subunits / 1000)));
  }
  return ready;
}

function closeRange(p: Process, first: number, last: number, flags: number): number {
  const CLOSE_RANGE_UNSHARE = 2;
  const CLOSE_RANGE_CLOEXEC = 4;
  if (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) || first > last) return -E.EINVAL;
  for (const fd of p.files.openFds()) {
    if (fd < first || fd > last) continue;
    if (flags & CLOSE_RANGE_CLOEXEC) p.files.setCloexec(fd, true);
    else p.files.close(fd);
  }
  return 0;
}

function getcwd(p: Process, bufAddr: number, size: number): number {
  const cwd = Buffer.from(p.paths.cwd + '\0');
  if (size < cwd.length) return -E.ERANGE;
  if (!inGuest(p, bufAddr, cwd.length)) return -E.EFAULT;
  p.mem.put(bufAddr, cwd);
  return cwd.length;
}

// ── the table ──────────────────────────────────────────────────────────────────

/** A C `int` argument. */
const int = (x: number): number => x | 0;
/** A C `unsigned int` argument. */
const uint = (x: number): number => x >>> 0;

export const fsSyscalls: SyscallDef[] = [
  { nr: 0, name: 'read', args: ['fd', 'outbuf', 'size'], handler: (p, a) => readWrite(p, int(a[0]!), a[1]!, a[2]!, 'read', null) },
  { nr: 1, name: 'write', args: ['fd', 'inbuf', 'size'], handler: (p, a) => readWrite(p, int(a[0]!), a[1]!, a[2]!, 'write', null) },
  { nr: 17, name: 'pread64', args: ['fd', 'outbuf', 'size', 'int'], handler: (p, a) => readWrite(p, int(a[0]!), a[1]!, a[2]!, 'read', a[3]!) },
  { nr: 18, name: 'pwrite64', args: ['fd', 'inbuf', 'size', 'int'], handler: (p, a) => readWrite(p, int(a[0]!), a[1]!, a[2]!, 'write', a[3]!) },
  { nr: 19, name: 'readv', args: ['fd', 'iov', 'int'], handler: (p, a) => vectored(p, int(a[0]!), a[1]!, a[2]!, 'read', null) },
  { nr: 20, name: 'writev', args: ['fd', 'iov', 'int'], handler: (p, a) => vectored(p, int(a[0]!), a[1]!, a[2]!, 'write', null) },
  // preadv/pwritev take the offset split in two longs (low, high); x86-64 passes it whole in the first.
  { nr: 295, name: 'preadv', args: ['fd', 'iov', 'int', 'int'], handler: (p, a) => vectored(p, int(a[0]!), a[1]!, a[2]!, 'read', a[3]!) },
  { nr: 296, name: 'pwritev', args: ['fd', 'iov', 'int', 'int'], handler: (p, a) => vectored(p, int(a[0]!), a[1]!, a[2]!, 'write', a[3]!) },
  {
    nr: 8, name: 'lseek', args: ['fd', 'int', 'whence'],
    handler: (p, a) => {
      const file = p.files.get(int(a[0]!));
      if (!file) return -E.EBADF;
      const whence = uint(a[2]!);
      return whence > SEEK_HOLE ? -E.EINVAL : file.seek(a[1]!, whence);
    },
  },
  {
    nr: 40, name: 'sendfile', args: ['fd', 'fd', 'ptr', 'size'],
    handler: (p, a) => sendfile(p, int(a[0]!), int(a[1]!), a[2]!, a[3]!),
  },
  {
    nr: 326, name: 'copy_file_range', args: ['fd', 'ptr', 'fd', 'ptr', 'size', 'uint'],
    handler: (p, a) => copyFileRange(p, int(a[0]!), a[1]!, int(a[2]!), a[3]!, a[4]!, uint(a[5]!)),
  },

  { nr: 2, name: 'open', args: ['path', 'oflags', 'mode'], ret: 'fd', handler: (p, a) => openAt(p, AT_FDCWD, a[0]!, int(a[1]!), uint(a[2]!)) },
  { nr: 257, name: 'openat', args: ['dirfd', 'path', 'oflags', 'mode'], ret: 'fd', handler: (p, a) => openAt(p, int(a[0]!), a[1]!, int(a[2]!), uint(a[3]!)) },
  {
    nr: 85, name: 'creat', args: ['path', 'mode'], ret: 'fd',
    handler: (p, a) => openAt(p, AT_FDCWD, a[0]!, O.CREAT | O.WRONLY | O.TRUNC, uint(a[1]!)),
  },
  { nr: 3, name: 'close', args: ['fd'], handler: (p, a) => p.files.close(int(a[0]!)) },
  { nr: 436, name: 'close_range', args: ['uint', 'uint', 'hex'], handler: (p, a) => closeRange(p, uint(a[0]!), uint(a[1]!), uint(a[2]!)) },
  { nr: 32, name: 'dup', args: ['fd'], ret: 'fd', handler: (p, a) => p.files.dup(int(a[0]!)) },
  { nr: 33, name: 'dup2', args: ['fd', 'fd'], ret: 'fd', handler: (p, a) => p.files.dup2(int(a[0]!), int(a[1]!)) },
  {
    nr: 292, name: 'dup3', args: ['fd', 'fd', 'oflags'], ret: 'fd',
    handler: (p, a) => (int(a[2]!) & ~O.CLOEXEC ? -E.EINVAL : p.files.dup3(int(a[0]!), int(a[1]!), (int(a[2]!) & O.CLOEXEC) !== 0)),
  },
  { nr: 72, name: 'fcntl', args: ['fd', 'fcntl', 'hex'], handler: (p, a) => fcntl(p, int(a[0]!), int(a[1]!), a[2]!) },
  { nr: 16, name: 'ioctl', args: ['fd', 'ioctl', 'hex'], handler: (p, a) => ioctl(p, int(a[0]!), uint(a[1]!), a[2]!) },
  // The timeout is an int: a negative one waits forever.
  { nr: 7, name: 'poll', args: ['ptr', 'uint', 'int'], handler: (p, a) => poll(p, a[0]!, uint(a[1]!), Math.max(-1, int(a[2]!))) },
  {
    // The signal mask (a[3]) is not applied: no signal reaches the guest while it waits.
    nr: 271, name: 'ppoll', args: ['ptr', 'uint', 'ptr', 'ptr', 'size'],
    handler: (p, a) => {
      const timeout = timeoutMs(p, a[2]!);
      return timeout < -1 ? timeout : poll(p, a[0]!, uint(a[1]!), timeout);
    },
  },
  { nr: 23, name: 'select', args: ['int', 'ptr', 'ptr', 'ptr', 'ptr'], handler: (p, a) => selectWithTimeout(p, int(a[0]!), [a[1]!, a[2]!, a[3]!], a[4]!, 1e6) },
  {
    // Like ppoll, the signal mask (behind a[5]) is not applied.
    nr: 270, name: 'pselect6', args: ['int', 'ptr', 'ptr', 'ptr', 'ptr', 'ptr'],
    handler: (p, a) => selectWithTimeout(p, int(a[0]!), [a[1]!, a[2]!, a[3]!], a[4]!, 1e9),
  },
  { nr: 22, name: 'pipe', args: ['ptr'], handler: (p, a) => pipe2(p, a[0]!, 0) },
  { nr: 293, name: 'pipe2', args: ['ptr', 'oflags'], handler: (p, a) => pipe2(p, a[0]!, int(a[1]!)) },

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
    nr: 76, name: 'truncate', args: ['path', 'int'],
    handler: (p, a) => {
      if (a[1]! < 0) return -E.EINVAL;
      if (a[1]! > Number.MAX_SAFE_INTEGER) return -E.EFBIG; // as HostFile.truncate
      return onEntry(p, AT_FDCWD, a[0]!, 'write', true, (entry) => {
        const fd = hostResult(libc.openat(entry.dir, entry.name, O.WRONLY | O.NONBLOCK | O.NOCTTY | O.NOFOLLOW | O.CLOEXEC, 0) as number);
        if (fd < 0) return fd;
        // As ftruncate on that file (and its write quota): a FIFO or a device is EINVAL there too.
        const file = new HostFile(fd, O.WRONLY, { positioning: fs.fstatSync(fd).isFile() ? 'tracked' : 'stream', mutable: entry.writable });
        const result = file.truncate(a[1]!);
        file.close();
        return result;
      });
    },
  },
  {
    nr: 77, name: 'ftruncate', args: ['fd', 'int'],
    handler: (p, a) => {
      if (a[1]! < 0) return -E.EINVAL;
      const file = p.files.get(int(a[0]!));
      if (!file) return -E.EBADF;
      return file.writable ? file.truncate(a[1]!) : -E.EINVAL;
    },
  },
  {
    nr: 74, name: 'fsync', args: ['fd'],
    handler: (p, a) => p.files.get(int(a[0]!))?.sync(false) ?? -E.EBADF,
  },
  {
    nr: 75, name: 'fdatasync', args: ['fd'],
    handler: (p, a) => p.files.get(int(a[0]!))?.sync(true) ?? -E.EBADF,
  },
  {
    nr: 221, name: 'fadvise64', args: ['fd', 'int', 'size', 'int'],
    handler: (p, a) => {
      const file = p.files.get(int(a[0]!));
      if (!file) return -E.EBADF;
      if (!file.seekable) return -E.ESPIPE;
      return uint(a[3]!) > 5 ? -E.EINVAL : 0; // advice only: nothing to do
    },
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
  {
    nr: 280, name: 'utimensat', args: ['dirfd', 'path', 'ptr', 'atflags'],
    handler: (p, a) => utimensAt(p, int(a[0]!), a[1]!, a[2]!, int(a[3]!)),
  },
];
