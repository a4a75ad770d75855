/**
 * The vCPU loop: KVM_RUN, look at why the guest exited, emulate, go back in.
 *
 *   exit IO port 1 (syscall stub / rewritten site) → Linux syscall, result in rax
 *   exit IO port 0 (`out %eax, $0`)                → guest API hypercall, result in rax
 *   exit IO port 2 (request entry stub)            → FS/GS bases back after it cleared their selectors
 *   exit IO port 0x80+v (IDT stub)                 → CPU exception v: the run ends
 *   EINTR                                          → our timer: the run ends (timeout)
 *   a syscall that waited until the deadline       → the run ends (timeout; deadline.ts)
 *   HLT / SHUTDOWN / MMIO                          → the guest did something only a kernel may
 *
 * It stops when the process exits or when a guest API call pauses it
 * (wait_for_requests, a response, a handler that returned), and says which.
 * One GuestRunner serves a vCPU and its process for their whole life: the
 * main VM while it boots, and a request VM across all its requests.
 */
import { TskvmError } from '../errors.js';
import { PORT_EXCEPTION_BASE, PORT_HYPERCALL, PORT_SEGMENT_BASES, PORT_SYSCALL, USER_START } from '../paging/layout.js';
import { SYSCALL_ENTRY } from '../paging/stubs.js';
import { dispatch, syscallTable } from '../syscalls/dispatch.js';
import { deadlineReached, endDeadline, startDeadline } from '../syscalls/deadline.js';
import { hypercallTable } from '../syscalls/api/hypercalls.js';
import { PROT_EXEC } from '../syscalls/address-space.js';
import type { PauseState, Process } from '../syscalls/process.js';
import {
  KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN,
  MSR, regIndex, run as runLayout, sregs as sregsLayout,
} from './kvm/abi.js';
import type { Vcpu } from './kvm/vcpu.js';
import type { GuestClock } from './guest-clock.js';
import { RunTimer } from './run-timer.js';
import { describeException, describeOther, formatRegisters, type GuestFaultReport } from './guest-fault.js';

export interface RunResult {
  /** Like a shell's $?: the exit code, or 128+signal for a process killed by one. */
  status: number;
  outcome: 'exit' | 'signal' | 'fault' | 'timeout' | 'pause';
  signal?: number;
  fault?: GuestFaultReport;
  /** Set when outcome is 'pause': the guest API call that handed control back. */
  pause?: PauseState;
  /** For anything but a normal exit or a pause: what happened, in one paragraph. */
  message?: string;
  /** Guest exits handled (syscalls, hypercalls, faults). */
  exits: number;
}

/** Argument registers as kvm_regs indices: syscalls use r10 where the C ABI (hypercalls) uses rcx. */
const SYSCALL_ARGS = [5, 4, 3, 10, 8, 9];
const HYPERCALL_ARGS = [5, 4, 3, 2, 8, 9];
const RIP = regIndex.rip * 2;
/** rip at the exit of PVM's LSTAR stub's `out` (its first instruction, 2 bytes): only there is a syscall two world switches. */
const SYSCALL_STUB_OUT_END = SYSCALL_ENTRY['ring3-jmp'] + 2;

let threadTimer: RunTimer | null = null;

export class GuestRunner {
  readonly vcpu: Vcpu;
  readonly process: Process;
  private readonly rewriteSyscalls: boolean;
  private readonly args = new Float64Array(6);
  private readonly unknownReported = new Set<number>();
  private signalMaskSet = false;
  private readonly clock: GuestClock | null;

  constructor(vcpu: Vcpu, process: Process, rewriteSyscalls: boolean, clock: GuestClock | null = null) {
    this.vcpu = vcpu;
    this.process = process;
    this.rewriteSyscalls = rewriteSyscalls;
    this.clock = clock;
  }

