/**
 * Checked access to guest-physical memory from the host.
 *
 * The guest address space is identity-mapped (virtual = physical), so a guest
 * pointer is an offset into guest memory. The host sees that memory through
 * views of at most 2 GiB, one starting at each GiB, made when first needed
 * (HostWindows): V8 cannot make one view larger than 4 GiB over foreign memory,
 * and each view counts as memory V8 answers with garbage collections, so a
 * 64 GiB address space of which a program uses two corners costs two views.
 * Any range of up to 1 GiB (WINDOW) lies within one view. Every pointer and length the guest hands
 * us goes through `check()` first: a bad one becomes `GuestFault` (the syscall
 * layer turns it into -EFAULT) and never a host exception or an out-of-bounds view.
 * In a sparse address space, a range that reaches a piece of memory with no KVM
 * memory slot yet (nothing mapped there, see MEMORY_SLOT_SIZE) is bad too: the
 * guest cannot reach it either, and the host must not commit memory there for it.
 *
 * Only user memory is guest memory here: the first 2 MiB hold the hypervisor's
 * own pages (page tables, GDT/IDT/TSS, the entry stubs, the vvar page), which the
 * guest cannot write itself, and a syscall must not write them for it (a read()
 * into the syscall stub would hand the guest ring 0 on hardware KVM). The host
 * builds those pages through `bytes`, never through the checked accessors.
 *
 * Host writes into guest memory are reported to `onHostWrite` (page granularity):
 * KVM's dirty log only sees writes made by the vCPU, and a fork's reset must also
 * undo what the host placed there (request bodies, read() buffers).
 */
import { MEMORY_SLOT_SIZE, USER_START } from './layout.js';
import { pointerAt, viewOf } from '../host/libc.js';

export const PAGE_SIZE = 4096;
/** The longest range the host sees as one array: any range up to this long lies within one view. */
export const WINDOW = 2 ** 30;
const VIEW_SPAN = 2 * WINDOW;

export class GuestFault extends Error {
  readonly address: number;
  readonly length: number;
  constructor(address: number, length: number) {
    super(`bad guest address 0x${address.toString(16)} (+${length})`);
    this.name = 'GuestFault';
    this.address = address;
    this.length = length;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: false });
const latin1 = new TextDecoder('latin1');

/**
 * `size` bytes of host memory at `hostBase`, seen through views of at most VIEW_SPAN bytes, the k-th
 * starting at k × WINDOW, each made when first needed. No checks: GuestMemory checks guest pointers,
 * and the host's own uses (the system area, a reset's copies) know their ranges.
 */
export class HostWindows {
  readonly hostBase: bigint;
  readonly size: number;
  private readonly arrays: Array<Uint8Array | undefined> = [];
  private readonly views: Array<DataView | undefined> = [];

  constructor(hostBase: bigint, size: number) {
    this.hostBase = hostBase;
    this.size = size;
  }

  /** Windows on a buffer of our own (at most one view long): unit tests' guest memory. */
  static over(buffer: ArrayBuffer, hostBase = 0n): HostWindows {
    if (buffer.byteLength > VIEW_SPAN) throw new RangeError('HostWindows.over: a buffer longer than one view');
    const w = new HostWindows(hostBase, buffer.byteLength);
    w.arrays[0] = new Uint8Array(buffer);
    w.views[0] = new DataView(buffer);
    return w;
  }

  /** The bytes [addr, addr+len), len at most WINDOW, as a subarray of one view (no copy). */
  span(addr: number, len: number): Uint8Array {
    const k = (addr / WINDOW) | 0;
    const at = addr - k * WINDOW;
    return (this.arrays[k] ?? this.make(k)).subarray(at, at + len);
  }

  /** The view that holds `addr`; it starts at the multiple of WINDOW at or below it. */
  dataView(addr: number): DataView {
    const k = (addr / WINDOW) | 0;
    if (this.views[k] === undefined) this.make(k);
    return this.views[k]!;
  }

  private make(k: number): Uint8Array {
    const start = k * WINDOW;
    const len = Math.min(VIEW_SPAN, this.size - start);
    const buffer = viewOf(pointerAt(this.hostBase + BigInt(start)), len);
    const array = new Uint8Array(buffer);
    this.arrays[k] = array;
    this.views[k] = new DataView(buffer);
    return array;
  }
}

/** Memory at a fixed high address (the VMOD's `remapping`): guest addresses [virt, virt+size) are [phys, phys+size). */
export interface Remap {
  virt: number;
  phys: number;
  size: number;
  executable: boolean;
}

