/**
 * The guest address space, as one table. Guest virtual = guest physical
 * (identity mapping), built once before the first KVM_RUN; only no-execute bits
 * change later, each change followed by a flush, since on PVM the guest would not
 * see host edits of page tables otherwise (docs/PLATFORMS.md, "PVM and page tables").
 *
 *   0x000000  null page                      not present: NULL dereferences fault
 *   0x001000  GDT                            supervisor
 *   0x002000  TSS                            supervisor
 *   0x003000  IDT                            supervisor
 *   0x004000  ring-3 stubs: PVM's syscall     user read + execute (on PVM `syscall` stays in ring 3),
 *             entry, request entry, handler return
 *   0x005000  exception stack (2 pages)      supervisor, top at 0x007000 (TSS.rsp0 and IST1)
 *   0x007000  ring-0 stubs: hardware syscall supervisor read + execute (so that SMEP can be on)
 *             entry (sysretq), exceptions
 *   0x008000  PML4, 0x9000 PDPT, 0xa000 PT   supervisor: page tables
 *   0x00b000  page tables of the remaps      supervisor: a PDPT and page directories for memory at
 *             (4 pages at most)              fixed high addresses (remapping; page-tables.ts)
 *   0x00f000  vvar: the guest's clock, the   user read-only (vdso.ts)
 *             vCPU's number (GS base: 0xf100)
 *   0x010000  vDSO: clock reads without exits user read + execute (vdso.ts)
 *   0x011000  page directories (one per GiB) supervisor, 64 at most: up to 0x051000
 *   0x051000  page tables for the 2 MiB      supervisor: 4 KiB pages where code is, so that only the
 *             pages that hold code           executable segments' pages are executable (page-tables.ts)
 *   …         rest of the first 2 MiB        not present
 *   0x200000  user memory: ELF image, brk heap, mmap area   user RWX, 2 MiB pages
 *   …         2 MiB guard, not present; then the 8 MiB stack ending at the top
 *   addressSpace                             end of guest memory
 */
export const PAGE = 0x1000;
export const HUGE_PAGE = 0x20_0000;

export const GDT_ADDR = 0x1000;
export const TSS_ADDR = 0x2000;
export const IDT_ADDR = 0x3000;
export const STUBS_ADDR = 0x4000;
export const EXCEPTION_STACK_TOP = 0x7000;
export const EXCEPTION_STACK_SIZE = 2 * 0x1000;
export const RING0_STUBS_ADDR = 0x7000;
export const PML4_ADDR = 0x8000;
export const PDPT_ADDR = 0x9000;
export const LOW_PT_ADDR = 0xa000;
/** The page directories, one per GiB of address space, contiguous (MAX_ADDRESS_SPACE bounds them). */
export const PD_ADDR = 0x11000;
/** Page tables of the remaps (memory at fixed high addresses), up to VVAR_ADDR. */
export const REMAP_TABLES_ADDR = 0xb000;
/** The vDSO's data page (kvmclock's pvclock and tskvm's clock offsets), the page right below the vDSO. */
export const VVAR_ADDR = 0xf000;
export const VDSO_ADDR = 0x10000;
/** Page tables of the 2 MiB pages that hold executable segments, one page each, up to USER_START. */
export const IMAGE_PT_ADDR = 0x51000;
/** Everything below this belongs to the hypervisor; guest programs live above. */
export const USER_START = HUGE_PAGE;

/**
 * The largest guest address space: 64 GiB, its page directories filling PD_ADDR to IMAGE_PT_ADDR.
 * A large address space costs little where the program does not use it: KVM memory slots exist only
 * for the 256 MiB pieces that hold mappings (MEMORY_SLOT_SIZE), and the host sees guest memory
 * through views of at most 2 GiB made when first needed (guest-memory.ts), never one view of it all.
 */
export const MAX_ADDRESS_SPACE = ((IMAGE_PT_ADDR - PD_ADDR) / PAGE) * 0x4000_0000;
export const MIN_ADDRESS_SPACE = 16 << 20;

/**
 * Guest memory is given to KVM in slots of this size, each covering its piece of the address space.
 * Where the address space is the program's memory (the default), every piece has its slot from the
 * start; in a larger, sparse one (`addressSpaceMiB`), a piece gets its slot when a mapping first
 * reaches into it, so that KVM's bookkeeping (its reverse map, the dirty log) grows with what is used.
 */
export const MEMORY_SLOT_SIZE = 256 << 20;

/** Default size of the initial stack region (RLIMIT_STACK). */
export const STACK_SIZE = 8 << 20;
/** Unmapped gap below the stack, so a stack overflow faults as it does natively. */
export const STACK_GUARD = HUGE_PAGE;

/** I/O ports the guest-side stubs use to reach the host. */
export const PORT_HYPERCALL = 0x0; // `out %eax, $0` from guest code: the TinyKVM guest API (docs/GUEST_ABI.md)
export const PORT_SYSCALL = 0x1; // the LSTAR stub: a Linux syscall, number in rax
export const PORT_SEGMENT_BASES = 0x2; // `out %al, $2` from the request entry stub: FS/GS bases back after it cleared their selectors
export const PORT_EXCEPTION_BASE = 0x80; // 0x80 + vector: a CPU exception reported by its IDT stub

export function pageDirectoryCount(addressSpace: number): number {
  return Math.ceil(addressSpace / 0x4000_0000);
}

export const pageAlignUp = (x: number): number => Math.ceil(x / PAGE) * PAGE;
