/**
 * Memory-management syscalls: brk, mmap and friends. The address space is
 * mapped in full from the start (docs/ARCHITECTURE.md, "Memory and mappings"),
 * so these only keep the books in AddressSpace and, for file mappings, copy the
 * file's bytes into place.
 */
import { E } from '../host/errno.js';
import type { SyscallDef } from './syscall.js';
import { PAGE, pageAlignUp } from '../paging/layout.js';
import { PROT_WRITE } from './address-space.js';

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
      if (at < 0 || !file) return at;
      const n = file.pread(p.mem, at, Math.min(len, size), offset);
      if (n < 0) {
        p.mm.unmap(at, size);
        return n;
      }
      return at;
    },
  },
  { nr: 11, name: 'munmap', args: ['hex', 'size'], handler: (p, a) => p.mm.unmap(a[0]!, a[1]!) },
  { nr: 10, name: 'mprotect', args: ['hex', 'size', 'prot'], handler: (p, a) => p.mm.protect(a[0]!, a[1]!, a[2]! | 0) },
  {
    nr: 25, name: 'mremap', args: ['hex', 'size', 'size', 'hex', 'hex'], ret: 'hex',
    handler: (p, a) => {
      const flags = a[3]! | 0;
      if (flags & MREMAP_FIXED) return -E.EINVAL; // moving to a caller-chosen address: not supported
      return p.mm.remap(a[0]!, a[1]!, a[2]!, (flags & MREMAP_MAYMOVE) !== 0, (from, to, len) => {
        p.mem.write(to, len).set(p.mem.read(from, len));
      });
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