export class GuestMemory {
  /** The identity-mapped guest addresses end here (guest-physical memory too, but for remaps' aliases). */
  readonly size: number;
  /** Host address of guest-physical 0, for passing guest buffers straight to libc. */
  readonly hostBase: bigint;
  /** Lowest guest address a guest pointer may name: the first byte of user memory. */
  readonly lowest: number;
  /**
   * In a sparse address space, which MEMORY_SLOT_SIZE pieces have a memory slot (1) and which not (0);
   * null where every piece has one.
   */
  readonly backed: Uint8Array | null;
  /** Guest memory above `size`, at addresses of the program's choosing, sorted by address. */
  readonly remaps: readonly Remap[];
  onHostWrite: ((firstPage: number, pageCount: number) => void) | null = null;
  private readonly windows: HostWindows;

  constructor(windows: HostWindows, lowest = USER_START, backed: Uint8Array | null = null, remaps: readonly Remap[] = []) {
    this.windows = windows;
    this.size = windows.size;
    this.hostBase = windows.hostBase;
    this.lowest = lowest;
    this.backed = backed;
    this.remaps = remaps;
  }

  /**
   * The guest-physical address of the guest range [addr, addr+len), or -1 when it is not all guest
   * memory: below `lowest`, in a piece with no memory slot, or past the end, unless in one remap.
   */
  translate(addr: number, len: number): number {
    const end = addr + len;
    if (addr >= this.lowest && len >= 0 && end <= this.size) {
      return this.backed === null || len === 0 || this.backedEnd(addr) >= end ? addr : -1;
    }
    if (!(addr >= this.lowest && len >= 0 && Number.isSafeInteger(end))) return -1;
    for (const r of this.remaps) if (addr >= r.virt && end <= r.virt + r.size) return r.phys + (addr - r.virt);
    return -1;
  }

  /** Whether [addr, addr+len) is guest memory the host may read and write for the guest. */
  contains(addr: number, len: number): boolean {
    return this.translate(addr, len) >= 0;
  }

  /** How many bytes from `addr` on are guest memory in one piece the host can see at once (0: none). */
  extent(addr: number): number {
    let end: number;
    if (addr >= this.lowest && addr < this.size) {
      end = this.backedEnd(addr);
    } else {
      const r = this.remaps.find((m) => addr >= m.virt && addr < m.virt + m.size);
      end = r ? r.virt + r.size : addr;
    }
    return Math.min(Math.max(0, end - addr), WINDOW);
  }

  /** The guest-physical address of [addr, addr+len); GuestFault unless it is all guest memory. */
  check(addr: number, len: number): number {
    const at = this.translate(addr, len);
    if (at < 0) throw new GuestFault(addr, len);
    return at;
  }

  /** Where the run of backed pieces that holds `addr` ends (addr itself when its piece has no slot). */
  backedEnd(addr: number): number {
    const backed = this.backed;
    if (backed === null) return this.size;
    let piece = Math.floor(addr / MEMORY_SLOT_SIZE);
    if (!backed[piece]) return addr;
    while (piece < backed.length && backed[piece]) piece++;
    return Math.min(this.size, piece * MEMORY_SLOT_SIZE);
  }

  /**
   * The guest-physical bytes [addr, addr+len) without any check or record, len at most WINDOW: for
   * the host's own pages (the system area below USER_START) and for a reset's copies.
   */
  span(addr: number, len: number): Uint8Array {
    return this.windows.span(addr, len);
  }

  /** A read-only window on guest memory (no copy); GuestFault past WINDOW bytes. */
  read(addr: number, len: number): Uint8Array {
    if (len > WINDOW) throw new GuestFault(addr, len);
    return this.windows.span(this.check(addr, len), len);
  }

  /** A window the host is about to write into: recorded as written. */
  write(addr: number, len: number): Uint8Array {
    if (len > WINDOW) throw new GuestFault(addr, len);
    const at = this.check(addr, len);
    this.recordWrite(at, len);
    return this.windows.span(at, len);
  }

  /** Copies `data` into guest memory at `addr`, in pieces where it is longer than one window. */
  put(addr: number, data: Uint8Array): void {
    const at = this.check(addr, data.length);
    for (let done = 0; done < data.length; done += WINDOW) {
      const len = Math.min(WINDOW, data.length - done);
      this.recordWrite(at + done, len);
      this.windows.span(at + done, len).set(data.subarray(done, done + len));
    }
  }