  /** Runs until the process exits, faults, pauses, or `timeoutMs` (0: no limit) passes. */
  run(timeoutMs: number): RunResult {
    const { vcpu, process: p, args } = this;
    const regs = vcpu.regs;
    const view = vcpu.runView;
    let exits = 0;
    const timer = timeoutMs > 0 ? this.startTimer(timeoutMs) : null;
    startDeadline(timeoutMs);
    try {
      for (;;) {
        const reason = vcpu.run();
        exits++;
        this.clock?.syncIfStale();
        if (reason === KVM_EXIT_IO) {
          const port = view.getUint16(runLayout.io.port, true);
          // Only the stubs' exact instructions count: `out %eax` (4 bytes) on ports 0 and 1, `out %al`
          // on an exception port, once. An `in`, another size or a `rep outs` there is a guest's
          // own port I/O, which a process may not do: it faults as it would natively (#GP).
          const size = view.getUint8(runLayout.io.size);
          const single = view.getUint8(runLayout.io.direction) === KVM_EXIT_IO_OUT && view.getUint32(runLayout.io.count, true) === 1;
          if (single && size === 4 && (port === PORT_SYSCALL || port === PORT_HYPERCALL)) {
            const syscall = port === PORT_SYSCALL;
            const argRegs = syscall ? SYSCALL_ARGS : HYPERCALL_ARGS;
            for (let i = 0; i < 6; i++) {
              const r = argRegs[i]! * 2;
              args[i] = (regs[r + 1]! | 0) * 0x1_0000_0000 + regs[r]!;
            }
            const nr = syscall ? regs[0]! + (regs[1]! | 0) * 0x1_0000_0000 : regs[0]!;
            if (syscall && this.rewriteSyscalls && regs[RIP]! === SYSCALL_STUB_OUT_END && regs[RIP + 1]! === 0) this.patchSyscallSite(vcpu.get('rcx') - 2);
            const def = syscall ? syscallTable[nr] : hypercallTable.get(nr);
            const result = dispatch(p, def, nr, args, this.unknownReported, syscall ? 'syscall' : 'hypercall');
            if (deadlineReached()) {
              // Name the guest's call site: past the stub, rcx holds where its `syscall` returns to.
              const site = regs[RIP]! === SYSCALL_STUB_OUT_END && regs[RIP + 1]! === 0 ? vcpu.get('rcx') : vcpu.get('rip');
              return timedOut(timeoutMs, `while it waited in ${def?.name ?? `call ${nr}`}`, site, exits);
            }
            if (p.exit) {
              const { status, signal, reason: why } = p.exit;
              return signal
                ? { status, signal, outcome: 'signal', exits, message: why }
                : { status, outcome: 'exit', exits };
            }
            vcpu.set('rax', result);
            if (p.pause) {
              const pause = p.pause;
              p.pause = null;
              return { status: 0, outcome: 'pause', pause, exits };
            }
            continue;
          }
          if (single && size === 1 && port === PORT_SEGMENT_BASES) {
            // The request entry stub cleared FS/GS selectors, which may have changed their bases.
            vcpu.setMsrs([[MSR.FS_BASE, p.fsBase], [MSR.GS_BASE, p.gsBase]]);
            continue;
          }
          if (single && size === 1 && port >= PORT_EXCEPTION_BASE && port < PORT_EXCEPTION_BASE + 32) {
            const cr2 = Number(vcpu.getSregs().readBigUInt64LE(sregsLayout.cr2));
            return faulted(describeException(port - PORT_EXCEPTION_BASE, p.mem, vcpu.registerDump(), cr2), exits);
          }
          const count = view.getUint32(runLayout.io.count, true);
          const what = `${view.getUint8(runLayout.io.direction) === KVM_EXIT_IO_OUT ? 'out' : 'in'} of ${size} byte${size > 1 ? 's' : ''}${count > 1 ? ` × ${count}` : ''}`;
          const fault = describeOther('io', `port I/O (${what} on port 0x${port.toString(16)})`, vcpu.registerDump());
          // KVM finishes an `in` only at the next KVM_RUN, writing rax and rip from its emulator's copy:
          // that would be after the reset has set the registers for the next request. Finish it now.
          vcpu.completeExit();
          return faulted(fault, exits);
        }
        switch (reason) {
          case KVM_EXIT_INTR:
            if (timer?.consume()) return timedOut(timeoutMs, '', vcpu.get('rip'), exits);
            continue; // another signal: go back in
          case KVM_EXIT_HLT:
            return faulted(describeOther('privileged', 'privileged instruction (hlt)', vcpu.registerDump()), exits);
          case KVM_EXIT_SHUTDOWN:
            return faulted(describeOther('shutdown', 'triple fault (the CPU could not deliver an exception)', vcpu.registerDump()), exits);
          case KVM_EXIT_MMIO: {
            const addr = Number(view.getBigUint64(runLayout.mmio.physAddr, true));
            return faulted(describeOther('io', `access to unbacked guest-physical address 0x${addr.toString(16)}`, vcpu.registerDump()), exits);
          }
          case KVM_EXIT_INTERNAL_ERROR:
          case KVM_EXIT_FAIL_ENTRY:
          default: {
            const detail = reason === KVM_EXIT_INTERNAL_ERROR
              ? `suberror ${view.getUint32(runLayout.internal.suberror, true)}`
              : reason === KVM_EXIT_FAIL_ENTRY ? `hardware reason 0x${view.getBigUint64(runLayout.failEntry.hardwareEntryFailureReason, true).toString(16)}` : '';
            const registers = vcpu.registerDump();
            throw new TskvmError('TSKVM_ERR_KVM_EXIT',
              `KVM_RUN exited with ${vcpu.exitReasonName(reason)} ${detail} at rip 0x${registers.rip.toString(16)}\n${formatRegisters(registers)}`,
              { exitReason: reason, registers });
          }
        }
      }
    } finally {
      timer?.disarm();
      endDeadline();
    }
  }

