/**
 * From a syscall number to its emulation. One table, indexed by number, built
 * from the family files; the same definitions drive `--trace`.
 *
 * A handler that touches a bad guest pointer throws GuestFault; here that
 * becomes -EFAULT, as the kernel's copy_from_user would make it. One that would wait for a host file
 * while other threads could run throws WouldBlock; here its thread parks (thread-table.ts). Any other
 * exception is a bug of ours that the guest found: it becomes
 * TSKVM_ERR_INTERNAL naming the call, and whoever runs the guest treats the VM
 * as dirty (a request VM answers 500 and is reset).
 */
import { TskvmError } from '../errors.js';
import { GuestFault } from '../paging/guest-memory.js';
import { E } from '../host/errno.js';
import type { Process } from './process.js';
import { setParkable, WouldBlock } from './deadline.js';
import { wallMs } from './thread-table.js';
import type { SyscallArgs, SyscallDef } from './syscall.js';
import { formatCall, formatRawCall } from './trace.js';
import { fsSyscalls } from './fs/index.js';
import { mmSyscalls } from './mm.js';
import { procSyscalls } from './proc.js';
import { signalSyscalls } from './signal.js';
import { timeSyscalls } from './time.js';
import { threadSyscalls } from './threads.js';

const MAX_SYSCALL = 512;
/** Distinct unsupported calls reported per VM; the rest are answered alike, unreported. */
const MAX_UNKNOWN_REPORTED = 64;

function buildTable(families: SyscallDef[][]): Array<SyscallDef | undefined> {
  const table = new Array<SyscallDef | undefined>(MAX_SYSCALL).fill(undefined);
  for (const def of families.flat()) {
    if (table[def.nr]) throw new Error(`syscall ${def.nr} defined twice (${table[def.nr]!.name}, ${def.name})`);
    table[def.nr] = def;
  }
  return table;
}

export const syscallTable = buildTable([fsSyscalls, mmSyscalls, procSyscalls, signalSyscalls, timeSyscalls, threadSyscalls]);

/**
 * Runs one guest→host call (`def`, found by number `nr`, or undefined when
 * there is no such call) for process `p`; returns the value for rax.
 * Unknown numbers answer -ENOSYS and are reported once each.
 */
export function dispatch(p: Process, def: SyscallDef | undefined, nr: number, args: SyscallArgs, unknownReported: Set<number>, kind: 'syscall' | 'hypercall'): number {
  let result: number;
  if (!def) {
    const key = kind === 'syscall' ? nr : -nr - 1;
    if (!unknownReported.has(key) && unknownReported.size < MAX_UNKNOWN_REPORTED) {
      unknownReported.add(key);
      const more = unknownReported.size === MAX_UNKNOWN_REPORTED ? ` (${MAX_UNKNOWN_REPORTED} reported: later ones are not)` : '';
      p.warn(`unsupported ${kind} ${kind === 'syscall' ? nr : '0x' + nr.toString(16)}: returning ENOSYS${more}`);
    }
    result = -E.ENOSYS;
  } else {
    try {
      setParkable(p.threads.count > 1);
      result = def.handler(p, args);
    } catch (e) {
      if (e instanceof GuestFault) {
        result = -E.EFAULT;
      } else if (e instanceof WouldBlock) {
        const until = e.timeoutMs < 0 ? Infinity : wallMs() + e.timeoutMs;
        p.threads.block({ kind: 'file', files: e.files, until, onTimeout: e.onTimeout, ready: false });
        result = 0; // the call runs again, or returns onTimeout
      } else {
        const call = formatRawCall(nr, def, args);
        throw new TskvmError('TSKVM_ERR_INTERNAL', `the host failed in ${kind} ${call}: ${(e as Error)?.message ?? e}`, { call, cause: (e as Error)?.stack ?? String(e) });
      }
    } finally {
      setParkable(false);
    }
  }
  if (p.trace) p.trace(formatCall(nr, def, args, result, p.mem));
  return result;
}
