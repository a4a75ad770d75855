/**
 * Memory-management syscalls: brk, mmap and friends. The address space is
 * mapped in full from the start (docs/ARCHITECTURE.md, "Memory and mappings"),
 * so these keep the books in AddressSpace and, for file mappings, copy the
 * file's bytes into place. One thing reaches the page tables: whether a page
 * may be executed. A file mapping with PROT_EXEC (a shared library the dynamic
 * loader maps) is executable, and stops being so when it is unmapped or
 * mprotected without it (syncExecutable); anonymous memory stays no-execute
 * unless `executable_heap` made everything executable.
 */
import { E } from '../host/errno.js';
import type { SyscallDef } from './syscall.js';
import type { Process } from './process.js';
import { PAGE, USER_START, pageAlignUp } from '../paging/layout.js';
import { setUserExecutable } from '../paging/page-tables.js';
import { PROT_EXEC, PROT_WRITE } from './address-space.js';

const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_TYPE = 0x0f;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MAP_FIXED_NOREPLACE = 0x100000;
const MREMAP_MAYMOVE = 1;
const MREMAP_FIXED = 2;
const MADV_DONTNEED = 4;
const MADV_FREE = 8;

export const mmSyscalls: SyscallDef[] = [
  {
    nr: 12, name: 'brk', args: ['hex'], ret: 'hex',
    handler: (p, a) => p.mm.setBrk(a[0]!),
  },
  {
    nr: 9, name: 'mmap', args: ['hex', 'size', 'prot', 'mapflags', 'fd', 'hex'], ret: 'hex',
    handler: (p, a) => {
      const [addr, len, prot, flags, fd, offset] = [a[0]!, a[1]!, a[2]! | 0, a[3]! | 0, a[4]! | 0, a[5]!];
      const type = flags & MAP_TYPE;
      if (len <= 0 || offset % PAGE !== 0 || offset < 0) return -E.EINVAL;
      if (type !== MAP_SHARED && type !== MAP_PRIVATE && type !== 3 /* MAP_SHARED_VALIDATE */) return -E.EINVAL;
      const size = pageAlignUp(len);
      const anonymous = (flags & MAP_ANONYMOUS) !== 0;
      const file = anonymous ? undefined : p.files.get(fd);
      if (!anonymous && !file) return -E.EBADF;
      // A shared writable file mapping would need writes to reach the file; we copy instead, so refuse it.
      if (file && type !== MAP_PRIVATE && (prot & PROT_WRITE)) return -E.ENODEV;
      const mode = flags & MAP_FIXED_NOREPLACE ? 'noreplace' : flags & MAP_FIXED ? 'fixed' : 'any';
      const at = p.mm.map(addr, size, prot, mode, file ? 'file' : 'anonymous');
      if (at < 0) return at;
      const n = file ? file.pread(p.mem, at, Math.min(len, size), offset) : 0;
      // MAP_FIXED may have replaced executable pages, with others or with nothing.
      const synced = n < 0 ? n : syncExecutable(p, at, at + size);
      if (synced < 0) {
        p.mm.unmap(at, size);
        syncExecutable(p, at, at + size);
        return synced;
      }
      return at;
    },
  },
  {
    nr: 11, name: 'munmap', args: ['hex', 'size'],
    handler: (p, a) => afterChange(p, a[0]!, a[1]!, p.mm.unmap(a[0]!, a[1]!)),
  },
  {
    nr: 10, name: 'mprotect', args: ['hex', 'size', 'prot'],
    handler: (p, a) => afterChange(p, a[0]!, a[1]!, p.mm.protect(a[0]!, a[1]!, a[2]! | 0)),
  },
  {
    nr: 25, name: 'mremap', args: ['hex', 'size', 'size', 'hex', 'hex'], ret: 'hex',
    handler: (p, a) => {
      const flags = a[3]! | 0;
      if (flags & MREMAP_FIXED) return -E.EINVAL; // moving to a caller-chosen address: not supported
      const at = p.mm.remap(a[0]!, a[1]!, a[2]!, (flags & MREMAP_MAYMOVE) !== 0, (from, to, len) => {
        p.mem.write(to, len).set(p.mem.read(from, len));
      });
      if (at < 0) return at;
      afterChange(p, a[0]!, Math.max(a[1]!, a[2]!), 0);
      return afterChange(p, at, a[2]!, at);
    },
  },
  {
    nr: 28, name: 'madvise', args: ['hex', 'size', 'int'],
    handler: (p, a) => {
      const advice = a[2]! | 0;
      if (a[0]! % PAGE !== 0) return -E.EINVAL;
      return advice === MADV_DONTNEED || advice === MADV_FREE ? p.mm.discard(a[0]!, a[1]!) : 0;
    },
  },
  { nr: 26, name: 'msync', args: ['hex', 'size', 'int'], handler: () => 0 },
  { nr: 149, name: 'mlock', args: ['hex', 'size'], handler: () => 0 },
  { nr: 150, name: 'munlock', args: ['hex', 'size'], handler: () => 0 },
];

/** `result` of a call that changed [addr, addr+len), once the page tables follow (or the error that stopped them). */
function afterChange(p: Process, addr: number, len: number, result: number): number {
  if (result < 0 || !(len > 0) || addr % PAGE !== 0) return result;
  const synced = syncExecutable(p, addr, Math.min(addr + pageAlignUp(len), p.mem.size));
  return synced < 0 ? synced : result;
}

/**
 * Makes the page tables' no-execute bits over [start, end) say what the books say: executable where
 * a file mapping has PROT_EXEC, not elsewhere; the ELF images keep what they were given at the start.
 * -ENOMEM when no page table was left to make a page executable with (the mapping is then refused).
 */
function syncExecutable(p: Process, start: number, end: number): number {
  if (!p.mm.fileExec || end <= start) return 0;
  const executable: Array<[number, number]> = [];
  const untouched: Array<[number, number]> = [];
  for (const m of p.mm.list()) {
    if (m.end <= start || m.start >= end) continue;
    const range: [number, number] = [Math.max(m.start, start), Math.min(m.end, end)];
    if (m.label === 'image') untouched.push(range);
    else if (m.label === 'file' && (m.prot & PROT_EXEC) !== 0) executable.push(range);
  }
  const changed = setUserExecutable(p.mem.span(0, USER_START), p.mem.size, start, end, { executable, untouched }, (at, len) => p.mem.recordWrite(at, len));
  if (changed === null) return -E.ENOMEM;
  if (changed) p.cpu?.flushTranslations();
  return 0;
}
