/**
 * Guest RAM: a memfd the size of the address space, mapped into this process.
 *
 * A memfd rather than anonymous memory so that request VMs can later map the
 * same pages MAP_PRIVATE and let the host kernel do copy-on-write (DESIGN.md #5).
 * The file is sparse: only pages the guest touches cost host memory, and no
 * guest can use more than the file's size.
 */
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MAP_NORESERVE, MAP_SHARED, MFD_CLOEXEC, PROT_READ, PROT_WRITE, libc, mapOrThrow, sysError, viewOf,
} from '../hypervisor/kvm/libc.js';
import { GuestMemory } from './guest-memory.js';

export class GuestRam {
  readonly size: number;
  readonly memfd: number;
  readonly hostAddress: bigint;
  readonly memory: GuestMemory;
  private readonly pointer: unknown;
  private closed = false;

  constructor(size: number, name = 'tskvm-guest') {
    this.size = size;
    this.memfd = libc.memfdCreate(name, MFD_CLOEXEC);
    if (this.memfd < 0) throw sysError('TSKVM_ERR_HOST_MEMORY', 'memfd_create');
    if (libc.ftruncate(this.memfd, size) < 0) {
      libc.close(this.memfd);
      throw sysError('TSKVM_ERR_HOST_MEMORY', `ftruncate of guest memory to ${size >> 20} MiB`);
    }
    const { pointer, address } = mapOrThrow(size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, this.memfd, 'guest memory');
    this.pointer = pointer;
    this.hostAddress = address;
    this.memory = new GuestMemory(viewOf(pointer, size), address);
  }

  /** Gives pages back to the host and makes them read as zero (munmap, MADV_DONTNEED in the guest). */
  release(addr: number, len: number): void {
    if (len <= 0) return;
    if (libc.fallocate(this.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, addr, len) < 0) {
      // A file system without hole punching: zero the bytes instead (same guest-visible result).
      this.memory.bytes.fill(0, addr, addr + len);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.munmap(this.pointer, this.size);
    libc.close(this.memfd);
  }
}
