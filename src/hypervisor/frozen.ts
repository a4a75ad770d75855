/**
 * A frozen program as plain data: what Machine.freeze() records of a VM that reached
 * wait_for_requests*, and what request VMs are forked from (src/runtime/), on this thread or another.
 * Memory travels as memfds (by number: fds are process-wide); everything else is copied.
 */
import type { RamSource } from '../paging/guest-ram.js';
import type { SyscallEntryKind } from '../paging/stubs.js';
import type { AddressSpaceOptions, AddressSpaceSnapshot } from '../syscalls/address-space.js';
import type { ApiLimits } from '../syscalls/api/guest-api.js';
import type { FrozenFileTable } from '../syscalls/fd-table.js';
import type { AllowedPath } from '../syscalls/path-policy.js';
import type { SignalSnapshot } from '../syscalls/signal-state.js';
import type { TaskRegisterType } from './cpu-setup.js';

export interface FrozenProgram {
  ram: RamSource;
  entryKind: SyscallEntryKind;
  /** Its request entry stub sets FS/GS bases with WRFSBASE (stubs.ts): forks pass the bases in registers. */
  fsgsbase: boolean;
  /** The TSS type TR was loaded with (platform.ts); forks load it the same way. */
  taskRegister: TaskRegisterType;
  /** struct kvm_sregs at the freeze (ring 3, long mode): restored after a fault left the vCPU in ring 0. */
  sregs: Uint8Array;
  /** The FPU/SSE/AVX registers at the freeze: every request starts from them, so none sees another's vector registers. */
  xsave: Uint8Array;
  /** struct kvm_regs as 32-bit words (Vcpu.regs), just after the wait_for_requests* call returned 0. */
  regs: Uint32Array;
  fsBase: number;
  gsBase: number;
  /** wait_for_requests_paused: requests resume the guest and fill the struct at `requestAddress`. */
  paused: boolean;
  requestAddress: number;
  /** register_func calls: [index, guest address]. */
  handlers: Array<[number, number]>;
  /** What the program chose with sys_make_ephemeral, or null. */
  ephemeral: boolean | null;
  limits: ApiLimits;
  process: {
    argv: string[];
    env: string[];
    umask: number;
    threadName: Uint8Array;
    clearChildTid: number;
    exePath: string;
    allowed: AllowedPath[];
    cwd: string;
    files: FrozenFileTable;
    layout: Omit<AddressSpaceOptions, 'release'>;
    mm: AddressSpaceSnapshot;
    signals: SignalSnapshot;
  };
}
