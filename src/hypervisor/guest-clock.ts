/**
 * The guest's clock, as the vDSO reads it (src/paging/vdso.ts): the vCPU's kvmclock points at the
 * vvar page, where KVM keeps the (TSC, ns) pair and the TSC's rate, and the host writes next to it
 * the offsets from this VM's kvmclock (which starts near 0 when the VM is created) to the host's
 * CLOCK_REALTIME and CLOCK_MONOTONIC. A guest clock read is then rdtsc and arithmetic, no exit; the
 * syscall path (src/syscalls/time.ts) reads the same host clocks.
 *
 * kvmclock follows the host's raw clock while CLOCK_REALTIME and CLOCK_MONOTONIC are slewed by NTP,
 * so the offsets are taken again when a second has passed, between exits (the vDSO retries a read
 * that straddled a change: `seq`).
 */
import { clockData, MSR } from './kvm/abi.js';
import { libc } from '../host/libc.js';
import type { Vcpu } from './kvm/vcpu.js';
import type { Vm } from './kvm/vm.js';
import { VVAR_ADDR } from '../paging/layout.js';
import { VVAR } from '../paging/vdso.js';

const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
const SYNC_EVERY_MS = 1000;

export class GuestClock {
  private readonly vm: Vm;
  private readonly vcpu: Vcpu;
  private readonly vvar: DataView;
  private readonly scratch = Buffer.alloc(Math.max(16, clockData.size));
  private syncedAt = 0;

  constructor(vm: Vm, vcpu: Vcpu, memory: Uint8Array) {
    this.vm = vm;
    this.vcpu = vcpu;
    this.vvar = new DataView(memory.buffer, memory.byteOffset + VVAR_ADDR, 0x100);
  }

  /** kvmclock's MSR, pointing at the vvar page (bit 0: on); KVM fills the page at the next entry. */
  static readonly MSR: [number, number] = [MSR.KVM_SYSTEM_TIME_NEW, VVAR_ADDR | 1];

  /** Points kvmclock at the vvar page and writes the offsets. */
  arm(): void {
    this.vcpu.setMsrs([GuestClock.MSR]);
    this.sync();
  }

  syncIfStale(): void {
    if (performance.now() - this.syncedAt >= SYNC_EVERY_MS) this.sync();
  }

  /** Host clock minus kvmclock, for both clocks; the host clocks are read around kvmclock and averaged. */
  sync(): void {
    const real0 = this.host(CLOCK_REALTIME);
    const mono0 = this.host(CLOCK_MONOTONIC);
    const kvm = this.vm.getClock(this.scratch);
    const mono1 = this.host(CLOCK_MONOTONIC);
    const real1 = this.host(CLOCK_REALTIME);
    const v = this.vvar;
    v.setUint32(VVAR.seq, (v.getUint32(VVAR.seq, true) + 2) >>> 0, true);
    v.setBigUint64(VVAR.realtimeOffset, BigInt.asUintN(64, (real0 + real1) / 2n - kvm), true);
    v.setBigUint64(VVAR.monotonicOffset, BigInt.asUintN(64, (mono0 + mono1) / 2n - kvm), true);
    this.syncedAt = performance.now();
  }

  private host(clock: number): bigint {
    libc.clockGettimeInto(clock, this.scratch);
    return this.scratch.readBigInt64LE(0) * 1_000_000_000n + this.scratch.readBigInt64LE(8);
  }
}
