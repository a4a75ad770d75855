/**
 * `Vm` wraps a VM file descriptor: guest memory slots and vCPU creation.
 */
import { caps, clearDirtyLog, clockData, dirtyLog, enableCap, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, memoryRegion } from './abi.js';
import { ioctl } from './ioctl.js';
import { libc, mapOrThrow, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../../host/libc.js';
import type { Kvm } from './system.js';
import { Vcpu } from './vcpu.js';

const PAGE = 4096;
/** Past the slots that hold guest memory (memory-slots.ts); this one only ever exists for a moment. */
const FLUSH_SLOT = 300;
/** Above the largest guest (64 GiB plus its shared region, layout.ts), below any CPU's physical address width (39 bits and up). */
const FLUSH_GPA = 2 ** 38;
let scratchPage: bigint | undefined;

export class Vm {
  readonly kvm: Kvm;
  readonly fd: number;
  private closed = false;
  private dirtyLogArg: Buffer | undefined;

  constructor(kvm: Kvm, fd: number) {
    this.kvm = kvm;
    this.fd = fd;
  }

  /** KVM_SET_USER_MEMORY_REGION: guest-physical [gpa, gpa+size) is host memory at hostAddress. */
  setMemoryRegion(slot: number, gpa: number, size: number, hostAddress: bigint, flags = 0): void {
    const r = Buffer.alloc(memoryRegion.size);
    r.writeUInt32LE(slot, memoryRegion.slot);
    r.writeUInt32LE(flags, memoryRegion.flags);
    r.writeBigUInt64LE(BigInt(gpa), memoryRegion.guestPhysAddr);
    r.writeBigUInt64LE(BigInt(size), memoryRegion.memorySize);
    r.writeBigUInt64LE(hostAddress, memoryRegion.userspaceAddr);
    ioctl(this.fd, 'KVM_SET_USER_MEMORY_REGION', r, `slot ${slot}, ${size >> 20} MiB at 0x${gpa.toString(16)}`);
  }

  /**
   * Dirty logging in manual-protect mode (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2):
   * KVM_GET_DIRTY_LOG then only reports, it does not write-protect again, so a
   * page the guest has written stays writable and in the set until
   * KVM_CLEAR_DIRTY_LOG. A fork's reset reads the set without making the next
   * request fault on the same pages (docs/ARCHITECTURE.md, "Reset").
   */
  enableManualDirtyLog(): void {
    const b = Buffer.alloc(enableCap.size);
    b.writeUInt32LE(caps.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, enableCap.cap);
    b.writeBigUInt64LE(BigInt(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE), enableCap.args);
    ioctl(this.fd, 'KVM_ENABLE_CAP', b, 'MANUAL_DIRTY_LOG_PROTECT2');
  }

  /** KVM_GET_DIRTY_LOG: one bit per page of `slot` into the host buffer at `bitmapAddress`. */
  getDirtyLog(slot: number, bitmapAddress: bigint): void {
    const b = this.dirtyLogArg ??= Buffer.alloc(dirtyLog.size);
    b.writeUInt32LE(slot, dirtyLog.slot);
    b.writeBigUInt64LE(bitmapAddress, dirtyLog.bitmap);
    ioctl(this.fd, 'KVM_GET_DIRTY_LOG', b);
  }

  /** KVM_GET_CLOCK: the VM's kvmclock now, in ns (`scratch`: at least clockData.size bytes). */
  getClock(scratch: Buffer): bigint {
    ioctl(this.fd, 'KVM_GET_CLOCK', scratch);
    return scratch.readBigUInt64LE(clockData.clock);
  }

  /** KVM_CLEAR_DIRTY_LOG: forget (and write-protect again) the pages set in the bitmap, from `firstPage`. */
  clearDirtyLog(slot: number, firstPage: number, pageCount: number, bitmapAddress: bigint): void {
    const b = Buffer.alloc(clearDirtyLog.size);
    b.writeUInt32LE(slot, clearDirtyLog.slot);
    b.writeUInt32LE(pageCount, clearDirtyLog.numPages);
    b.writeBigUInt64LE(BigInt(firstPage), clearDirtyLog.firstPage);
    b.writeBigUInt64LE(bitmapAddress, clearDirtyLog.bitmap);
    ioctl(this.fd, 'KVM_CLEAR_DIRTY_LOG', b);
  }

  /**
   * Drops every translation KVM derived from the guest's page tables, after the host edited them:
   * on PVM its shadow page tables (docs/PLATFORMS.md, "PVM and page tables"), on hardware KVM the
   * guest's TLB. Removing a memory slot zaps them all, so a one-page slot is added and removed, far
   * above guest memory (the slots that hold it, and their dirty logs, stay as they are).
   */
  flushTranslations(): void {
    scratchPage ??= mapOrThrow(PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 'the flush slot').address;
    this.setMemoryRegion(FLUSH_SLOT, FLUSH_GPA, PAGE, scratchPage);
    this.setMemoryRegion(FLUSH_SLOT, FLUSH_GPA, 0, scratchPage);
  }

  createVcpu(id = 0): Vcpu {
    return new Vcpu(this, ioctl(this.fd, 'KVM_CREATE_VCPU', id));
  }

  close(): void {
    if (!this.closed) {
      this.closed = true;
      libc.close(this.fd);
    }
  }
}
