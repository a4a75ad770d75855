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
 * Built once into guest memory before the first run. mmap/munmap/mprotect are
 * bookkeeping in the host (docs/ARCHITECTURE.md, "Memory and mappings"), except
 * for one bit: a file mapped with PROT_EXEC (a shared library) is made executable
 * afterwards, and no-execute again when it goes (setUserExecutable).
 */
import {
  EXCEPTION_STACK_TOP, GDT_ADDR, HUGE_PAGE, IDT_ADDR, IMAGE_PT_ADDR, LOW_PT_ADDR, PAGE, PD_ADDR, PDPT_ADDR, PML4_ADDR, REMAP_TABLES_ADDR, RING0_STUBS_ADDR, STUBS_ADDR, TSS_ADDR,
  USER_START, VDSO_ADDR, VVAR_ADDR, pageDirectoryCount,
} from './layout.js';
import type { Remap } from './guest-memory.js';

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
export function buildPageTables(memory: Uint8Array, addressSpace: number, holes: Array<[number, number]>, exec: ExecutePolicy, remaps: readonly Remap[] = []): void {
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

  memory.fill(0, PML4_ADDR, VVAR_ADDR);
  memory.fill(0, PD_ADDR, PD_ADDR + directories * PAGE);
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
  mapRemaps(view, remaps, exec.nx ? NX : 0n, exec.executable === 'all');
  // The first 2 MiB in 4 KiB pages: the user bit must be set at every level
  // for the one user page below it (the stubs) to be reachable from ring 3.
  entry(PD_ADDR, 0, BigInt(LOW_PT_ADDR) | P | RW | US);
  const supervisor = [GDT_ADDR, TSS_ADDR, IDT_ADDR, EXCEPTION_STACK_TOP - 2 * PAGE, EXCEPTION_STACK_TOP - PAGE];
  for (const addr of supervisor) entry(LOW_PT_ADDR, addr / PAGE, BigInt(addr) | P | RW | nx);
  for (const [start, end] of pageTableRanges(addressSpace)) {
    if (start < IMAGE_PT_ADDR) for (let addr = start; addr < end; addr += PAGE) entry(LOW_PT_ADDR, addr / PAGE, BigInt(addr) | P | RW | nx);
  }
  entry(LOW_PT_ADDR, STUBS_ADDR / PAGE, BigInt(STUBS_ADDR) | P | US);
  entry(LOW_PT_ADDR, RING0_STUBS_ADDR / PAGE, BigInt(RING0_STUBS_ADDR) | P);
  entry(LOW_PT_ADDR, VVAR_ADDR / PAGE, BigInt(VVAR_ADDR) | P | US | nx);
  entry(LOW_PT_ADDR, VDSO_ADDR / PAGE, BigInt(VDSO_ADDR) | P | US);
  for (const table of fine.values()) entry(LOW_PT_ADDR, table / PAGE, BigInt(table) | P | RW | nx);
}

const MAX_IMAGE_TABLES = (USER_START - IMAGE_PT_ADDR) / PAGE;

const GiB = 2 ** 30;
const L4_SPAN = 2 ** 39;

/**
 * How many table pages `remaps` need: a page directory per GiB they reach, and a PDPT per 512 GiB
 * other than the first (whose PDPT maps the address space too). They must fit between
 * REMAP_TABLES_ADDR and VVAR_ADDR.
 */
export function remapTablePages(remaps: readonly Pick<Remap, 'virt' | 'size'>[]): number {
  const directories = new Set<number>();
  const pdpts = new Set<number>();
  for (const r of remaps) {
    for (let g = Math.floor(r.virt / GiB); g * GiB < r.virt + r.size; g++) {
      directories.add(g);
      if (g * GiB >= L4_SPAN) pdpts.add(Math.floor((g * GiB) / L4_SPAN));
    }
  }
  return directories.size + pdpts.size;
}

export const REMAP_TABLE_ROOM = (VVAR_ADDR - REMAP_TABLES_ADDR) / PAGE;

