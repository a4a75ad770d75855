/**
 * A frozen program as plain data: what Machine.freeze() records of a VM that reached
 * wait_for_requests*, and what request VMs are forked from (src/runtime/), on this thread or another.
 * Memory travels as memfds (by number: fds are process-wide); everything else is copied.
 */
import type { RamSource } from '../paging/guest-ram.js';
import type { SyscallEntryKind } from '../paging/stubs.js';
import type { AddressSpaceOptions } from '../syscalls/address-space.js';
import type { ApiLimits } from '../syscalls/api/guest-api.js';
import type { AllowedPath } from '../syscalls/path-policy.js';
import type { FrozenProcessState } from '../syscalls/process-state.js';
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
  /** wait_for_requests_paused: requests resume the guest and fill the struct at `requestAddress`. */
  paused: boolean;
  requestAddress: number;
  limits: ApiLimits;
  process: {
    /** How the process was made: a fork makes its own the same way. */
    argv: string[];
    env: string[];
    exePath: string;
    allowed: AllowedPath[];
    layout: Omit<AddressSpaceOptions, 'release'>;
    /** What the guest made of it (process-state.ts): every piece, frozen. */
    state: FrozenProcessState;
  };
}
