/**
 * Identity-mapped 4-level page tables for the whole address space.
 *
 *   PML4[0] → PDPT[g] → PD g (1 GiB each) → 2 MiB pages, user RW
 *                        PD 0[0] → PT (4 KiB pages) for the first 2 MiB, where
 *                        the hypervisor's pages live with their own permissions
 *
 * No-execute (where the CPU has NX): in the first 2 MiB everything but the stubs
 * and the vDSO; in user memory every 2 MiB page that holds no executable ELF
 * segment, so the stack, the mmap area and the heap beyond the image cannot be
 * run (the `executable_heap` option lifts it, for JITs). The granularity is the
 * 2 MiB page: data that shares one with code stays executable.
 *
 * Built once into guest memory before the first run. The guest never needs to
 * change them: mmap/munmap/mprotect are bookkeeping in the host (DESIGN.md #4).
 */
import {
  EXCEPTION_STACK_TOP, GDT_ADDR, HUGE_PAGE, IDT_ADDR, LOW_PT_ADDR, PAGE, PD_ADDR, PDPT_ADDR, PML4_ADDR, RING0_STUBS_ADDR, STUBS_ADDR, TSS_ADDR,
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
  const userNx = (addr: number): bigint =>
    exec.executable === 'all' || exec.executable.some(([start, end]) => start < addr + HUGE_PAGE && end > addr) ? 0n : nx;
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
      if (addr >= USER_START && !inHole(addr)) entry(pd, i, BigInt(addr) | P | RW | US | PS | userNx(addr));
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
}
