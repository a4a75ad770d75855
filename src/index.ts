/**
 * tskvm: run unmodified static x86-64 Linux programs in KVM micro-VMs from Node.js.
 *
 * Programs that serve requests (docs/GUEST_ABI.md): boot once, freeze, and serve
 * each request from a copy-on-write fork that is reset afterwards.
 *
 *   import { Program } from 'tskvm';
 *   const program = await Program.load('./hello', { concurrency: 2, maxRequestTime: 8 });
 *   const res = await program.request({ method: 'GET', url: '/x' });   // { status, contentType, headers, body }
 *   program.stats(); await program.close();
 *
 * Plain programs, run to completion:
 *
 *   import { Machine } from 'tskvm';
 *   const m = Machine.fromFile('./hello', { args: ['world'], timeoutSec: 5 });
 *   const result = m.run();   // { status, outcome, … }
 *   m.close();
 */
export { Program, type ProgramOptions, type ProgramRequest, type ProgramResponse, type ProgramStats } from './runtime/program.js';
export { startServer, type ServerOptions } from './server/server.js';
export { Machine, type MachineOptions, type RunResult } from './hypervisor/machine.js';
export { SYSTEM_LIBRARY_PATHS, systemLibraryPaths } from './hypervisor/interpreter.js';
export { TskvmError } from './errors.js';
export { platform, type Platform } from './hypervisor/platform.js';
export type { GuestFaultReport } from './hypervisor/guest-fault.js';
export type { AllowedPath } from './syscalls/path-policy.js';
