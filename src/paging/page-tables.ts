/**
 * Identity-mapped 4-level page tables for the whole address space.
 *
 *   PML4[0] → PDPT[g] → PD g (1 GiB each) → 2 MiB pages, user RW
 *                        PD 0[0] → PT (4 KiB pages) for the first 2 MiB, where
 *                        the hypervisor's pages live with their own permissions
 *
 * No-execute (where the CPU has NX): in the first 2 MiB everything but the stubs
 * and the vDSO; in user memory everything but the 4 KiB pages of the ELF's
 * executable segments, so data, the heap, the stack and every mapping cannot be
 * run (the `executable_heap` option lifts it, for JITs). A 2 MiB page that holds
 * code is mapped through a page table of its own (at IMAGE_PT_ADDR), so that
 * the data next to the code is no-execute too.
 *
 * Built once into guest memory before the first run. The guest never needs to
 * change them: mmap/munmap/mprotect are bookkeeping in the host
 * (docs/ARCHITECTURE.md, "Memory and mappings").
 */
import {
  EXCEPTION_STACK_TOP, GDT_ADDR, HUGE_PAGE, IDT_ADDR, IMAGE_PT_ADDR, LOW_PT_ADDR, PAGE, PD_ADDR, PDPT_ADDR, PML4_ADDR, RING0_STUBS_ADDR, STUBS_ADDR, TSS_ADDR,
  USER_START, VDSO_ADDR, VVAR_ADDR, pageDirectoryCount,
} from './layout.js';

const P = 1n; // present
const RW = 2n; // writable
const US = 4n; // user-accessible
const PS = 0x80n; // 2 MiB page (in a page directory entry)
const NX = 1n << 63n; // no-execute (with EFER.NXE)

export interface ExecutePolicy {
  /** The CPU has NX (EFER.NXE is set): pages may be no-execute. */
  nx: boolean;
  /** User ranges that must be executable (the ELF's executable segments), or 'all'. */
  executable: Array<[number, number]> | 'all';
}

/**
 * Writes the page tables into `memory` (guest-physical view from address 0).
 * `holes` are 2 MiB-aligned ranges left unmapped in the user area, such as the
 * guard below the stack that turns a runaway recursion into a fault.
 */
export function buildPageTables(memory: Uint8Array, addressSpace: number, holes: Array<[number, number]>, exec: ExecutePolicy): void {
  const inHole = (addr: number): boolean => holes.some(([start, end]) => addr >= start && addr < end);
  const nx = exec.nx ? NX : 0n;
  const holdsCode = (addr: number, size: number): boolean =>
    exec.executable === 'all' || exec.executable.some(([start, end]) => start < addr + size && end > addr);
  // 2 MiB pages with code in them get 4 KiB pages (when NX can tell them apart); past the room for
  // their tables, the rest stay whole and executable.
  const fine = new Map<number, number>();
  if (exec.nx && exec.executable !== 'all') {
    for (let addr = USER_START; addr < addressSpace && fine.size < MAX_IMAGE_TABLES; addr += HUGE_PAGE) {
      if (holdsCode(addr, HUGE_PAGE)) fine.set(addr, IMAGE_PT_ADDR + fine.size * PAGE);
    }
  }
  const view = new DataView(memory.buffer, memory.byteOffset, memory.byteLength);
  const entry = (table: number, index: number, value: bigint): void => view.setBigUint64(table + index * 8, value, true);
  const directories = pageDirectoryCount(addressSpace);

  memory.fill(0, PML4_ADDR, PD_ADDR + directories * PAGE);
  entry(PML4_ADDR, 0, BigInt(PDPT_ADDR) | P | RW | US);
  for (let g = 0; g < directories; g++) {
    const pd = PD_ADDR + g * PAGE;
    entry(PDPT_ADDR, g, BigInt(pd) | P | RW | US);
    for (let i = 0; i < 512; i++) {
      const addr = g * 0x4000_0000 + i * HUGE_PAGE;
      if (addr >= addressSpace) break;
      if (addr < USER_START || inHole(addr)) continue;
      const table = fine.get(addr);
      if (table === undefined) {
        entry(pd, i, BigInt(addr) | P | RW | US | PS | (holdsCode(addr, HUGE_PAGE) ? 0n : nx));
        continue;
      }
      memory.fill(0, table, table + PAGE);
      entry(pd, i, BigInt(table) | P | RW | US);
      for (let j = 0; j < 512; j++) {
        const page = addr + j * PAGE;
        entry(table, j, BigInt(page) | P | RW | US | (holdsCode(page, PAGE) ? 0n : nx));
      }
    }
  }
  // The first 2 MiB in 4 KiB pages: the user bit must be set at every level
  // for the one user page below it (the stubs) to be reachable from ring 3.
  entry(PD_ADDR, 0, BigInt(LOW_PT_ADDR) | P | RW | US);
  const supervisor = [GDT_ADDR, TSS_ADDR, IDT_ADDR, EXCEPTION_STACK_TOP - 2 * PAGE, EXCEPTION_STACK_TOP - PAGE];
  for (const addr of supervisor) entry(LOW_PT_ADDR, addr / PAGE, BigInt(addr) | P | RW | nx);
  for (let addr = PML4_ADDR; addr < PD_ADDR + directories * PAGE; addr += PAGE) entry(LOW_PT_ADDR, addr / PAGE, BigInt(addr) | P | RW | nx);
  entry(LOW_PT_ADDR, STUBS_ADDR / PAGE, BigInt(STUBS_ADDR) | P | US);
  entry(LOW_PT_ADDR, RING0_STUBS_ADDR / PAGE, BigInt(RING0_STUBS_ADDR) | P);
  entry(LOW_PT_ADDR, VVAR_ADDR / PAGE, BigInt(VVAR_ADDR) | P | US | nx);
  entry(LOW_PT_ADDR, VDSO_ADDR / PAGE, BigInt(VDSO_ADDR) | P | US);
  for (const table of fine.values()) entry(LOW_PT_ADDR, table / PAGE, BigInt(table) | P | RW | nx);
}

const MAX_IMAGE_TABLES = (USER_START - IMAGE_PT_ADDR) / PAGE;

/** The pages that hold page tables (the CPU sets accessed and dirty bits in them as it walks them). */
export function pageTableRanges(addressSpace: number): Array<[number, number]> {
  return [[PML4_ADDR, PD_ADDR + pageDirectoryCount(addressSpace) * PAGE], [IMAGE_PT_ADDR, USER_START]];
}
