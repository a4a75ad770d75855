/**
 * The vCPU loop: KVM_RUN, look at why the guest exited, emulate, go back in.
 *
 *   exit IO port 1 (syscall stub / rewritten site) → Linux syscall, result in rax
 *   exit IO port 0 (`out %eax, $0`)                → guest API hypercall, result in rax
 *   exit IO port 2 (request entry stub)            → FS/GS bases back after it cleared their selectors
 *   exit IO port 0x80+v (IDT stub)                 → CPU exception v: to the guest's signal handler, or the run ends
 *   EINTR                                          → our timer: the run ends (timeout), or a guest timer's signal
 *   after any call                                 → pending signals delivered (signal-delivery.ts)
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
import { deadlineReached, endDeadline, restoreDeadline, saveDeadline, setSignalWake, startDeadline, timeLeft } from '../syscalls/deadline.js';
import { signalWake } from '../syscalls/signal.js';
import { nowMs } from '../syscalls/time.js';
import { restoreWriteQuota, saveWriteQuota } from '../syscalls/write-quota.js';
import { hypercallTable } from '../syscalls/api/hypercalls.js';
import { PROT_EXEC } from '../syscalls/address-space.js';
import type { PauseState, Process } from '../syscalls/process.js';
import { MSR, regIndex, sregs as sregsLayout } from './kvm/abi.js';
import { describeExit, type VcpuExit } from './kvm/exit.js';
import type { Vcpu } from './kvm/vcpu.js';
import type { GuestClock } from './guest-clock.js';
import { RunTimer } from './run-timer.js';
import { describeException, describeOther, exceptionFrame, formatRegisters, type GuestFaultReport } from './guest-fault.js';
import { faultToHandler, sigreturnCall, signalsAfterCall, signalsOnInterrupt, signalsWaiting, type Killed } from './signal-delivery.js';

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
const NR_RT_SIGRETURN = 15;
/** How soon to try again to deliver a timer's signal to a guest the timer found in a stub or the vDSO. */
const DELIVERY_RETRY_MS = 0.2;
const CLOCK_MONOTONIC = 1;
/** The shortest the run timer is armed for: a guest timer every nanosecond still lets the guest run between exits. */
const MIN_TIMER_MS = 0.02;

let threadTimer: RunTimer | null = null;
/** How long a thread runs before another runnable one gets the vCPU (the scheduler: thread-table.ts). */
const TIME_SLICE_MS = 5;

export class GuestRunner {
  readonly vcpu: Vcpu;
  readonly process: Process;
  private readonly rewriteSyscalls: boolean;
  private readonly args = new Float64Array(6);
  private readonly unknownReported = new Set<number>();
  private signalMaskSet = false;
  private readonly clock: GuestClock | null;
  /** When the run timer fires (performance.now() ms); Infinity when it is not armed. */
  private timerAt = Infinity;

  constructor(vcpu: Vcpu, process: Process, rewriteSyscalls: boolean, clock: GuestClock | null = null) {
    this.vcpu = vcpu;
    this.process = process;
    this.rewriteSyscalls = rewriteSyscalls;
    this.clock = clock;
  }

  /** Runs until the process exits, faults, pauses, or `timeoutMs` (0: no limit) passes. */
  run(timeoutMs: number): RunResult {
    startDeadline(timeoutMs);
    setSignalWake(signalWake(this.process));
    this.timerAt = Infinity;
    const context: ExitContext = {
      timeoutMs, args: this.args, unknownReported: this.unknownReported,
      timerFired: () => {
        if (!threadTimer?.consume()) return false;
        this.timerAt = Infinity;
        return true;
      },
      patchSyscallSite: this.rewriteSyscalls ? (site) => this.patchSyscallSite(site) : null,
      slicing: false,
      rearm: (retryMs) => this.rearm(retryMs, context),
    };
    this.rearm(undefined, context);
    let exits = 0;
    try {
      for (;;) {
        const exit = this.vcpu.run();
        exits++;
        this.clock?.syncIfStale();
        const end = handleExit(exit, this.vcpu, this.process, context);
        if (end) {
          // Completed in place: `{ ...end, exits }` measured 8 µs more per request (bench/requests.mjs).
          const result = end as RunResult;
          result.exits = exits;
          return result;
        }
      }
    } finally {
      threadTimer?.disarm();
      this.timerAt = Infinity;
      endDeadline();
      setSignalWake(null);
    }
  }