  /**
   * On PVM, `syscall` from ring 3 first traps into the hypervisor, which sends
   * it on to our LSTAR stub, whose `out` then exits to us: two world switches.
   * The CPU put the return address in rcx, so the two bytes before it are
   * normally the `syscall` (0f 05) the guest executed; replacing them with
   * `out %eax, $1` (e7 01, also two bytes) makes every later call from that
   * site one exit, straight to the same handler. Linux lets syscall clobber rcx
   * and r11, so leaving them intact is within the ABI.
   *
   * A guest can also jump into the stub with any rcx, so the site is only
   * patched inside the program's own executable image, and the patch is a
   * recorded host write: a request VM's reset copies the frozen page back. A
   * request could otherwise rewrite any 0f 05 of its code (the middle of some
   * other instruction, say) and change what the next request runs.
   */
  private patchSyscallSite(site: number): void {
    const { mem, mm } = this.process;
    if (site < USER_START || site + 2 > mem.size || mem.bytes[site] !== 0x0f || mem.bytes[site + 1] !== 0x05) return;
    const mapping = mm.mappingAt(site, site + 2);
    if (!mapping || mapping.label !== 'image' || (mapping.prot & PROT_EXEC) === 0) return;
    mem.recordWrite(site, 2);
    mem.bytes[site] = 0xe7;
    mem.bytes[site + 1] = PORT_SYSCALL;
  }

  private startTimer(timeoutMs: number): RunTimer {
    threadTimer ??= new RunTimer();
    if (!this.signalMaskSet) {
      // Once per vCPU: the mask stays in force for every later KVM_RUN.
      this.vcpu.setSignalMask(threadTimer.guestSignalMask);
      this.signalMaskSet = true;
    }
    threadTimer.arm(timeoutMs);
    return threadTimer;
  }
}

/** The run's time is up; `waiting`: the call it waited in, if it was not running; `rip`: where. */
function timedOut(timeoutMs: number, waiting: string, rip: number, exits: number): RunResult {
  return {
    status: 124, outcome: 'timeout', exits,
    message: `timeout: the program ran longer than ${timeoutMs / 1000} s and was stopped${waiting && ` ${waiting}`} at rip 0x${rip.toString(16)}`,
  };
}

function faulted(fault: GuestFaultReport, exits: number): RunResult {
  return {
    status: 128 + fault.signal, signal: fault.signal, outcome: 'fault', fault, exits,
    message: `guest fault: ${fault.summary}\n${formatRegisters(fault.registers)}`,
  };
}
