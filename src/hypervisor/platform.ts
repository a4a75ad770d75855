/**
 * Which KVM are we on? Decided once per thread by running two tiny guests.
 *
 * 1. Syscall entry. On hardware KVM, `syscall` from ring 3 enters LSTAR in
 *    ring 0; on PVM (the software KVM of nested clouds) it stays in ring 3,
 *    where the usual `sysretq` would fault. The probe executes `syscall` into
 *    an LSTAR stub that exits at once, and looks at CS's privilege level at
 *    that exit.
 * 2. The task register. Ring-3 hypercalls are `out %eax, $0`, allowed by the
 *    TSS's I/O permission bitmap. A loaded TR is a *busy* TSS (type 11): real
 *    CPUs set that bit at `ltr`, and Intel's VM entry refuses anything else.
 *    QEMU's emulator, though, consults the bitmap only when TR's type is 9
 *    (an available TSS) and otherwise raises #GP, so under an emulated AMD
 *    CPU (our hardware-KVM test lane) every hypercall faulted. AMD's VMRUN
 *    takes either type. So the probe runs the `out` with a busy TR and, only
 *    if that faults with #GP, once more with an available one.
 */
import { existsSync } from 'node:fs';
import { TskvmError } from '../errors.js';
import { GuestRam } from '../paging/guest-ram.js';
import { PORT_EXCEPTION_BASE, PORT_HYPERCALL, PORT_SYSCALL, USER_START } from '../paging/layout.js';
import type { StubChoice, SyscallEntryKind } from '../paging/stubs.js';
import { describeExit } from './kvm/exit.js';
import { createGuestVm, writeSystemArea } from './guest-vm.js';
import { currentCs, hasNx, TR_AVAILABLE, TR_BUSY, type TaskRegisterType, type VcpuChoice } from './cpu-setup.js';
import { Kvm } from './kvm/system.js';

/** syscallEntry: where `syscall` lands. taskRegister: TR_BUSY, or TR_AVAILABLE where a busy TSS makes ring-3 `out` fault. */
export interface Platform extends StubChoice, VcpuChoice {
  /** No-execute pages: EFER.NXE is set and data pages are NX (page-tables.ts). */
  nx: boolean;
  /** The kvm_pvm module is loaded: software KVM with shadow paging. */
  pvm: boolean;
  description: string;
}

let cached: Platform | null = null;

export function platform(): Platform {
  cached ??= probe();
  return cached;
}

const VECTOR_GP = 13;
const SYSCALL_PROBE = USER_START; // syscall; hlt
const HYPERCALL_PROBE = USER_START + 0x10; // out %eax, $0; hlt
const WRFSBASE_PROBE = USER_START + 0x20; // wrfsbase %rax; out %eax, $0; hlt
const VECTOR_UD = 6;

interface FirstExit {
  port: number;
  cpl: number;
}

/** Runs the probe guest from `rip` to its first exit, which must be port I/O. */
function firstExit(ram: GuestRam, rip: number, taskRegister: TaskRegisterType): FirstExit {
  // The syscall probe's LSTAR is PVM's ring-3 stub, and without SMEP (which goes with the ring-0 entry)
  // ring 0 may run it too: either way its `out` tells where the CPU was.
  const guest = createGuestVm(ram, { rip, rsp: USER_START + 0x1000 }, { taskRegister, syscallEntry: 'ring3-jmp' });
  try {
    // A signal to this thread (a profiler's SIGPROF, say) ends KVM_RUN early: the guest has not moved.
    let exit = guest.vcpu.run();
    for (let tries = 0; exit.kind === 'interrupted' && tries < 100; tries++) exit = guest.vcpu.run();
    if (exit.kind !== 'io') {
      throw new TskvmError('TSKVM_ERR_KVM_PROBE', `platform probe at 0x${rip.toString(16)}: expected port I/O, got ${describeExit(exit)}`);
    }
    return { port: exit.port, cpl: currentCs(guest.vcpu) & 3 };
  } finally {
    guest.close();
  }
}

function probe(): Platform {
  const ram = GuestRam.create(4 << 20, 0, 'tskvm-probe');
  try {
    writeSystemArea(ram, { fsgsbase: false }, { nx: false, executable: 'all' });
    ram.memory.put(SYSCALL_PROBE, Uint8Array.of(0x0f, 0x05, 0xf4));
    ram.memory.put(HYPERCALL_PROBE, Uint8Array.of(0xe7, PORT_HYPERCALL, 0xf4));
    ram.memory.put(WRFSBASE_PROBE, Uint8Array.of(0xf3, 0x48, 0x0f, 0xae, 0xd0, 0xe7, PORT_HYPERCALL, 0xf4));
    const pvm = existsSync('/sys/module/kvm_pvm');

    const sys = firstExit(ram, SYSCALL_PROBE, TR_BUSY);
    if (sys.port !== PORT_SYSCALL) {
      throw new TskvmError('TSKVM_ERR_KVM_PROBE', `platform probe: expected the syscall stub's exit, got port 0x${sys.port.toString(16)}`);
    }
    const syscallEntry: SyscallEntryKind = sys.cpl === 3 ? 'ring3-jmp' : 'ring0-sysret';

    // One guest tries `wrfsbase; out %eax, $0`. WRFSBASE works in ring 3 where CR4.FSGSBASE is on, as
    // cpu-setup.ts sets it when the CPU has it (PVM runs the guest on the host's CR4); without it the
    // instruction is #UD, and the hypercall is tried alone. A #GP at the `out` is the TR type (above).
    // Every probe guest costs a VM per process: under emulation, about a second.
    let taskRegister: TaskRegisterType = TR_BUSY;
    let fsgsbase = true;
    let hc = firstExit(ram, WRFSBASE_PROBE, taskRegister);
    for (let tries = 0; hc.port !== PORT_HYPERCALL && tries < 3; tries++) {
      if (hc.port === PORT_EXCEPTION_BASE + VECTOR_UD && fsgsbase) fsgsbase = false;
      else if (hc.port === PORT_EXCEPTION_BASE + VECTOR_GP && taskRegister === TR_BUSY) taskRegister = TR_AVAILABLE;
      else break;
      hc = firstExit(ram, fsgsbase ? WRFSBASE_PROBE : HYPERCALL_PROBE, taskRegister);
    }
    if (hc.port !== PORT_HYPERCALL) {
      throw new TskvmError('TSKVM_ERR_KVM_PROBE', `platform probe: a ring-3 hypercall (out %eax, $0) exits on port 0x${hc.port.toString(16)}, with either TSS type`);
    }

    const kind = pvm ? 'PVM' : sys.cpl === 3 ? 'KVM' : 'hardware KVM';
    const entry = syscallEntry === 'ring3-jmp'
      ? 'syscall stays in ring 3; LSTAR stub returns with jmp *%rcx'
      : 'syscall enters ring 0; LSTAR stub returns with sysretq';
    const tr = taskRegister === TR_AVAILABLE
      ? '; TR loaded as an available TSS (a busy one made ring-3 out #GP: an emulated CPU)'
      : '';
    const bases = fsgsbase ? '' : '; no WRFSBASE in ring 3 (a request starts with an exit where it loaded FS or GS)';
    const nx = hasNx(Kvm.shared());
    return { syscallEntry, taskRegister, fsgsbase, nx, pvm, description: `${kind}: ${entry}${tr}${bases}${nx ? '' : '; no NX: every page is executable'}` };
  } finally {
    ram.close();
  }
}
