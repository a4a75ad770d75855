/**
 * tskvm: run unmodified static x86-64 Linux programs in KVM micro-VMs from Node.js.
 *
 *   import { Machine } from 'tskvm';
 *   const m = Machine.fromFile('./hello', { args: ['world'], timeoutSec: 5 });
 *   const result = m.run();   // { status, outcome, … }
 *   m.close();
 */
export { Machine, type MachineOptions, type RunResult } from './hypervisor/machine.js';
export { TskvmError } from './errors.js';
export { platform, type Platform } from './hypervisor/platform.js';
export type { GuestFaultReport } from './hypervisor/guest-fault.js';
export type { AllowedPath } from './syscalls/path-policy.js';