/** Maps each remap's 2 MiB pages, with the tables it needs from REMAP_TABLES_ADDR on (zeroed before). */
function mapRemaps(view: DataView, remaps: readonly Remap[], nx: bigint, allExecutable: boolean): void {
  let next = REMAP_TABLES_ADDR;
  /** The table an entry points to, made when missing. */
  const tableAt = (at: number): number => {
    const e = view.getBigUint64(at, true);
    if (e & P) return Number(e & 0x000f_ffff_ffff_f000n);
    if (next >= VVAR_ADDR) throw new RangeError('remaps need more page tables than there is room for');
    const table = next;
    next += PAGE;
    view.setBigUint64(at, BigInt(table) | P | RW | US, true);
    return table;
  };
  for (const r of remaps) {
    for (let at = 0; at < r.size; at += HUGE_PAGE) {
      const va = r.virt + at;
      const pdpt = tableAt(PML4_ADDR + Math.floor(va / L4_SPAN) * 8);
      const pd = tableAt(pdpt + (Math.floor(va / GiB) % 512) * 8);
      view.setBigUint64(pd + (Math.floor(va / HUGE_PAGE) % 512) * 8,
        BigInt(r.phys + at) | P | RW | US | PS | (r.executable || allExecutable ? 0n : nx), true);
    }
  }
}

/** The pages that hold page tables (the CPU sets accessed and dirty bits in them as it walks them). */
export function pageTableRanges(addressSpace: number): Array<[number, number]> {
  return [[PML4_ADDR, VVAR_ADDR], [PD_ADDR, PD_ADDR + pageDirectoryCount(addressSpace) * PAGE], [IMAGE_PT_ADDR, USER_START]];
}

/**
 * Sets or clears no-execute on the user pages [start, end) (page aligned) after the first run: a
 * library the guest maps with PROT_EXEC, or an mprotect/munmap that takes it away. `executable`
 * (sorted, disjoint ranges) are the pages to make executable, `untouched` those to leave as they
 * are (the ELF images, made so before the first run); the rest become no-execute. Every table byte it
 * changes goes through `record` (a host write a request VM's reset must undo). A 2 MiB page that must
 * hold both gets a page table of its own from the free ones between IMAGE_PT_ADDR and USER_START; a
 * 2 MiB page mapped executable whole (past the room for tables, or `executable: 'all'`) is left so.
 * Returns whether any entry changed (the caller must then drop the translations the CPU or the
 * hypervisor derived from the old ones), or null when no table was free to make a page executable.
 */
export function setUserExecutable(memory: Uint8Array, addressSpace: number, start: number, end: number,
  ranges: { executable: Array<[number, number]>; untouched: Array<[number, number]> }, record: (addr: number, len: number) => void): boolean | null {
  const within = (list: Array<[number, number]>, from: number, to: number): boolean => list.some(([s, e]) => s < to && e > from);
  const view = new DataView(memory.buffer, memory.byteOffset, memory.byteLength);
  const read = (at: number): bigint => view.getBigUint64(at, true);
  const write = (at: number, value: bigint): void => {
    record(at, 8);
    view.setBigUint64(at, value, true);
  };
  const frame = (e: bigint): number => Number(e & 0x000f_ffff_ffff_f000n);
  let free: number[] | null = null;
  let changed = false;
  for (let huge = start - (start % HUGE_PAGE); huge < end && huge < addressSpace; huge += HUGE_PAGE) {
    if (huge < USER_START) continue;
    const pdEntry = PD_ADDR + (huge / HUGE_PAGE) * 8;
    const pde = read(pdEntry);
    if ((pde & P) === 0n) continue;
    const from = Math.max(start, huge);
    const to = Math.min(end, huge + HUGE_PAGE);
    if (pde & PS) {
      if ((pde & NX) === 0n || !within(ranges.executable, from, to)) continue;
      free ??= freeTables(view, addressSpace);
      const table = free.shift();
      if (table === undefined) return null;
      for (let j = 0; j < 512; j++) write(table + j * 8, BigInt(huge + j * PAGE) | (pde & (P | RW | US | NX)));
      write(LOW_PT_ADDR + (table / PAGE) * 8, BigInt(table) | P | RW | NX);
      write(pdEntry, BigInt(table) | P | RW | US);
      changed = true;
    }
    const table = frame(read(pdEntry));
    for (let page = from; page < to; page += PAGE) {
      const at = table + ((page - huge) / PAGE) * 8;
      if (within(ranges.untouched, page, page + PAGE)) continue;
      const pte = read(at);
      const want = within(ranges.executable, page, page + PAGE) ? pte & ~NX : pte | NX;
      if (want !== pte) {
        write(at, want);
        changed = true;
      }
    }
  }
  return changed;
}

