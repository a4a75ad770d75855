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
import { USER_START, VVAR_ADDR } from '../paging/layout.js';
import { MAIN_SLOT } from '../hypervisor/guest-vm.js';
import type { Vm } from '../hypervisor/kvm/vm.js';
import { libc, MAP_ANONYMOUS, MAP_PRIVATE, mapOrThrow, PROT_READ, PROT_WRITE, viewOf } from '../host/libc.js';

const VVAR_PAGE = VVAR_ADDR / PAGE_SIZE;
const SYSTEM_PAGES = USER_START / PAGE_SIZE;

export class DirtyPages {
  readonly pages: number;
  /** KVM's dirty bitmap for the main slot, in host memory KVM writes into. */
  private readonly bitmap: Uint32Array;
  private readonly bitmapAddress: bigint;
  private readonly bitmapPointer: unknown;
  private readonly bitmapBytes: number;
  /** Pages the host wrote since the last reset, each once. */
  private hostWritten: number[] = [];
  /**
   * The last restore() put back a page of the hypervisor's area that the host had written: a page
   * table the guest's mmap or mprotect changed (mm.ts), whose old translations must then be dropped.
   */
  systemRestored = false;
  private readonly hostWrittenFlag: Uint8Array;

  constructor(mainSize: number) {
    this.pages = Math.ceil(mainSize / PAGE_SIZE);
    this.hostWrittenFlag = new Uint8Array(this.pages);
    this.bitmapBytes = Math.ceil(this.pages / 64) * 8;
    const bitmap = mapOrThrow(this.bitmapBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 'the dirty bitmap');
    this.bitmapPointer = bitmap.pointer;
    this.bitmapAddress = bitmap.address;
    this.bitmap = new Uint32Array(viewOf(bitmap.pointer, this.bitmapBytes));
  }

  /** GuestMemory's report of a host write: `count` pages from page `first`. */
  recordHostWrite(first: number, count: number): void {
    for (let page = first; page < first + count && page < this.pages; page++) {
      if (!this.hostWrittenFlag[page]) {
        this.hostWrittenFlag[page] = 1;
        this.hostWritten.push(page);
      }
    }
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
      else this.hostWrittenFlag[page] = 0;
    }
    this.hostWritten = kept;
  }

  /**
   * Copies `master`'s bytes over every page KVM or the host wrote; returns how many pages KVM's log
   * holds (the fork's private set).
   */
  restore(vm: Vm, bytes: Uint8Array, master: Uint8Array): number {
    const bitmap = this.bitmap;
    vm.getDirtyLog(MAIN_SLOT, this.bitmapAddress);
    // The vvar page is this VM's own (kvmclock and this VM's clock offsets): never the frozen one's.
    bitmap[VVAR_PAGE >>> 5] &= ~(1 << (VVAR_PAGE & 31));
    let dirty = 0;
    for (let w = 0; w < bitmap.length; w++) {
      let bits = bitmap[w]!;
      while (bits !== 0) {
        const low = bits & -bits;
        const page = w * 32 + 31 - Math.clz32(low);
        bits ^= low;
        const at = page * PAGE_SIZE;
        bytes.set(master.subarray(at, at + PAGE_SIZE), at);
        dirty++;
      }
    }
    this.systemRestored = false;
    for (const page of this.hostWritten) {
      this.hostWrittenFlag[page] = 0;
      if (page < SYSTEM_PAGES) this.systemRestored = true;
      if ((bitmap[page >>> 5]! & (1 << (page & 31))) === 0) {
        const at = page * PAGE_SIZE;
        bytes.set(master.subarray(at, at + PAGE_SIZE), at);
      }
    }
    this.hostWritten = [];
    return dirty;
  }

  /** Pages in KVM's (cumulative) dirty log now. */
  count(vm: Vm): number {
    vm.getDirtyLog(MAIN_SLOT, this.bitmapAddress);
    let n = 0;
    for (const word of this.bitmap) if (word) n += popcount(word);
    return n;
  }

  /** After the fork gave its private pages back: the log starts from nothing. */
  clear(vm: Vm): void {
    vm.clearDirtyLog(MAIN_SLOT, 0, this.pages, this.bitmapAddress);
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
