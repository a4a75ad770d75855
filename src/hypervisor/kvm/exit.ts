/**
 * Why KVM_RUN came back, as a value: the exit reason and its data in the kvm_run page, decoded once
 * into a discriminated union that code can switch on and tests can build by hand.
 */
import { exitReasons, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, run as runLayout } from './abi.js';

export type VcpuExit =
  /** An `in` or `out` (`count` > 1: a `rep ins/outs`), `size` bytes each, on `port`. */
  | { kind: 'io'; port: number; out: boolean; size: number; count: number }
  /** An access to guest-physical memory with nothing behind it. */
  | { kind: 'mmio'; address: number; write: boolean; size: number }
  | { kind: 'hlt' }
  /** A triple fault: the CPU could not deliver an exception. */
  | { kind: 'shutdown' }
  /** A signal interrupted KVM_RUN (the run timer, or another). */
  | { kind: 'interrupted' }
  | { kind: 'internal-error'; suberror: number }
  | { kind: 'fail-entry'; hardwareReason: bigint }
  | { kind: 'other'; reason: number; name: string };

export function decodeExit(reason: number, run: DataView): VcpuExit {
  switch (reason) {
    case KVM_EXIT_IO:
      return {
        kind: 'io', port: run.getUint16(runLayout.io.port, true), out: run.getUint8(runLayout.io.direction) === KVM_EXIT_IO_OUT,
        size: run.getUint8(runLayout.io.size), count: run.getUint32(runLayout.io.count, true),
      };
    case KVM_EXIT_MMIO:
      return {
        kind: 'mmio', address: Number(run.getBigUint64(runLayout.mmio.physAddr, true)),
        write: run.getUint8(runLayout.mmio.isWrite) !== 0, size: run.getUint32(runLayout.mmio.len, true),
      };
    case KVM_EXIT_HLT: return { kind: 'hlt' };
    case KVM_EXIT_SHUTDOWN: return { kind: 'shutdown' };
    case KVM_EXIT_INTR: return { kind: 'interrupted' };
    case KVM_EXIT_INTERNAL_ERROR: return { kind: 'internal-error', suberror: run.getUint32(runLayout.internal.suberror, true) };
    case KVM_EXIT_FAIL_ENTRY: return { kind: 'fail-entry', hardwareReason: run.getBigUint64(runLayout.failEntry.hardwareEntryFailureReason, true) };
    default: return { kind: 'other', reason, name: exitReasons[reason] ?? `#${reason}` };
  }
}

/** The exit in a message: `KVM_EXIT_IO (out of 4 bytes on port 0x1)`. */
export function describeExit(exit: VcpuExit): string {
  switch (exit.kind) {
    case 'io': return `KVM_EXIT_IO (${exit.out ? 'out' : 'in'} of ${exit.size} bytes${exit.count > 1 ? ` × ${exit.count}` : ''} on port 0x${exit.port.toString(16)})`;
    case 'mmio': return `KVM_EXIT_MMIO (${exit.write ? 'write' : 'read'} of ${exit.size} bytes at 0x${exit.address.toString(16)})`;
    case 'hlt': return 'KVM_EXIT_HLT';
    case 'shutdown': return 'KVM_EXIT_SHUTDOWN';
    case 'interrupted': return 'KVM_EXIT_INTR';
    case 'internal-error': return `KVM_EXIT_INTERNAL_ERROR (suberror ${exit.suberror})`;
    case 'fail-entry': return `KVM_EXIT_FAIL_ENTRY (hardware reason 0x${exit.hardwareReason.toString(16)})`;
    case 'other': return exit.name;
  }
}