/** The page-table pages below USER_START that no page directory entry uses. */
function freeTables(view: DataView, addressSpace: number): number[] {
  const used = new Set<number>();
  const entries = Math.ceil(addressSpace / HUGE_PAGE);
  for (let i = USER_START / HUGE_PAGE; i < entries; i++) {
    const pde = view.getBigUint64(PD_ADDR + i * 8, true);
    if ((pde & P) !== 0n && (pde & PS) === 0n) used.add(Number(pde & 0x000f_ffff_ffff_f000n));
  }
  const free: number[] = [];
  for (let table = IMAGE_PT_ADDR; table < USER_START; table += PAGE) if (!used.has(table)) free.push(table);
  return free;
}

/**
 * Whether the page-table page at `page` in `fork` differs from `master` only as setUserExecutable and
 * the CPU change tables: accessed and dirty bits, no-execute bits of user pages, a 2 MiB page split
 * into a table below USER_START whose entries map the same 2 MiB one to one, with the same user
 * permissions, and that table's own supervisor entry. Anything else (a system page made user, a user
 * page mapped somewhere else) is a write to the hypervisor's pages that nothing may make.
 */
export function onlyExecutableEdits(fork: Uint8Array, master: Uint8Array, page: number, addressSpace: number): boolean {
  const forkView = new DataView(fork.buffer, fork.byteOffset, fork.byteLength);
  const masterView = new DataView(master.buffer, master.byteOffset, master.byteLength);
  const pdEnd = PD_ADDR + pageDirectoryCount(addressSpace) * PAGE;
  const USER = P | RW | US;
  const frame = (e: bigint): number => Number(e & 0x000f_ffff_ffff_f000n);
  const isTable = (addr: number): boolean => addr >= IMAGE_PT_ADDR && addr < USER_START && addr % PAGE === 0;
  /** The 2 MiB page a table serves in the fork, or -1. */
  const servedBy = (table: number): number => {
    for (let at = PD_ADDR + (USER_START / HUGE_PAGE) * 8; at < pdEnd; at += 8) {
      const pde = forkView.getBigUint64(at, true);
      if ((pde & (P | PS)) === P && frame(pde) === table) return ((at - PD_ADDR) / 8) * HUGE_PAGE;
    }
    return -1;
  };
  /** Every entry of `table` maps its page of the 2 MiB at `base`, as a user page. */
  const identity = (table: number, base: number): boolean => {
    for (let j = 0; j < 512; j++) {
      const e = forkView.getBigUint64(table + j * 8, true);
      if (((e & ~(0x000f_ffff_ffff_f000n | PTE_ACCESSED_DIRTY)) & ~NX) !== USER || frame(e) !== base + j * PAGE) return false;
    }
    return true;
  };
  const served = isTable(page) ? servedBy(page) : -1;
  for (let at = page; at < page + PAGE; at += 8) {
    const f = forkView.getBigUint64(at, true);
    const m = masterView.getBigUint64(at, true);
    if (f === m || (f & ~(NX | PTE_ACCESSED_DIRTY)) === (m & ~(NX | PTE_ACCESSED_DIRTY))) continue;
    const flags = f & ~(0x000f_ffff_ffff_f000n | PTE_ACCESSED_DIRTY);
    if (at >= PD_ADDR && at < pdEnd && (m & PS) !== 0n && flags === USER && isTable(frame(f)) &&
        served === -1 && servedBy(frame(f)) === ((at - PD_ADDR) / 8) * HUGE_PAGE && identity(frame(f), ((at - PD_ADDR) / 8) * HUGE_PAGE)) continue;
    if (served >= 0 && (flags & ~NX) === USER && frame(f) === served + ((at - page) / 8) * PAGE) continue;
    if (page === LOW_PT_ADDR && isTable((at - LOW_PT_ADDR) / 8 * PAGE) && (f & ~PTE_ACCESSED_DIRTY) === (BigInt((at - LOW_PT_ADDR) / 8 * PAGE) | P | RW | NX)) continue;
    return false;
  }
  return true;
}

/** A page-table entry's accessed (5) and dirty (6) bits, which the CPU sets as it walks the tables. */
const PTE_ACCESSED_DIRTY = 0x60n;
