/**
 * What a guest can change in its vCPU that tskvm snapshots: the general registers, the segment and
 * control state, the FPU/SSE/AVX state. The freeze saves them with saveVcpu() and every fork starts
 * from, and is reset to, the same three with restoreVcpu(): one definition for both, as
 * src/syscalls/process-state.ts is for the process.
 *
 * The MSRs tskvm sets are not saved: they are derived from the syscall entry and the FS/GS bases
 * (guestMsrs in cpu-setup.ts), and a reset sets them again only when a request could have changed
 * them (request-vm.ts, restoreMsrs). Guest memory has its own reset (src/runtime/dirty-pages.ts).
 */
import { setTaskRegisterType, type TaskRegisterType } from './cpu-setup.js';
import { regIndex, type RegName } from './kvm/abi.js';
import type { Vcpu } from './kvm/vcpu.js';

export interface VcpuSnapshot {
  /** struct kvm_regs as 32-bit words (Vcpu.regs). */
  regs: Uint32Array;
  /** struct kvm_sregs: segment and control registers, descriptor tables. */
  sregs: Uint8Array;
  /** The FPU/SSE/AVX registers: every request starts from them, so none sees another's vector registers. */
  xsave: Uint8Array;
}

/**
 * A 64-bit register of a kvm_regs word array (Vcpu.regs, or a snapshot's), as a Number: exact below
 * 2^53, which covers every guest address.
 */
export function registerOf(regs: Uint32Array, reg: RegName): number {
  const i = regIndex[reg] * 2;
  return regs[i]! + regs[i + 1]! * 0x1_0000_0000;
}

/** The vCPU as it is now; TR is recorded with the TSS type forks load it with (platform.ts). */
export function saveVcpu(vcpu: Vcpu, taskRegister: TaskRegisterType): VcpuSnapshot {
  return {
    regs: Uint32Array.from(vcpu.regs),
    sregs: Uint8Array.from(setTaskRegisterType(vcpu.getSregs(), taskRegister)),
    xsave: Uint8Array.from(vcpu.getXsave()),
  };
}

/**
 * The vCPU back to `saved`, whatever a request did to it (a far jump changes CS; memcpy leaves data in
 * the vector registers). The data selectors and FS/GS bases are also put back by the request entry
 * stub, where KVM_SET_SREGS does not reach them (PVM).
 */
export function restoreVcpu(vcpu: Vcpu, saved: VcpuSnapshot): void {
  vcpu.setSregs(Buffer.from(saved.sregs));
  vcpu.setXsave(saved.xsave);
  vcpu.regs.set(saved.regs);
  vcpu.markRegsDirty();
}
