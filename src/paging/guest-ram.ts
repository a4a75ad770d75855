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
 *
 * A sparse address space (larger than the program's memory limit) is cut into
 * MEMORY_SLOT_SIZE pieces, and only pieces that hold a mapping have a KVM memory
 * slot (memory-slots.ts): `backed` says which. The guest cannot reach the others
 * (an access is an MMIO exit, a fault), the host refuses pointers into them, and
 * at most `pieceBudget` pieces may have a slot, so the memory a guest can touch
 * stays bounded by its limit plus two pieces.
 */
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MADV_DONTNEED, MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, MFD_CLOEXEC, PROT_READ, PROT_WRITE,
  addressOf, libc, mapOrThrow, sysError,
} from '../host/libc.js';
import { GuestMemory, HostWindows, PAGE_SIZE, type Remap } from './guest-memory.js';
import { MEMORY_SLOT_SIZE } from './layout.js';

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
  /** The pieces of main memory that have a memory slot, in a sparse address space; null: every piece. */
  backed: number[] | null;
  /** How many pieces of main memory may have a slot at once (sparse address spaces). */
  pieceBudget: number;
  /** Main memory seen at fixed high addresses too (the program's remaps). */
  remaps: Remap[];
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
  /** A fork's read-only windows on the frozen program (the main memfd, shared): what a reset copies back. */
  readonly master: HostWindows | null;
  /** Per MEMORY_SLOT_SIZE piece of the whole range, whether it has a memory slot; null: all have. */
  readonly backed: Uint8Array | null;
  readonly pieceBudget: number;
  private readonly pointer: unknown;
  private closed = false;

  /**
   * New, zero-filled guest RAM of `size` bytes, the top `sharedSize` of them the shared region.
   * `pieceBudget`: make the address space sparse, with at most this many pieces of main memory backed.
   * `remaps`: parts of main memory the guest sees at fixed high addresses (page-tables.ts maps them).
   */
  static create(size: number, sharedSize = 0, name = 'tskvm-guest', opts: { pieceBudget?: number; remaps?: Remap[] } = {}): GuestRam {
    const { pieceBudget, remaps = [] } = opts;
    const mainSize = size - sharedSize;
    const memfd = createMemfd(name, mainSize);
    let sharedFd = -1;
    try {
      if (sharedSize > 0) sharedFd = createMemfd(name + ':shared', sharedSize);
      const pieces = Math.ceil(mainSize / MEMORY_SLOT_SIZE);
      const sparse = pieceBudget !== undefined && pieceBudget < pieces;
      return new GuestRam({ memfd, sharedFd, size, mainSize, backed: sparse ? [] : null, pieceBudget: sparse ? pieceBudget : pieces, remaps }, false);
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
    this.pieceBudget = source.pieceBudget;
    if (source.backed === null) {
      this.backed = null;
    } else {
      // The shared region is always backed: it has its own slot, whole.
      this.backed = new Uint8Array(Math.ceil(this.size / MEMORY_SLOT_SIZE));
      this.backed.fill(1, Math.floor(this.mainSize / MEMORY_SLOT_SIZE));
      for (const piece of source.backed) this.backed[piece] = 1;
    }
    this.memory = new GuestMemory(new HostWindows(address, this.size), undefined, this.backed, source.remaps);
    this.master = isPrivate ? acquireMaster(this.memfd, this.mainSize) : null;
  }

  get source(): RamSource {
    return {
      memfd: this.memfd, sharedFd: this.sharedFd, size: this.size, mainSize: this.mainSize, backed: this.backedPieces(), pieceBudget: this.pieceBudget,
      remaps: this.memory.remaps.map((r) => ({ ...r })),
    };
  }

  /** The pieces of main memory with a memory slot now, or null where every piece has one. */
  backedPieces(): number[] | null {
    if (this.backed === null) return null;
    const pieces: number[] = [];
    for (let k = 0; k * MEMORY_SLOT_SIZE < this.mainSize; k++) if (this.backed[k]) pieces.push(k);
    return pieces;
  }

  /**
   * The pieces of main memory [start, end) reaches that have no slot yet, marked backed (the caller
   * gives them their slots); null, and nothing marked, when that would pass the budget.
   */
  back(start: number, end: number): number[] | null {
    const backed = this.backed;
    if (backed === null || end <= start) return [];
    const missing: number[] = [];
    for (let k = Math.floor(start / MEMORY_SLOT_SIZE); k * MEMORY_SLOT_SIZE < Math.min(end, this.mainSize); k++) if (!backed[k]) missing.push(k);
    if (missing.length === 0) return missing;
    let count = 0;
    for (let k = 0; k * MEMORY_SLOT_SIZE < this.mainSize; k++) count += backed[k]!;
    if (count + missing.length > this.pieceBudget) return null;
    for (const k of missing) backed[k] = 1;
    return missing;
  }

  /** A piece of main memory loses its slot: its pages go back to the frozen program's (or zero). */
  unback(piece: number): void {
    this.backed![piece] = 0;
    const start = piece * MEMORY_SLOT_SIZE;
    const len = Math.min(MEMORY_SLOT_SIZE, this.mainSize - start);
    if (this.isPrivate) {
      if (libc.madvise(this.hostAddress + BigInt(start), len, MADV_DONTNEED) < 0) throw sysError('TSKVM_ERR_HOST_MEMORY', 'madvise(MADV_DONTNEED) of a piece of a fork');
    } else {
      this.release(start, len);
    }
  }

  /**
   * Gives pages back and makes them read as zero (munmap, MADV_DONTNEED in the
   * guest). The owner punches holes in the memfd. A fork must not (that would
   * change the frozen program under every fork), so it zeroes the pages that
   * are not zero already, as host writes its reset will undo.
   */
  release(addr: number, len: number): void {
    if (addr >= this.memory.size) {
      // At a remap's addresses: the same memory below, in pieces as the remaps lie.
      for (const r of this.memory.remaps) {
        const from = Math.max(addr, r.virt);
        const to = Math.min(addr + len, r.virt + r.size);
        if (from < to) this.release(r.phys + (from - r.virt), to - from);
      }
      return;
    }
    const end = Math.min(addr + len, this.mainSize);
    if (end <= addr) return;
    if (this.isPrivate) {
      for (let page = addr - (addr % PAGE_SIZE); page < end; page += PAGE_SIZE) {
        const from = Math.max(page, addr);
        const to = Math.min(page + PAGE_SIZE, end);
        // Pieces with no slot the guest cannot have written (and their host pages would be new).
        if (this.backed !== null && !this.backed[Math.floor(page / MEMORY_SLOT_SIZE)]) continue;
        if (ZERO_PAGE.compare(this.memory.span(from, to - from), 0, to - from) !== 0) this.memory.write(from, to - from).fill(0);
      }
      return;
    }
    if (libc.fallocate(this.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, addr, end - addr) < 0) {
      // A file system without hole punching: zero the bytes instead (same guest-visible result).
      for (let at = addr; at < end; at += PAGE_SIZE) this.memory.span(at, Math.min(PAGE_SIZE, end - at)).fill(0);
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
const masters = new Map<string, { pointer: unknown; view: HostWindows; refs: number }>();

function acquireMaster(memfd: number, size: number): HostWindows {
  const key = `${memfd}:${size}`;
  let m = masters.get(key);
  if (!m) {
    const { pointer, address } = mapOrThrow(size, PROT_READ, MAP_SHARED | MAP_NORESERVE, memfd, 'the frozen program');
    m = { pointer, view: new HostWindows(address, size), refs: 0 };
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
