/**
 * Which KVM are we on? Decided once per thread by running a two-instruction guest.
 *
 * On hardware KVM, `syscall` from ring 3 enters LSTAR in ring 0; on PVM (the
 * software KVM of nested clouds, PLATFORM.md) it stays in ring 3, where the
 * usual `sysretq` would fault. The probe executes `syscall` into an LSTAR stub
 * that exits at once, and looks at CS's privilege level at that exit.
 */
import { existsSync } from 'node:fs';
import { TskvmError } from '../errors.js';
import { GuestRam } from '../paging/guest-ram.js';
import { PORT_SYSCALL, USER_START } from '../paging/layout.js';
import type { SyscallEntryKind } from '../paging/stubs.js';
import { KVM_EXIT_IO, run as runLayout } from './kvm/abi.js';
import { createGuestVm, writeSystemArea } from './guest-vm.js';
import { currentCs } from './cpu-setup.js';

export interface Platform {
  syscallEntry: SyscallEntryKind;
  /** The kvm_pvm module is loaded: software KVM with shadow paging. */
  pvm: boolean;
  description: string;
}

let cached: Platform | null = null;

export function platform(): Platform {
  cached ??= probe();
  return cached;
}

function probe(): Platform {
  const ram = GuestRam.create(4 << 20, 0, 'tskvm-probe');
  try {
    writeSystemArea(ram, 'ring3-jmp');
    ram.memory.bytes.set([0x0f, 0x05, 0xf4], USER_START); // syscall; hlt
    const guest = createGuestVm(ram, { rip: USER_START, rsp: USER_START + 0x1000 });
    try {
      const reason = guest.vcpu.run();
      const port = guest.vcpu.runView.getUint16(runLayout.io.port, true);
      if (reason !== KVM_EXIT_IO || port !== PORT_SYSCALL) {
        throw new TskvmError('TSKVM_ERR_KVM_PROBE', `platform probe: expected the syscall stub's exit, got ${guest.vcpu.exitReasonName(reason)} (port 0x${port.toString(16)})`);
      }
      const cpl = currentCs(guest.vcpu) & 3;
      const pvm = existsSync('/sys/module/kvm_pvm');
      return cpl === 3
        ? { syscallEntry: 'ring3-jmp', pvm, description: `${pvm ? 'PVM' : 'KVM'}: syscall stays in ring 3; LSTAR stub returns with jmp *%rcx` }
        : { syscallEntry: 'ring0-sysret', pvm, description: `${pvm ? 'PVM' : 'hardware KVM'}: syscall enters ring 0; LSTAR stub returns with sysretq` };
    } finally {
      guest.close();
    }
  } finally {
    ram.close();
  }
}
