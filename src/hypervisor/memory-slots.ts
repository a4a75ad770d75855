/**
 * Guest memory as KVM sees it: one memory slot per MEMORY_SLOT_SIZE piece of the program's memory
 * that has one (every piece, unless the address space is sparse; see guest-ram.ts), plus one for the
 * shared region. A slot's number is its piece's index, so the dirty log of piece k is slot k's.
 *
 * Why pieces and not one slot: KVM keeps per-page bookkeeping for every slot (on PVM, with its shadow
 * page tables, a reverse map of 8 bytes per 4 KiB page, allocated when the slot is made: 128 MiB of
 * kernel memory for a 64 GiB slot, measured), and KVM_GET_DIRTY_LOG reads a bitmap as large as the
 * slot. A sparse address space must cost what the program uses of it.
 */
import { KVM_MEM_LOG_DIRTY_PAGES } from './kvm/abi.js';
import type { Vm } from './kvm/vm.js';
import type { GuestRam } from '../paging/guest-ram.js';
import { MAX_ADDRESS_SPACE, MEMORY_SLOT_SIZE } from '../paging/layout.js';

/** The shared region's slot: past every piece's. */
export const SHARED_SLOT = MAX_ADDRESS_SPACE / MEMORY_SLOT_SIZE;

export class MemorySlots {
  private readonly vm: Vm;
  private readonly ram: GuestRam;
  private readonly flags: number;
  /** Every piece, where every piece has a slot (the list is asked for at each reset). */
  private all: number[] | null = null;

  /** `dirtyLog`: KVM logs the pages the guest writes in the program's memory (request VMs, for their reset). */
  constructor(vm: Vm, ram: GuestRam, dirtyLog: boolean) {
    this.vm = vm;
    this.ram = ram;
    this.flags = dirtyLog ? KVM_MEM_LOG_DIRTY_PAGES : 0;
  }

  /** Gives KVM every piece that is backed now, and the shared region. */
  register(): void {
    const ram = this.ram;
    for (const piece of this.pieces()) this.set(piece, true);
    if (ram.size > ram.mainSize) this.vm.setMemoryRegion(SHARED_SLOT, ram.mainSize, ram.size - ram.mainSize, ram.hostAddress + BigInt(ram.mainSize));
  }

  /** The pieces of the program's memory that have a slot. */
  pieces(): number[] {
    const ram = this.ram;
    return ram.backedPieces() ?? (this.all ??= [...Array(Math.ceil(ram.mainSize / MEMORY_SLOT_SIZE)).keys()]);
  }

  /**
   * Memory for [start, end), a range the guest is about to map: the pieces it reaches get their
   * slots. False when that would pass the program's budget of pieces (the mapping fails with ENOMEM).
   */
  back(start: number, end: number): boolean {
    const added = this.ram.back(start, end);
    if (added === null) return false;
    for (const piece of added) this.set(piece, true);
    return true;
  }

  /** Takes away the slots of every piece not in `keep` (a fork's reset: the frozen program's pieces). */
  trim(keep: ReadonlySet<number>): void {
    for (const piece of this.pieces()) {
      if (keep.has(piece)) continue;
      this.set(piece, false);
      this.ram.unback(piece);
    }
  }

  private set(piece: number, present: boolean): void {
    const start = piece * MEMORY_SLOT_SIZE;
    const size = present ? Math.min(MEMORY_SLOT_SIZE, this.ram.mainSize - start) : 0;
    this.vm.setMemoryRegion(piece, start, size, this.ram.hostAddress + BigInt(start), this.flags);
  }
}
