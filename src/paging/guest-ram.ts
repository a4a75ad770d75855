/**
 * Guest RAM: memfds mapped into this process, one contiguous range of host
 * memory for the whole guest address space.
 *
 *   guest 0 ───────────────────────────── mainSize ────────── size
 *         │ main memfd: the program         │ shared memfd:     │
 *         │ (image, heap, mmap, stack)      │ shared_memory     │
 *
 * A memfd rather than anonymous memory so that request VMs can map the same
 * pages MAP_PRIVATE and let the host kernel do copy-on-write (docs/ARCHITECTURE.md, "Guest RAM"):
 * the program's RAM owns the memfds and maps them shared; a fork maps the
 * main memfd private and the shared region shared, so every fork of a program
 * sees one shared region and its own copy of the rest.
 * The files are sparse: only pages the guest touches cost host memory, and no
 * guest can use more than the file's size.
 */
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MADV_DONTNEED, MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, MFD_CLOEXEC, PROT_READ, PROT_WRITE,
  addressOf, libc, mapOrThrow, sysError, viewOf,
} from '../host/libc.js';
import { GuestMemory, PAGE_SIZE } from './guest-memory.js';

const PROT_NONE = 0;
const MAP_FIXED = 0x10;
const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);

/** What a fork needs to map a program's memory: plain numbers, so it can cross to a worker thread. */
export interface RamSource {
  memfd: number;
  /** -1 when the program has no shared region. */
  sharedFd: number;
  size: number;
  mainSize: number;
}

export class GuestRam {
  readonly size: number;
  /** Bytes backed by the main memfd; above it, up to `size`, is the shared region. */
  readonly mainSize: number;
  readonly memfd: number;
  readonly sharedFd: number;
  readonly hostAddress: bigint;
  readonly memory: GuestMemory;
  /** A fork's copy-on-write view: does not own the memfds and never writes through to them. */
  readonly isPrivate: boolean;
  /** A fork's read-only window on the frozen program (the main memfd, shared): what a reset copies back. */
  readonly master: Uint8Array | null;
  private readonly pointer: unknown;
  private closed = false;

  /** New, zero-filled guest RAM of `size` bytes, the top `sharedSize` of them the shared region. */
  static create(size: number, sharedSize = 0, name = 'tskvm-guest'): GuestRam {
    const mainSize = size - sharedSize;
    const memfd = createMemfd(name, mainSize);
    let sharedFd = -1;
    try {
      if (sharedSize > 0) sharedFd = createMemfd(name + ':shared', sharedSize);
      return new GuestRam({ memfd, sharedFd, size, mainSize }, false);
    } catch (e) {
      libc.close(memfd);
      if (sharedFd >= 0) libc.close(sharedFd);
      throw e;
    }
  }

  /** A copy-on-write view of `source` for a request VM. */
  static fork(source: RamSource): GuestRam {
    return new GuestRam(source, true);
  }

  private constructor(source: RamSource, isPrivate: boolean) {
    this.size = source.size;
    this.mainSize = source.mainSize;
    this.memfd = source.memfd;
    this.sharedFd = source.sharedFd;
    this.isPrivate = isPrivate;
    // Reserve the whole range, then lay the memfds over it, so guest memory is one host range.
    const { pointer, address } = mapOrThrow(this.size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 'guest address space');
    this.pointer = pointer;
    this.hostAddress = address;
    try {
      mapFixed(address, this.mainSize, (isPrivate ? MAP_PRIVATE : MAP_SHARED) | MAP_NORESERVE, this.memfd, 'guest memory');
      if (this.sharedFd >= 0) mapFixed(address + BigInt(this.mainSize), this.size - this.mainSize, MAP_SHARED | MAP_NORESERVE, this.sharedFd, 'shared memory');
    } catch (e) {
      libc.munmap(pointer, this.size);
      throw e;
    }
    this.memory = new GuestMemory(viewOf(pointer, this.size), address);
    this.master = isPrivate ? acquireMaster(this.memfd, this.mainSize) : null;
  }

  get source(): RamSource {
    return { memfd: this.memfd, sharedFd: this.sharedFd, size: this.size, mainSize: this.mainSize };
  }

  /**
   * Gives pages back and makes them read as zero (munmap, MADV_DONTNEED in the
   * guest). The owner punches holes in the memfd. A fork must not (that would
   * change the frozen program under every fork), so it zeroes the pages that
   * are not zero already, as host writes its reset will undo.
   */
  release(addr: number, len: number): void {
    const end = Math.min(addr + len, this.mainSize);
    if (end <= addr) return;
    if (this.isPrivate) {
      const bytes = this.memory.bytes;
      const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let page = addr - (addr % PAGE_SIZE); page < end; page += PAGE_SIZE) {
        const from = Math.max(page, addr);
        const to = Math.min(page + PAGE_SIZE, end);
        if (buffer.compare(ZERO_PAGE, 0, to - from, from, to) !== 0) this.memory.write(from, to - from).fill(0);
      }
      return;
    }
    if (libc.fallocate(this.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, addr, end - addr) < 0) {
      // A file system without hole punching: zero the bytes instead (same guest-visible result).
      this.memory.bytes.fill(0, addr, end);
    }
  }

  /** Drops every private page of a fork: it reads the frozen program again (a full reset). */
  dropPrivatePages(): void {
    if (libc.madvise(this.hostAddress, this.mainSize, MADV_DONTNEED) < 0) throw sysError('TSKVM_ERR_HOST_MEMORY', 'madvise(MADV_DONTNEED) of a fork');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.munmap(this.pointer, this.size);
    if (this.isPrivate) {
      releaseMaster(this.memfd, this.mainSize);
    } else {
      libc.close(this.memfd);
      if (this.sharedFd >= 0) libc.close(this.sharedFd);
    }
  }
}

/**
 * The frozen program's memory, mapped read-only once per thread and program
 * and shared by the forks living here. One view per fork would double the
 * external memory V8 accounts for each fork, and V8 answers external memory
 * with full garbage collections.
 */
const masters = new Map<string, { pointer: unknown; view: Uint8Array; refs: number }>();

function acquireMaster(memfd: number, size: number): Uint8Array {
  const key = `${memfd}:${size}`;
  let m = masters.get(key);
  if (!m) {
    const { pointer } = mapOrThrow(size, PROT_READ, MAP_SHARED | MAP_NORESERVE, memfd, 'the frozen program');
    m = { pointer, view: new Uint8Array(viewOf(pointer, size)), refs: 0 };
    masters.set(key, m);
  }
  m.refs++;
  return m.view;
}

function releaseMaster(memfd: number, size: number): void {
  const key = `${memfd}:${size}`;
  const m = masters.get(key);
  if (m && --m.refs === 0) {
    masters.delete(key);
    libc.munmap(m.pointer, size);
  }
}

function createMemfd(name: string, size: number): number {
  const fd = libc.memfdCreate(name, MFD_CLOEXEC);
  if (fd < 0) throw sysError('TSKVM_ERR_HOST_MEMORY', 'memfd_create');
  if (libc.ftruncate(fd, size) < 0) {
    libc.close(fd);
    throw sysError('TSKVM_ERR_HOST_MEMORY', `ftruncate of guest memory to ${size >> 20} MiB`);
  }
  return fd;
}

function mapFixed(at: bigint, len: number, flags: number, fd: number, what: string): void {
  const pointer = libc.mmap(at, len, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, 0);
  if (pointer === null || addressOf(pointer) !== at) throw sysError('TSKVM_ERR_HOST_MMAP', `mmap of ${len} bytes for ${what}`);
}
