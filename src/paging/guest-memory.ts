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

export class GuestMemory {
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
  onHostWrite: ((firstPage: number, pageCount: number) => void) | null = null;
  private readonly windows: HostWindows;

  constructor(windows: HostWindows, lowest = USER_START, backed: Uint8Array | null = null) {
    this.windows = windows;
    this.size = windows.size;
    this.hostBase = windows.hostBase;
    this.lowest = lowest;
    this.backed = backed;
  }

  /** Throws GuestFault unless [addr, addr+len) lies inside guest memory. */
  check(addr: number, len: number): void {
    if (!(addr >= this.lowest && len >= 0 && addr + len <= this.size && Number.isSafeInteger(addr + len)) ||
        (this.backed !== null && len > 0 && this.backedEnd(addr) < addr + len)) {
      throw new GuestFault(addr, len);
    }
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
   * The bytes [addr, addr+len) without any check or record, len at most WINDOW: for the host's own
   * pages (the system area below USER_START) and for code that checked the range itself.
   */
  span(addr: number, len: number): Uint8Array {
    return this.windows.span(addr, len);
  }

  /** A read-only window on guest memory (no copy); GuestFault past WINDOW bytes. */
  read(addr: number, len: number): Uint8Array {
    this.check(addr, len);
    if (len > WINDOW) throw new GuestFault(addr, len);
    return this.windows.span(addr, len);
  }

  /** A window the host is about to write into: recorded as written. */
  write(addr: number, len: number): Uint8Array {
    this.check(addr, len);
    if (len > WINDOW) throw new GuestFault(addr, len);
    this.recordWrite(addr, len);
    return this.windows.span(addr, len);
  }

  /** Copies `data` into guest memory at `addr`, in pieces where it is longer than one window. */
  put(addr: number, data: Uint8Array): void {
    this.check(addr, data.length);
    for (let done = 0; done < data.length; done += WINDOW) {
      const len = Math.min(WINDOW, data.length - done);
      this.recordWrite(addr + done, len);
      this.windows.span(addr + done, len).set(data.subarray(done, done + len));
    }
  }

  /** Sets [addr, addr+len) to `value`, in pieces where it is longer than one window. */
  fill(addr: number, len: number, value = 0): void {
    this.check(addr, len);
    for (let done = 0; done < len; done += WINDOW) {
      const n = Math.min(WINDOW, len - done);
      this.recordWrite(addr + done, n);
      this.windows.span(addr + done, n).fill(value);
    }
  }

  recordWrite(addr: number, len: number): void {
    if (this.onHostWrite && len > 0) {
      const first = Math.floor(addr / PAGE_SIZE);
      this.onHostWrite(first, Math.floor((addr + len - 1) / PAGE_SIZE) - first + 1);
    }
  }

  /** Host address for a checked guest range, to hand to a libc call. */
  hostAddress(addr: number, len: number): bigint {
    this.check(addr, len);
    return this.hostBase + BigInt(addr);
  }

  /** The view that holds [addr, addr+len) (checked first), at the offset it has there. */
  private at(addr: number, len: number): DataView {
    this.check(addr, len);
    return this.windows.dataView(addr);
  }
  private off(addr: number): number {
    return addr - ((addr / WINDOW) | 0) * WINDOW;
  }
  private written(addr: number, len: number): DataView {
    const view = this.at(addr, len);
    this.recordWrite(addr, len);
    return view;
  }

  u8(addr: number): number {
    return this.at(addr, 1).getUint8(this.off(addr));
  }
  u16(addr: number): number {
    return this.at(addr, 2).getUint16(this.off(addr), true);
  }
  u32(addr: number): number {
    return this.at(addr, 4).getUint32(this.off(addr), true);
  }
  i32(addr: number): number {
    return this.at(addr, 4).getInt32(this.off(addr), true);
  }
  f32(addr: number): number {
    return this.at(addr, 4).getFloat32(this.off(addr), true);
  }
  /** A 64-bit value as a Number: exact below 2^53, which covers every guest address. */
  u64(addr: number): number {
    const view = this.at(addr, 8);
    const o = this.off(addr);
    return view.getUint32(o, true) + view.getUint32(o + 4, true) * 0x1_0000_0000;
  }
  i64(addr: number): number {
    const view = this.at(addr, 8);
    const o = this.off(addr);
    return view.getUint32(o, true) + view.getInt32(o + 4, true) * 0x1_0000_0000;
  }
  /** A 64-bit value whole, as a bigint (masks, epoll's data word). */
  u64n(addr: number): bigint {
    return this.at(addr, 8).getBigUint64(this.off(addr), true);
  }
  setU16(addr: number, value: number): void {
    this.written(addr, 2).setUint16(this.off(addr), value & 0xffff, true);
  }
  setU32(addr: number, value: number): void {
    this.written(addr, 4).setUint32(this.off(addr), value >>> 0, true);
  }
  setI32(addr: number, value: number): void {
    this.written(addr, 4).setInt32(this.off(addr), value, true);
  }
  /** Stores a Number (or bigint) as a 64-bit little-endian integer; negatives in two's complement. */
  setU64(addr: number, value: number | bigint): void {
    this.written(addr, 8).setBigUint64(this.off(addr), BigInt.asUintN(64, BigInt(value)), true);
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
    this.check(addr, 1);
    const end = Math.min(this.backedEnd(addr), addr + Math.min(max + 1, WINDOW));
    const nul = this.windows.span(addr, end - addr).indexOf(0);
    if (nul < 0) {
      if (end < addr + max + 1) throw new GuestFault(addr, max);
      return null;
    }
    return this.windows.span(addr, nul);
  }
}
