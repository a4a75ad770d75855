/**
 * Reads and writes: plain, positional, vectored, and the copies between two files (sendfile,
 * copy_file_range); truncation and sync. Every buffer is checked and cut to what Linux would move
 * before an open file gets a view of guest memory.
 */
import fs from 'node:fs';
import { E } from '../../host/errno.js';
import { libc } from '../../host/libc.js';
import { HostFile } from '../open-files/host-file.js';
import { O, SEEK_CUR, SEEK_HOLE, type OpenFile } from '../open-files/open-file.js';
import type { Process } from '../process.js';
import { brokenPipe } from '../signal.js';
import type { SyscallDef } from '../syscall.js';
import { AT_FDCWD, IOV_MAX, MAX_RW_COUNT, hostResult, inGuest, int, ioLength, iovecSegments, onEntry, uint } from './args.js';

/** Largest host buffer a readv/writev on a pipe gathers into (a short count beyond, as for a full pipe). */
const STREAM_GATHER_MAX = 1 << 20;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

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
  const segments = iovecSegments(p, iovAddr, count);
  if (typeof segments === 'number') return segments;

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

export const ioSyscalls: SyscallDef[] = [
  { nr: 0, name: 'read', args: ['fd', 'outbuf', 'size'], handler: (p, a) => readWrite(p, int(a[0]!), a[1]!, a[2]!, 'read', null) },
  { nr: 1, name: 'write', args: ['fd', 'inbuf', 'size'], handler: (p, a) => brokenPipe(p, readWrite(p, int(a[0]!), a[1]!, a[2]!, 'write', null)) },
  { nr: 17, name: 'pread64', args: ['fd', 'outbuf', 'size', 'int'], handler: (p, a) => readWrite(p, int(a[0]!), a[1]!, a[2]!, 'read', a[3]!) },
  { nr: 18, name: 'pwrite64', args: ['fd', 'inbuf', 'size', 'int'], handler: (p, a) => readWrite(p, int(a[0]!), a[1]!, a[2]!, 'write', a[3]!) },
  { nr: 19, name: 'readv', args: ['fd', 'iov', 'int'], handler: (p, a) => vectored(p, int(a[0]!), a[1]!, a[2]!, 'read', null) },
  { nr: 20, name: 'writev', args: ['fd', 'iov', 'int'], handler: (p, a) => brokenPipe(p, vectored(p, int(a[0]!), a[1]!, a[2]!, 'write', null)) },
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
];
