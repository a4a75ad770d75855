/**
 * Checked access to guest-physical memory from the host.
 *
 * The guest address space is identity-mapped (virtual = physical), so a guest
 * pointer is an offset into this buffer. Every pointer and length the guest hands
 * us goes through `check()` first: a bad one becomes `GuestFault` (the syscall
 * layer turns it into -EFAULT) and never a host exception or an out-of-bounds view.
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
import { USER_START } from './layout.js';

export const PAGE_SIZE = 4096;

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

export class GuestMemory {
  readonly size: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** Host address of guest-physical 0, for passing guest buffers straight to libc. */
  readonly hostBase: bigint;
  /** Lowest guest address a guest pointer may name: the first byte of user memory. */
  readonly lowest: number;
  onHostWrite: ((firstPage: number, pageCount: number) => void) | null = null;

  constructor(buffer: ArrayBuffer, hostBase: bigint, lowest = USER_START) {
    this.size = buffer.byteLength;
    this.bytes = new Uint8Array(buffer);
    this.view = new DataView(buffer);
    this.hostBase = hostBase;
    this.lowest = lowest;
  }

  /** Throws GuestFault unless [addr, addr+len) lies inside guest memory. */
  check(addr: number, len: number): void {
    if (!(addr >= this.lowest && len >= 0 && addr + len <= this.size && Number.isSafeInteger(addr + len))) {
      throw new GuestFault(addr, len);
    }
  }

  /** A read-only window on guest memory (no copy). */
  read(addr: number, len: number): Uint8Array {
    this.check(addr, len);
    return this.bytes.subarray(addr, addr + len);
  }

  /** A window the host is about to write into: recorded as written. */
  write(addr: number, len: number): Uint8Array {
    this.check(addr, len);
    this.recordWrite(addr, len);
    return this.bytes.subarray(addr, addr + len);
  }

  /** Copies `data` into guest memory at `addr`. */
  put(addr: number, data: Uint8Array): void {
    this.write(addr, data.length).set(data);
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

  u32(addr: number): number {
    this.check(addr, 4);
    return this.view.getUint32(addr, true);
  }
  i32(addr: number): number {
    this.check(addr, 4);
    return this.view.getInt32(addr, true);
  }
  /** A 64-bit value as a Number: exact below 2^53, which covers every guest address. */
  u64(addr: number): number {
    this.check(addr, 8);
    return this.view.getUint32(addr, true) + this.view.getUint32(addr + 4, true) * 0x1_0000_0000;
  }
  i64(addr: number): number {
    this.check(addr, 8);
    return this.view.getUint32(addr, true) + this.view.getInt32(addr + 4, true) * 0x1_0000_0000;
  }
  setU32(addr: number, value: number): void {
    this.check(addr, 4);
    this.recordWrite(addr, 4);
    this.view.setUint32(addr, value >>> 0, true);
  }
  setI32(addr: number, value: number): void {
    this.check(addr, 4);
    this.recordWrite(addr, 4);
    this.view.setInt32(addr, value, true);
  }
  /** Stores a Number (or bigint) as a 64-bit little-endian integer; negatives in two's complement. */
  setU64(addr: number, value: number | bigint): void {
    this.check(addr, 8);
    this.recordWrite(addr, 8);
    this.view.setBigUint64(addr, BigInt.asUintN(64, BigInt(value)), true);
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
    const end = Math.min(this.size, addr + max + 1);
    const nul = this.bytes.subarray(addr, end).indexOf(0);
    if (nul < 0) {
      if (end === this.size) throw new GuestFault(addr, max);
      return null;
    }
    return this.bytes.subarray(addr, addr + nul);
  }
}
