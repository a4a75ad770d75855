/**
 * Which pages of a fork's memory differ from the frozen program, and putting the frozen bytes back
 * over them: the memory half of a reset (docs/ARCHITECTURE.md, "Reset").
 *
 * KVM reports the pages the vCPU wrote. Its dirty log is in manual-protect mode, so reading it
 * neither clears it nor write-protects the pages again: the set is every page written since the last
 * full reset, and the next request writes them without a fault. The host's own writes into guest
 * memory (the request block, read() buffers, …) KVM never sees; GuestMemory reports them here.
 */
import { PAGE_SIZE } from '../paging/guest-memory.js';
import { MEMORY_SLOT_SIZE, USER_START, VVAR_ADDR } from '../paging/layout.js';
import type { Vm } from '../hypervisor/kvm/vm.js';
import type { MemorySlots } from '../hypervisor/memory-slots.js';
import type { GuestRam } from '../paging/guest-ram.js';
import { libc, MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, mapOrThrow, PROT_READ, PROT_WRITE, viewOf } from '../host/libc.js';

const VVAR_PAGE = VVAR_ADDR / PAGE_SIZE;
const SYSTEM_PAGES = USER_START / PAGE_SIZE;
/** Pages per memory slot, and 32-bit words of dirty bitmap per slot. */
const SLOT_PAGES = MEMORY_SLOT_SIZE / PAGE_SIZE;
const SLOT_WORDS = SLOT_PAGES / 32;
/** Words of bitmap looked at together (256: 32 MiB of guest memory), a divisor of SLOT_WORDS. */
const BLOCK_WORDS = 256;
const ZERO_BLOCK = Buffer.alloc(BLOCK_WORDS * 4);

export class DirtyPages {
  readonly pages: number;
  /**
   * KVM's dirty bitmaps, one per memory slot (piece k's at word k × SLOT_WORDS), in host memory KVM
   * writes into; only the pieces that have a slot are ever touched.
   */
  private readonly bitmap: Uint32Array;
  /** The same bytes, for finding the runs of zero words natively (Buffer.compare) instead of word by word. */
  private readonly bitmapBytesView: Buffer;
  private readonly bitmapAddress: bigint;
  private readonly bitmapPointer: unknown;
  private readonly bitmapBytes: number;
  /** Pages the host wrote since the last reset, each once. */
  private hostWritten: number[] = [];
  /** Per piece the host wrote in, a flag per page: whether it is in hostWritten. */
  private readonly hostWrittenFlags: Array<Uint8Array | undefined> = [];
  /**
   * The last restore() put back a page of the hypervisor's area that the host had written: a page
   * table the guest's mmap or mprotect changed (mm.ts), whose old translations must then be dropped.
   */
  systemRestored = false;

  constructor(mainSize: number) {
    this.pages = Math.ceil(mainSize / PAGE_SIZE);
    this.bitmapBytes = Math.ceil(this.pages / SLOT_PAGES) * SLOT_WORDS * 4;
    const bitmap = mapOrThrow(this.bitmapBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 'the dirty bitmap');
    this.bitmapPointer = bitmap.pointer;
    this.bitmapAddress = bitmap.address;
    const buffer = viewOf(bitmap.pointer, this.bitmapBytes);
    this.bitmap = new Uint32Array(buffer);
    this.bitmapBytesView = Buffer.from(buffer);
  }

  /** GuestMemory's report of a host write: `count` pages from page `first`. */
  recordHostWrite(first: number, count: number): void {
    for (let page = first; page < first + count && page < this.pages; page++) {
      const flags = this.hostWrittenFlags[(page / SLOT_PAGES) | 0] ??= new Uint8Array(SLOT_PAGES);
      if (!flags[page % SLOT_PAGES]) {
        flags[page % SLOT_PAGES] = 1;
        this.hostWritten.push(page);
      }
    }
  }

  private unflag(page: number): void {
    this.hostWrittenFlags[(page / SLOT_PAGES) | 0]![page % SLOT_PAGES] = 0;
  }

