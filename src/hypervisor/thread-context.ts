/**
 * Saving and loading a guest thread's registers in the one vCPU (the scheduler is in
 * src/syscalls/thread-table.ts). A thread that is not running is a ThreadContext: its general
 * registers, its vector registers and its FS/GS bases.
 *
 * A thread parked in a syscall is saved as it will be when the call has returned: rip after the
 * `syscall`, as Linux's sysret leaves it. Where the syscall entry is in ring 0 (hardware KVM), the
 * vCPU stops in the ring-0 stub, on its `sysretq`; a thread loaded there goes back to ring 3 through
 * that `sysretq`, with rcx and r11 carrying its rip and rflags (which a syscall clobbers anyway).
 * A thread interrupted by its time slice is saved exactly, anywhere, with its segment state on
 * hardware KVM (it may have been stopped in ring 0), and loaded back exactly.
 *
 * On hardware KVM rip moves past the `out` of an exit only at the next KVM_RUN, which would also
 * overwrite a rip set before it: every save and load completes the exit first (Vcpu.completeExit).
 */
import { MSR, regIndex } from './kvm/abi.js';
import type { Vcpu } from './kvm/vcpu.js';
import { setTaskRegisterType, type VcpuChoice } from './cpu-setup.js';
import { SYSCALL_ENTRY } from '../paging/stubs.js';
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
      const regs = exact ? (vcpu.completeExit(), Uint32Array.from(vcpu.regs)) : userRegs();
      const sregs = exact && ring0 ? Uint8Array.from(setTaskRegisterType(vcpu.getSregs(), choice.taskRegister)) : null;
      return { regs, xsave: Uint8Array.from(vcpu.getXsave()), sregs, fsBase, gsBase };
    },

    loadContext(ctx, resume) {
      vcpu.completeExit();
      const regs = Uint32Array.from(ctx.regs);
      applyResume(regs, resume);
      install(regs, ctx.sregs);
      vcpu.setXsave(ctx.xsave);
      vcpu.setMsrs([[MSR.FS_BASE, ctx.fsBase], [MSR.GS_BASE, ctx.gsBase]]);
    },

    finishCall(resume) {
      if (typeof resume === 'number') return vcpu.set('rax', resume);
      if (resume === 'asis') return;
      const regs = userRegs();
      applyResume(regs, resume);
      install(regs, null);
    },

    childContext(stack, fsBase, gsBase) {
      const regs = userRegs();
      write(regs, 'rax', 0);
      if (stack) write(regs, 'rsp', stack);
      return { regs, xsave: Uint8Array.from(vcpu.getXsave()), sregs: null, fsBase, gsBase };
    },
  };

  /**
   * Puts `regs` in the vCPU (its exit completed). Exact segment state goes in with them; without it,
   * user-state registers go back to ring 3 the way the vCPU stands: directly, or through the ring-0
   * stub's sysretq (rip from rcx, rflags from r11).
   */
  function install(regs: Uint32Array, sregs: Uint8Array | null): void {
    const inSysretStub = ring0 && vcpu.get('rip') === afterOut;
    vcpu.regs.set(regs);
    if (sregs) {
      vcpu.setSregs(Buffer.from(sregs));
    } else if (inSysretStub) {
      write(vcpu.regs, 'rcx', read(regs, 'rip'));
      write(vcpu.regs, 'r11', read(regs, 'rflags'));
      write(vcpu.regs, 'rip', afterOut);
    }
    vcpu.markRegsDirty();
  }
}

/** rax, or rip back over the call, as `resume` says ('asis': untouched). */
function applyResume(regs: Uint32Array, resume: Resume): void {
  if (typeof resume === 'number') write(regs, 'rax', resume);
  else if (resume === 'retry') write(regs, 'rip', read(regs, 'rip') - SYSCALL_INSN);
}
