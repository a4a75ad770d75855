/**
 * Saving and loading a guest thread's registers in the one vCPU (the scheduler is in
 * src/syscalls/thread-table.ts). A thread that is not running is a ThreadContext: its general
 * registers, its vector registers and its FS/GS bases.
 *
 * A thread parked in a syscall is saved as it will be when the call has returned: rip after the
 * `syscall`, as Linux's sysret leaves it. Where the syscall entry is in ring 0 (hardware KVM), the
 * vCPU stops in the ring-0 stub, on its `sysretq`; a thread loaded there goes to ring 3 directly, its
 * registers with the user code and stack segments a sysret would load (KVM_SET_SREGS), so that
 * every thread's registers, general and segment, are those of ring 3 and nothing depends on the stub.
 * A thread interrupted by its time slice is saved exactly, anywhere, with its segment state on
 * hardware KVM (it may have been stopped in ring 0), and loaded back exactly.
 *
 * On hardware KVM rip moves past the `out` of an exit only at the next KVM_RUN, which would also
 * overwrite a rip set before it: every save and load completes the exit first (Vcpu.completeExit).
 */
import { MSR, regIndex, sregs as sregsLayout } from './kvm/abi.js';
import { SELECTOR } from '../paging/descriptors.js';
import type { Vcpu } from './kvm/vcpu.js';
import { setTaskRegisterType, writeSegment, type VcpuChoice } from './cpu-setup.js';
import { SYSCALL_ENTRY } from '../paging/stubs.js';
import { PAGE, RING0_STUBS_ADDR } from '../paging/layout.js';
import type { ContextSwitch, Resume, ThreadContext } from '../syscalls/thread-table.js';

/** Where each syscall stub goes on after its 2-byte `out`: `jmp *%rcx` (ring 3, PVM) or `sysretq` (ring 0). */
const AFTER_OUT = { 'ring3-jmp': SYSCALL_ENTRY['ring3-jmp'] + 2, 'ring0-sysret': SYSCALL_ENTRY['ring0-sysret'] + 2 };
/** The rflags bits sysret takes from r11 (Linux's and the SDM's: RF and VM cleared, bit 1 set). */
const SYSRET_RFLAGS_MASK = 0x3c7fd7;
/** Both a `syscall` (0f 05) and the `out %eax, $1` a site is rewritten to are 2 bytes. */
const SYSCALL_INSN = 2;

const at = (reg: keyof typeof regIndex): number => regIndex[reg] * 2;

function read(regs: Uint32Array, reg: keyof typeof regIndex): number {
  return regs[at(reg)]! + regs[at(reg) + 1]! * 0x1_0000_0000;
}

function write(regs: Uint32Array, reg: keyof typeof regIndex, value: number): void {
  regs[at(reg)] = value >>> 0;
  regs[at(reg) + 1] = Math.floor(value / 0x1_0000_0000) >>> 0;
}

export function contextSwitch(vcpu: Vcpu, choice: VcpuChoice): ContextSwitch {
  const afterOut = AFTER_OUT[choice.syscallEntry];
  const ring0 = choice.syscallEntry === 'ring0-sysret';

  /** The running thread's registers, in the user state a returned syscall leaves when it is in a stub. */
  function userRegs(): Uint32Array {
    vcpu.completeExit();
    const regs = Uint32Array.from(vcpu.regs);
    if (read(regs, 'rip') === afterOut) {
      write(regs, 'rip', read(regs, 'rcx'));
      if (ring0) write(regs, 'rflags', (read(regs, 'r11') & SYSRET_RFLAGS_MASK) | 2);
    }
    return regs;
  }

  return {
    saveContext(exact, fsBase, gsBase) {
      vcpu.completeExit();
      const rip = vcpu.get('rip');
      // Interrupted in a ring-0 exception stub: not a place to leave a thread (its exit comes next).
      if (exact && rip !== afterOut && rip >= RING0_STUBS_ADDR && rip < RING0_STUBS_ADDR + PAGE) return null;
      return { regs: userRegs(), xsave: Uint8Array.from(vcpu.getXsave()), fsBase, gsBase };
    },

    loadContext(ctx, resume) {
      vcpu.completeExit();
      const regs = Uint32Array.from(ctx.regs);
      applyResume(regs, resume);
      install(regs);
      vcpu.setXsave(ctx.xsave);
      vcpu.setMsrs([[MSR.FS_BASE, ctx.fsBase], [MSR.GS_BASE, ctx.gsBase]]);
    },

    finishCall(resume) {
      if (typeof resume === 'number') return vcpu.set('rax', resume);
      if (resume === 'asis') return;
      const regs = userRegs();
      applyResume(regs, resume);
      install(regs);
    },

    childContext(stack, fsBase, gsBase) {
      const regs = userRegs();
      write(regs, 'rax', 0);
      if (stack) write(regs, 'rsp', stack);
      return { regs, xsave: Uint8Array.from(vcpu.getXsave()), fsBase, gsBase };
    },
  };

  /**
   * Puts user-state `regs` in the vCPU (its exit completed): as they are where the vCPU is in ring 3,
   * and with ring 3's code and stack segments where it stands in the ring-0 stub.
   */
  function install(regs: Uint32Array): void {
    const inRing0Stub = ring0 && vcpu.get('rip') === afterOut;
    vcpu.regs.set(regs);
    if (inRing0Stub) {
      const s = setTaskRegisterType(vcpu.getSregs(), choice.taskRegister);
      writeSegment(s, sregsLayout.cs, SELECTOR.USER_CS, true, 3);
      writeSegment(s, sregsLayout.ss, SELECTOR.USER_DS, false, 3);
      vcpu.setSregs(s);
    }
    vcpu.markRegsDirty();
  }
}

/** rax, or rip back over the call, as `resume` says ('asis': untouched). */
function applyResume(regs: Uint32Array, resume: Resume): void {
  if (typeof resume === 'number') write(regs, 'rax', resume);
  else if (resume === 'retry') write(regs, 'rip', read(regs, 'rip') - SYSCALL_INSN);
}
