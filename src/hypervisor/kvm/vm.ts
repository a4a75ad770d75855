/**
 * `Vm` wraps a VM file descriptor: guest memory slots and vCPU creation.
 */
import { memoryRegion } from './abi.js';
import { ioctl } from './ioctl.js';
import { libc } from './libc.js';
import type { Kvm } from './system.js';
import { Vcpu } from './vcpu.js';

export class Vm {
  readonly kvm: Kvm;
  readonly fd: number;
  private closed = false;

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