  /**
   * Arms the run timer for the earliest of the run's deadline, the guest's next timer, the end of
   * the time slice while the program has several threads (thread-table.ts), or `retryMs` from now,
   * unless it is already armed for sooner: a timer that fires early only costs an exit, after which
   * this runs again.
   */
  private rearm(retryMs: number | undefined, ctx: ExitContext): void {
    const now = performance.now();
    let at = now + timeLeft();
    ctx.slicing = this.process.threads.count > 1;
    if (ctx.slicing) at = Math.min(at, now + TIME_SLICE_MS);
    const due = this.process.signals.nextWake(this.process.threadSignals.blocked);
    if (due !== Infinity) at = Math.min(at, now + (due - nowMs(CLOCK_MONOTONIC)));
    if (retryMs !== undefined) at = Math.min(at, now + retryMs);
    if (at === Infinity || (this.timerAt > now && this.timerAt <= at + 0.05)) return;
    this.timer().arm(Math.max(MIN_TIMER_MS, at - now));
    this.timerAt = at;
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
   * patched inside code: the ELF images (the program's own and its dynamic
   * loader) or a file mapped with PROT_EXEC (a shared library); the patch is a
   * recorded host write: a request VM's reset copies the frozen page back. A
   * request could otherwise rewrite any 0f 05 of its code (the middle of some
   * other instruction, say) and change what the next request runs.
   */
  private patchSyscallSite(site: number): void {
    const { mem, mm } = this.process;
    if (site < USER_START || site + 2 > mem.size) return;
    const mapping = mm.mappingAt(site, site + 2);
    if (!mapping || (mapping.label !== 'image' && mapping.label !== 'file') || (mapping.prot & PROT_EXEC) === 0) return;
    const code = mem.read(site, 2);
    if (code[0] !== 0x0f || code[1] !== 0x05) return;
    mem.write(site, 2).set([0xe7, PORT_SYSCALL]);
  }

  /** The thread's run timer, its signal let into this vCPU's KVM_RUN. */
  private timer(): RunTimer {
    threadTimer ??= new RunTimer();
    if (!this.signalMaskSet) {
      // Once per vCPU: the mask stays in force for every later KVM_RUN.
      this.vcpu.setSignalMask(threadTimer.guestSignalMask);
      this.signalMaskSet = true;
    }
    return threadTimer;
  }
}

/**
 * Runs `fn`, which runs other VMs on this thread, while a run is stopped inside a host call (a
 * sys_fetch waiting for its answer: request-worker.ts). The thread's run state — the deadline, the
 * write quota, the run timer — belongs to the stopped run: it is put back afterwards, and the timer
 * armed again for the time the stopped run has left (at once, if none).
 */
export function nestedRun<T>(fn: () => T): T {
  const deadline = saveDeadline();
  const quota = saveWriteQuota();
  try {
    return fn();
  } finally {
    restoreDeadline(deadline);
    restoreWriteQuota(quota);
    const left = timeLeft();
    if (threadTimer && left !== Infinity) threadTimer.arm(Math.max(1, left));
  }
}

/** What handleExit needs of the vCPU: registers, and the few calls an exit may make. */
export type ExitCpu = Pick<Vcpu, 'regs' | 'get' | 'set' | 'registerDump' | 'getSregs' | 'setSregs' | 'setMsrs' | 'completeExit' | 'getXsave' | 'setXsave' | 'markRegsDirty'>;

/** What handleExit needs of the run it is part of. */
export interface ExitContext {
  timeoutMs: number;
  /** Scratch for the six call arguments. */
  args: Float64Array;
  /** Unknown call numbers already reported (dispatch.ts). */
  unknownReported: Set<number>;
  /** Whether the run timer fired (and takes its signal off the thread). */
  timerFired: () => boolean;
  /** Rewrites a `syscall` at `site` to a direct exit (PVM); null where that is not done. */
  patchSyscallSite: ((site: number) => void) | null;
  /** Whether the run timer is cutting time slices (the program has several threads). */
  slicing?: boolean;
  /** Arms the run timer again for what is next (the deadline, a guest timer, a time slice, or `retryMs` from now). */
  rearm?: (retryMs?: number) => void;
}

/**
 * Decides what one exit means, and does it: a Linux syscall or a guest-API call is dispatched and
 * its result put in rax; a CPU exception, a forbidden instruction or the timer ends the run. Returns
 * null to go back into the guest, or how the run ended. It touches the vCPU only through `cpu`, so
 * tests drive it with exits they build, on a machine without KVM.
 */
export function handleExit(exit: VcpuExit, cpu: ExitCpu, p: Process, ctx: ExitContext): Omit<RunResult, 'exits'> | null {
  switch (exit.kind) {
    case 'io': {
      const { port, size } = exit;
      // Only the stubs' exact instructions count: `out %eax` (4 bytes) on ports 0 and 1, `out %al`
      // on an exception port, once. An `in`, another size or a `rep outs` there is a guest's own
      // port I/O, which a process may not do: it faults as it would natively (#GP).
      const single = exit.out && exit.count === 1;
      if (single && size === 4 && (port === PORT_SYSCALL || port === PORT_HYPERCALL)) return call(port === PORT_SYSCALL, cpu, p, ctx);
      if (single && size === 1 && port === PORT_SEGMENT_BASES) {
        // The request entry stub cleared FS/GS selectors, which may have changed their bases.
        cpu.setMsrs([[MSR.FS_BASE, p.fsBase], [MSR.GS_BASE, p.gsBase]]);
        return null;
      }
      if (single && size === 1 && port >= PORT_EXCEPTION_BASE && port < PORT_EXCEPTION_BASE + 32) {
        const vector = port - PORT_EXCEPTION_BASE;
        const cr2 = Number(cpu.getSregs().readBigUInt64LE(sregsLayout.cr2));
        const registers = cpu.registerDump();
        const handled = faultToHandler(cpu, p, vector, exceptionFrame(p.mem, Number(registers.rsp)), cr2);
        if (handled === true) return null;
        const fault = describeException(vector, p.mem, registers, cr2);
        if (handled) return { ...faulted(fault), status: 128 + handled.signal, signal: handled.signal, message: `${handled.message}\nguest fault: ${fault.summary}\n${formatRegisters(fault.registers)}` };
        return faulted(fault);
      }
      const what = `${exit.out ? 'out' : 'in'} of ${size} byte${size > 1 ? 's' : ''}${exit.count > 1 ? ` × ${exit.count}` : ''}`;
      const fault = describeOther('io', `port I/O (${what} on port 0x${port.toString(16)})`, cpu.registerDump());
      // KVM finishes an `in` only at the next KVM_RUN, writing rax and rip from its emulator's copy:
      // that would be after the reset has set the registers for the next request. Finish it now.
      cpu.completeExit();
      return faulted(fault);
    }
    case 'interrupted': {
      if (!ctx.timerFired()) return null; // another signal: go back in
      if (timeLeft() <= 0) return timedOut(ctx.timeoutMs, '', cpu.get('rip'));
      const outcome = signalsOnInterrupt(cpu, p); // early: one of the guest's own timers
      if (outcome !== null && outcome !== 'later') return killed(p, outcome);
      // A time slice ended: the next runnable thread gets the vCPU. (A slice's signal may also come
      // after the program is back to one thread, armed before; it is no timeout.) It takes what is
      // pending for it before it goes on, as after any switch: a thread whose wait a signal ended
      // (pthread_cancel's) must run its handler, not return EINTR into its wait loop.
      let later = outcome === 'later';
      if (ctx.slicing && p.threads.preempt(p)) {
        const taken = signalsOnInterrupt(cpu, p);
        if (taken !== null && taken !== 'later') return killed(p, taken);
        later ||= taken === 'later';
      }
      ctx.rearm?.(later ? DELIVERY_RETRY_MS : undefined);
      return null;
    }
    case 'hlt':
      return faulted(describeOther('privileged', 'privileged instruction (hlt)', cpu.registerDump()));
    case 'shutdown':
      return faulted(describeOther('shutdown', 'triple fault (the CPU could not deliver an exception)', cpu.registerDump()));
    case 'mmio':
      // A piece of a sparse address space with no memory slot (memory-slots.ts): nothing is mapped there.
      return faulted(describeOther('io', `access to unmapped memory at 0x${exit.address.toString(16)} (no memory slot there)`, cpu.registerDump()));
    default: {
      const registers = cpu.registerDump();
      throw new TskvmError('TSKVM_ERR_KVM_EXIT', `KVM_RUN exited with ${describeExit(exit)} at rip 0x${registers.rip.toString(16)}\n${formatRegisters(registers)}`,
        { exit, registers });
    }
  }
}

/** A syscall (port 1: Linux's registers) or a hypercall (port 0: the C calling convention). */
function call(syscall: boolean, cpu: ExitCpu, p: Process, ctx: ExitContext): Omit<RunResult, 'exits'> | null {
  const { args } = ctx;
  const regs = cpu.regs;
  const argRegs = syscall ? SYSCALL_ARGS : HYPERCALL_ARGS;
  for (let i = 0; i < 6; i++) {
    const r = argRegs[i]! * 2;
    args[i] = (regs[r + 1]! | 0) * 0x1_0000_0000 + regs[r]!;
  }
  const nr = syscall ? regs[0]! + (regs[1]! | 0) * 0x1_0000_0000 : regs[0]!;
  const viaStub = regs[RIP]! === SYSCALL_STUB_OUT_END && regs[RIP + 1]! === 0;
  if (syscall && viaStub && ctx.patchSyscallSite) ctx.patchSyscallSite(cpu.get('rcx') - 2);
  const def = syscall ? syscallTable[nr] : hypercallTable.get(nr);
  const result = dispatch(p, def, nr, args, ctx.unknownReported, syscall ? 'syscall' : 'hypercall');
  if (deadlineReached()) {
    // Name the guest's call site: past the stub, rcx holds where its `syscall` returns to.
    return timedOut(ctx.timeoutMs, `while it waited in ${def?.name ?? `call ${nr}`}`, viaStub ? cpu.get('rcx') : cpu.get('rip'));
  }
  if (p.exit) return exited(p);
  if (syscall && nr === NR_RT_SIGRETURN) {
    const outcome = sigreturnCall(cpu, p, viaStub);
    ctx.rearm?.(); // the mask it restored may let a timer's signal through again
    return outcome ? killed(p, outcome) : null;
  }
  const threads = p.threads;
  const caller = threads.current;
  const parked = threads.switchWanted;
  // A call run again when its thread next runs keeps its number in rax.
  if (!parked || (caller.wait?.kind !== 'file' && caller.wait?.kind !== 'signal')) cpu.set('rax', result);
  if (parked && !threads.switchThreads(p)) {
    if (deadlineReached()) {
      const name = def?.name ?? `call ${nr}`;
      const waiting = threads.count > 1 ? `while all ${threads.count} threads waited (this one in ${name})` : `while it waited in ${name}`;
      return timedOut(ctx.timeoutMs, waiting, viaStub ? cpu.get('rcx') : cpu.get('rip'));
    }
    const { status, signal, reason: why } = p.exit!;
    return { status, signal, outcome: 'signal', message: why };
  }
  if ((threads.count > 1) !== (ctx.slicing ?? false)) ctx.rearm?.();
  if (p.pause) {
    const pause = p.pause;
    p.pause = null;
    return { status: 0, outcome: 'pause', pause };
  }
  // ERESTARTSYS is a syscall's only: a hypercall's result is the guest's, whatever its value. A
  // thread that parked returns (or is, another thread) whatever its wait gave: rax, no restart.
  const settled = parked ? cpu.get('rax') : syscall ? result : 0;
  if (signalsWaiting(p, settled)) {
    const outcome = parked
      ? signalsAfterCall(cpu, p, threads.current === caller && viaStub, -1, settled)
      : signalsAfterCall(cpu, p, viaStub, nr, settled);
    ctx.rearm?.();
    if (outcome) return killed(p, outcome);
  }
  return null;
}

function exited(p: Process): Omit<RunResult, 'exits'> {
  const { status, signal, reason: why } = p.exit!;
  return signal ? { status, signal, outcome: 'signal', message: why } : { status, outcome: 'exit' };
}

/** A signal ended the process (its default action, or a handler's frame that could not be written). */
function killed(p: Process, how: Killed): Omit<RunResult, 'exits'> {
  p.exit = { status: 128 + how.signal, signal: how.signal, reason: how.message };
  return exited(p);
}

/** The run's time is up; `waiting`: the call it waited in, if it was not running; `rip`: where. */
function timedOut(timeoutMs: number, waiting: string, rip: number): Omit<RunResult, 'exits'> {
  return {
    status: 124, outcome: 'timeout',
    message: `timeout: the program ran longer than ${timeoutMs / 1000} s and was stopped${waiting && ` ${waiting}`} at rip 0x${rip.toString(16)}`,
  };
}

function faulted(fault: GuestFaultReport): Omit<RunResult, 'exits'> {
  return {
    status: 128 + fault.signal, signal: fault.signal, outcome: 'fault', fault,
    message: `guest fault: ${fault.summary}\n${formatRegisters(fault.registers)}`,
  };
}
