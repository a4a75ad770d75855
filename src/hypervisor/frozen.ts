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
import type { VcpuSnapshot } from './vcpu-state.js';

/** The vCPU at the freeze (vcpu-state.ts), plus what the process and the guest API recorded. */
export interface FrozenProgram extends VcpuSnapshot {
  ram: RamSource;
  entryKind: SyscallEntryKind;
  /** Its request entry stub sets FS/GS bases with WRFSBASE (stubs.ts): forks pass the bases in registers. */
  fsgsbase: boolean;
  /** The TSS type TR was loaded with (platform.ts); forks load it the same way. */
  taskRegister: TaskRegisterType;
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