  /** Sets [addr, addr+len) to `value`, in pieces where it is longer than one window. */
  fill(addr: number, len: number, value = 0): void {
    const at = this.check(addr, len);
    for (let done = 0; done < len; done += WINDOW) {
      const n = Math.min(WINDOW, len - done);
      this.recordWrite(at + done, n);
      this.windows.span(at + done, n).fill(value);
    }
  }

  /** Reports a host write to guest-physical [at, at+len) (page granularity) for the reset. */
  recordWrite(at: number, len: number): void {
    if (this.onHostWrite && len > 0) {
      const first = Math.floor(at / PAGE_SIZE);
      this.onHostWrite(first, Math.floor((at + len - 1) / PAGE_SIZE) - first + 1);
    }
  }

  /** Host address for a checked guest range, to hand to a libc call. */
  hostAddress(addr: number, len: number): bigint {
    return this.hostBase + BigInt(this.check(addr, len));
  }

  u8(addr: number): number {
    const at = this.check(addr, 1);
    return this.windows.dataView(at).getUint8(offset(at));
  }
  u16(addr: number): number {
    const at = this.check(addr, 2);
    return this.windows.dataView(at).getUint16(offset(at), true);
  }
  u32(addr: number): number {
    const at = this.check(addr, 4);
    return this.windows.dataView(at).getUint32(offset(at), true);
  }
  i32(addr: number): number {
    const at = this.check(addr, 4);
    return this.windows.dataView(at).getInt32(offset(at), true);
  }
  f32(addr: number): number {
    const at = this.check(addr, 4);
    return this.windows.dataView(at).getFloat32(offset(at), true);
  }
  /** A 64-bit value as a Number: exact below 2^53, which covers every guest address. */
  u64(addr: number): number {
    const at = this.check(addr, 8);
    const view = this.windows.dataView(at);
    const o = offset(at);
    return view.getUint32(o, true) + view.getUint32(o + 4, true) * 0x1_0000_0000;
  }
  i64(addr: number): number {
    const at = this.check(addr, 8);
    const view = this.windows.dataView(at);
    const o = offset(at);
    return view.getUint32(o, true) + view.getInt32(o + 4, true) * 0x1_0000_0000;
  }
  /** A 64-bit value whole, as a bigint (masks, epoll's data word). */
  u64n(addr: number): bigint {
    const at = this.check(addr, 8);
    return this.windows.dataView(at).getBigUint64(offset(at), true);
  }
  setU16(addr: number, value: number): void {
    const at = this.writable(addr, 2);
    this.windows.dataView(at).setUint16(offset(at), value & 0xffff, true);
  }
  setU32(addr: number, value: number): void {
    const at = this.writable(addr, 4);
    this.windows.dataView(at).setUint32(offset(at), value >>> 0, true);
  }
  setI32(addr: number, value: number): void {
    const at = this.writable(addr, 4);
    this.windows.dataView(at).setInt32(offset(at), value, true);
  }
  /** Stores a Number (or bigint) as a 64-bit little-endian integer; negatives in two's complement. */
  setU64(addr: number, value: number | bigint): void {
    const at = this.writable(addr, 8);
    this.windows.dataView(at).setBigUint64(offset(at), BigInt.asUintN(64, BigInt(value)), true);
  }

  /** The guest-physical address of [addr, addr+len), checked and recorded as written. */
  private writable(addr: number, len: number): number {
    const at = this.check(addr, len);
    this.recordWrite(at, len);
    return at;
  }

  /**
   * A NUL-terminated string of at most `max` bytes (the NUL not counted).
   * Throws GuestFault when it runs off guest memory, and returns null when no NUL
   * is found within `max` (callers answer -ENAMETOOLONG or -EFAULT).
   */
  cString(addr: number, max = 4096, encoding: 'utf8' | 'latin1' = 'utf8'): string | null {
    const bytes = this.cBytes(addr, max);
    return bytes && (encoding === 'utf8' ? utf8 : latin1).decode(bytes);
  }

  /** Raw bytes of a NUL-terminated string (without the NUL), or null as above. */
  cBytes(addr: number, max = 4096): Uint8Array | null {
    const at = this.check(addr, 1);
    const len = Math.min(this.extent(addr), max + 1);
    const nul = this.windows.span(at, len).indexOf(0);
    if (nul < 0) {
      if (len < max + 1) throw new GuestFault(addr, max);
      return null;
    }
    return this.windows.span(at, nul);
  }
}

/** Where guest-physical `at` lies in its view (HostWindows.dataView's). */
const offset = (at: number): number => at - ((at / WINDOW) | 0) * WINDOW;
