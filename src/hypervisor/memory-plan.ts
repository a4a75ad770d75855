/**
 * Where a program's memory goes, from its options: the address space, the remaps, the shared
 * region, and whether the space is sparse (docs/ARCHITECTURE.md, "Memory slots, and address spaces
 * past 4 GiB"). Guest-physical memory is laid out as
 *
 *   0 ── the address space (identity-mapped) ── A ── remaps' memory ── A+R ── shared region ── size
 *
 * and each remap's memory is seen at its own fixed high address as well (page-tables.ts).
 */
import { TskvmError } from '../errors.js';
import type { Remap } from '../paging/guest-memory.js';
import { HUGE_PAGE, MAX_ADDRESS_SPACE, MEMORY_SLOT_SIZE, MIN_ADDRESS_SPACE, pageDirectoryCount } from '../paging/layout.js';
import { REMAP_TABLE_ROOM, remapTablePages } from '../paging/page-tables.js';

/** Memory the program asks to see at a fixed address (the VMOD's `remapping`, `executable_remapping`). */
export interface RemapOption {
  /** A guest-virtual address, 2 MiB aligned, above the address space (and its shared region). */
  address: number;
  sizeMiB: number;
  /** Code may run there (executable_remapping); otherwise it is no-execute, as the heap is. */
  executable?: boolean;
}

export interface MemoryPlan {
  /** The program's memory limit, bytes (what get_meminfo reports). */
  maxMemory: number;
  /** The identity-mapped address space the program's own mappings live in. */
  addressSpace: number;
  /** Larger than maxMemory: pieces get memory slots as mappings reach them. */
  sparse: boolean;
  /** Sparse: how many pieces of main memory may have slots. */
  pieceBudget?: number;
  remaps: Remap[];
  /** Bytes of guest-physical memory below the shared region: the address space and the remaps' memory. */
  mainSize: number;
  sharedSize: number;
  size: number;
}

const GiB = 2 ** 30;
/** The top of x86-64 user space (4-level paging). */
const USER_TOP = 2 ** 47;

const configError = (message: string): TskvmError => new TskvmError('TSKVM_ERR_CONFIG', message);
const huge = (bytes: number): number => Math.ceil(bytes / HUGE_PAGE) * HUGE_PAGE;

export function planMemory(o: { maxMemoryMiB: number; addressSpaceMiB?: number; sharedMemoryMiB?: number; remaps?: RemapOption[] }): MemoryPlan {
  const maxMemory = addressSpaceSize(o.maxMemoryMiB, 'max memory');
  const requested = o.addressSpaceMiB === undefined ? maxMemory : addressSpaceSize(o.addressSpaceMiB, 'the address space');
  if (requested < maxMemory) throw configError(`the address space (${o.addressSpaceMiB} MiB) must be at least max memory (${maxMemory / 2 ** 20} MiB)`);
  const sparse = requested > maxMemory;
  // A sparse address space is made of whole pieces (memory slots), so its top piece is all the program's.
  const addressSpace = sparse ? Math.ceil(requested / MEMORY_SLOT_SIZE) * MEMORY_SLOT_SIZE : maxMemory;

  const asked = [...(o.remaps ?? [])].sort((a, b) => a.address - b.address);
  let remapped = 0;
  const remaps: Remap[] = asked.map((r) => {
    if (!(Number.isSafeInteger(r.address) && r.address % HUGE_PAGE === 0 && r.sizeMiB > 0 && Number.isFinite(r.sizeMiB))) {
      throw configError(`a remapping needs a 2 MiB-aligned address and a size (got 0x${r.address.toString(16)}, ${r.sizeMiB} MiB)`);
    }
    const remap = { virt: r.address, phys: addressSpace + remapped, size: huge(r.sizeMiB * 2 ** 20), executable: r.executable ?? false };
    remapped += remap.size;
    return remap;
  });
  const mainSize = addressSpace + remapped;
  const sharedSize = huge((o.sharedMemoryMiB ?? 0) * 2 ** 20);
  const size = mainSize + sharedSize;
  if (size > MAX_ADDRESS_SPACE) {
    throw configError(`the address space, remappings and shared memory must stay within ${MAX_ADDRESS_SPACE / 2 ** 20} MiB (got ${size / 2 ** 20} MiB)`);
  }
  // Above every page directory of the identity map, below the top of user space, apart.
  const lowest = pageDirectoryCount(size) * GiB;
  remaps.forEach((r, i) => {
    if (r.virt < lowest || r.virt + r.size > USER_TOP) {
      throw configError(`a remapping at 0x${r.virt.toString(16)} must lie between 0x${lowest.toString(16)} (above the address space) and 0x${USER_TOP.toString(16)}`);
    }
    const before = remaps[i - 1];
    if (before && before.virt + before.size > r.virt) throw configError(`remappings at 0x${before.virt.toString(16)} and 0x${r.virt.toString(16)} overlap`);
  });
  const tables = remapTablePages(remaps);
  if (tables > REMAP_TABLE_ROOM) {
    throw configError(`the remappings reach too many GiBs: their page tables take ${tables} pages, and there is room for ${REMAP_TABLE_ROOM}`);
  }
  // Pieces: as many as the memory limit fills, two more for where mappings straddle pieces (brk's end,
  // the mmap area's start), and the remaps' own (they start at a piece: the sparse space is whole pieces).
  const pieceBudget = sparse ? Math.ceil(maxMemory / MEMORY_SLOT_SIZE) + 2 + Math.ceil(remapped / MEMORY_SLOT_SIZE) : undefined;
  return { maxMemory, addressSpace, sparse, ...(pieceBudget === undefined ? {} : { pieceBudget }), remaps, mainSize, sharedSize, size };
}

/** Bytes for a size in MiB: whole 2 MiB pages, within what the page tables can map. */
function addressSpaceSize(mib: number, what: string): number {
  const bytes = huge(mib * 2 ** 20);
  if (!Number.isFinite(bytes) || bytes < MIN_ADDRESS_SPACE || bytes > MAX_ADDRESS_SPACE) {
    throw configError(`${what} must be between ${MIN_ADDRESS_SPACE >> 20} and ${MAX_ADDRESS_SPACE / 2 ** 20} MiB (got ${mib})`);
  }
  return bytes;
}