  /**
   * Forgets the host's writes without restoring them (a persistent fork keeps its memory), except in
   * the hypervisor's area: page tables a request changed stay listed, so that the next reset, which
   * puts the mappings back, puts the tables back with them.
   */
  forgetHostWrites(): void {
    const kept: number[] = [];
    for (const page of this.hostWritten) {
      if (page < SYSTEM_PAGES) kept.push(page);
      else this.unflag(page);
    }
    this.hostWritten = kept;
  }

  /** KVM_GET_DIRTY_LOG of every slot into its bitmap. */
  private read(vm: Vm, slots: MemorySlots): number[] {
    const pieces = slots.pieces();
    for (const piece of pieces) vm.getDirtyLog(piece, this.bitmapAddress + BigInt(piece * SLOT_WORDS * 4));
    return pieces;
  }

  private isDirty(page: number): boolean {
    return (this.bitmap[page >>> 5]! & (1 << (page & 31))) !== 0;
  }

  /**
   * Copies the frozen program's bytes over every page KVM or the host wrote; returns how many pages
   * KVM's logs hold (the fork's private set).
   */
  restore(vm: Vm, slots: MemorySlots, ram: GuestRam): number {
    const bitmap = this.bitmap;
    const fork = ram.memory;
    const master = ram.master!;
    const pieces = this.read(vm, slots);
    // The vvar page is this VM's own (kvmclock and this VM's clock offsets): never the frozen one's.
    bitmap[VVAR_PAGE >>> 5] &= ~(1 << (VVAR_PAGE & 31));
    let dirty = 0;
    for (const piece of pieces) {
      // A piece lies within one host view (they start at every GiB and span two), so one span each.
      const base = piece * MEMORY_SLOT_SIZE;
      const len = Math.min(MEMORY_SLOT_SIZE, ram.mainSize - base);
      const to = fork.span(base, len);
      const from = master.span(base, len);
      for (let block = piece * SLOT_WORDS, last = block + SLOT_WORDS; block < last; block += BLOCK_WORDS) {
        // Most of a request's log is zero: a block of it is compared with zeros at once.
        if (this.bitmapBytesView.compare(ZERO_BLOCK, 0, ZERO_BLOCK.length, block * 4, (block + BLOCK_WORDS) * 4) === 0) continue;
        for (let w = block; w < block + BLOCK_WORDS; w++) {
          let bits = bitmap[w]!;
          while (bits !== 0) {
            const low = bits & -bits;
            const at = (w * 32 + 31 - Math.clz32(low)) * PAGE_SIZE - base;
            bits ^= low;
            to.set(from.subarray(at, at + PAGE_SIZE), at);
            dirty++;
          }
        }
      }
    }
    this.systemRestored = false;
    for (const page of this.hostWritten) {
      this.unflag(page);
      if (page < SYSTEM_PAGES) this.systemRestored = true;
      if (!this.isDirty(page)) {
        const at = page * PAGE_SIZE;
        fork.span(at, PAGE_SIZE).set(master.span(at, PAGE_SIZE));
      }
    }
    this.hostWritten = [];
    return dirty;
  }

  /** Pages in KVM's (cumulative) dirty logs now. */
  count(vm: Vm, slots: MemorySlots): number {
    let n = 0;
    for (const piece of this.read(vm, slots)) {
      for (let w = piece * SLOT_WORDS, end = w + SLOT_WORDS; w < end; w++) if (this.bitmap[w]) n += popcount(this.bitmap[w]!);
    }
    return n;
  }

  /** After the fork gave its private pages back: the logs start from nothing. */
  clear(vm: Vm, slots: MemorySlots): void {
    for (const piece of slots.pieces()) {
      // The whole slot, which KVM accepts whatever its length (only partial clears go by 64 pages).
      const pages = Math.min(SLOT_PAGES, this.pages - piece * SLOT_PAGES);
      vm.clearDirtyLog(piece, 0, pages, this.bitmapAddress + BigInt(piece * SLOT_WORDS * 4));
    }
  }

  close(): void {
    libc.munmap(this.bitmapPointer, this.bitmapBytes);
  }
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
