/**
 * A Machine is one program in one micro-VM: guest RAM, a VM with one vCPU, and
 * the emulated Linux process around them. Creation reads top to bottom like
 * the list of steps it is:
 *
 *   parse the ELF → guest RAM (memfd) → system area (page tables, GDT/TSS/IDT,
 *   stubs) → ELF segments → entry stack (argv, envp, auxv) → process state
 *   (files, paths, address space, signals) → VM + vCPU in ring 3 at the entry
 *
 * `run()` is the vCPU loop: KVM_RUN, look at why the guest exited, emulate,
 * repeat — until the program exits, faults or runs out of time.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { TskvmError } from '../errors.js';
import { parseElf, type ElfImage } from '../elf/parse-elf.js';
import { loadSegments } from '../elf/load-elf.js';
import { buildInitialStack, standardAuxv } from '../elf/initial-stack.js';
import { GuestRam } from '../paging/guest-ram.js';
import {
  HUGE_PAGE, MAX_ADDRESS_SPACE, MIN_ADDRESS_SPACE, PORT_EXCEPTION_BASE, PORT_HYPERCALL, PORT_SYSCALL, STACK_GUARD, STACK_SIZE, USER_START,
} from '../paging/layout.js';
import { AddressSpace } from '../syscalls/address-space.js';
import { FileTable, StdioFile, type OpenFile } from '../syscalls/fd-table.js';
import { PathPolicy, type AllowedPath } from '../syscalls/path-policy.js';
import { Process } from '../syscalls/process.js';
import { SignalState } from '../syscalls/signal-state.js';
import { dispatch, syscallTable } from '../syscalls/dispatch.js';
import { hypercallTable } from '../syscalls/api/hypercalls.js';
import {
  KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, MSR,
  regIndex, run as runLayout, sregs as sregsLayout,
} from './kvm/abi.js';
import { SYSCALL_ENTRY } from '../paging/stubs.js';
import { Kvm } from './kvm/system.js';
import { createGuestVm, writeSystemArea, type GuestVm } from './guest-vm.js';
import { platform } from './platform.js';
import { RunTimer } from './run-timer.js';
import { describeException, describeOther, formatRegisters, type GuestFaultReport } from './guest-fault.js';

export interface MachineOptions {
  /** argv[0]; defaults to the ELF's path as given. */
  argv0?: string;
  /** Arguments after argv[0]. */
  args?: string[];
  /** The environment, `KEY=value` each, exactly as the guest will see it. */
  env?: string[];
  allowed?: AllowedPath[];
  cwd?: string;
  /** Guest memory in MiB: the whole address space, image and stack included. */
  maxMemoryMiB?: number;
  /** Wall-clock limit for run(), in seconds; 0 or absent for none. */
  timeoutSec?: number;
  /**
   * Rewrite each `syscall` instruction the program executes into `out %eax, $1`
   * after its first use, so later calls from that site cost one exit instead of
   * two (see patchSyscallSite). Default true.
   */
  rewriteSyscalls?: boolean;
  maxOpenFiles?: number;
  stdio?: [OpenFile, OpenFile, OpenFile];
  trace?: ((line: string) => void) | null;
  warn?: (message: string) => void;
}

export interface RunResult {
  /** Like a shell's $?: the exit code, or 128+signal for a process killed by one. */
  status: number;
  outcome: 'exit' | 'signal' | 'fault' | 'timeout';
  signal?: number;
  fault?: GuestFaultReport;
  /** For anything but a normal exit: what happened, in one paragraph. */
  message?: string;
  /** Guest exits handled (syscalls, hypercalls, faults). */
  exits: number;
}

const DEFAULT_MEMORY_MIB = 1024;
/** Where static-pie programs are placed (their own code relocates them). */
const PIE_BASE = 0x40_0000;
/** Argument registers as kvm_regs indices: syscalls use r10 where the C ABI (hypercalls) uses rcx. */
const SYSCALL_ARGS = [5, 4, 3, 10, 8, 9];
const HYPERCALL_ARGS = [5, 4, 3, 2, 8, 9];
const RIP = regIndex.rip * 2;
/** rip at the exit of the LSTAR stub's `out` (its first instruction, 2 bytes). */
const SYSCALL_STUB_OUT_END = SYSCALL_ENTRY + 2;

let threadTimer: RunTimer | null = null;

export class Machine {
  readonly image: ElfImage;
  readonly process: Process;
  readonly ram: GuestRam;
  private readonly guest: GuestVm;
  private readonly timeoutMs: number;
  private readonly args = new Float64Array(6);
  private readonly unknownReported = new Set<number>();
  private readonly rewriteSyscalls: boolean;
  private closed = false;

  /** Loads the ELF at `path` (the guest sees this path as its own). */
  static fromFile(path: string, options: MachineOptions = {}): Machine {
    let file: Buffer;
    try {
      file = readFileSync(path);
    } catch (e) {
      throw new TskvmError('TSKVM_ERR_PROGRAM_NOT_FOUND', `cannot read program ${path}: ${(e as Error).message}`);
    }
    return new Machine(file, resolvePath(path), { argv0: path, ...options });
  }

  constructor(file: Uint8Array, exePath: string, options: MachineOptions = {}) {
    const entryKind = platform().syscallEntry;
    const size = addressSpaceSize(options.maxMemoryMiB ?? DEFAULT_MEMORY_MIB);
    const stackTop = size;
    const stackBottom = stackTop - STACK_SIZE;
    const guardStart = stackBottom - STACK_GUARD;
    this.image = parseElf(file, { minAddress: USER_START, maxAddress: guardStart, pieBase: PIE_BASE }, exePath);
    this.timeoutMs = (options.timeoutSec ?? 0) * 1000;
    this.rewriteSyscalls = options.rewriteSyscalls ?? true;

    this.ram = new GuestRam(size, 'tskvm:' + exePath);
    try {
      writeSystemArea(this.ram, entryKind, [[guardStart, stackBottom]]);
      loadSegments(this.image, file, this.ram.memory.bytes);
      const argv = [options.argv0 ?? exePath, ...(options.args ?? [])];
      const stack = buildInitialStack({
        stackTop, argv, envp: options.env ?? [], execfn: argv[0]!, random: randomBytes(16),
        auxv: standardAuxv(this.image, Kvm.shared().cpuidLeaf(1)[3]),
      });
      this.ram.memory.put(stack.sp, stack.bytes);

      const warn = options.warn ?? ((m: string) => process.stderr.write(`tskvm: ${m}\n`));
      this.process = new Process({
        mem: this.ram.memory,
        files: new FileTable(options.stdio ?? [new StdioFile(0), new StdioFile(1), new StdioFile(2)], options.maxOpenFiles ?? 1024),
        paths: new PathPolicy({ allowed: options.allowed ?? [], cwd: options.cwd ?? '/', exe: { hostPath: exePath, guestPath: exePath } }),
        mm: new AddressSpace({
          userStart: USER_START, end: size, imageStart: this.image.start, brkStart: this.image.brkStart,
          stackTop, stackSize: STACK_SIZE, stackGuard: STACK_GUARD, release: (addr, len) => this.ram.release(addr, len),
        }),
        signals: new SignalState(),
        argv, env: options.env ?? [], trace: options.trace ?? null, warn,
      });
      this.guest = createGuestVm(this.ram, { rip: this.image.entry, rsp: stack.sp });
    } catch (e) {
      this.ram.close();
      throw e;
    }
    const vcpu = this.guest.vcpu;
    this.process.cpu = {
      setFsBase: (v) => vcpu.setMsrs([[MSR.FS_BASE, v]]),
      setGsBase: (v) => vcpu.setMsrs([[MSR.GS_BASE, v]]),
    };
  }

  /** Runs the program until it exits, faults or times out. Blocks the calling thread. */
  run(): RunResult {
    const vcpu = this.guest.vcpu;
    const regs = vcpu.regs;
    const view = vcpu.runView;
    const p = this.process;
    const args = this.args;
    let exits = 0;
    const timer = this.timeoutMs > 0 ? this.startTimer() : null;
    try {
      for (;;) {
        const reason = vcpu.run();
        exits++;
        if (reason === KVM_EXIT_IO) {
          const port = view.getUint16(runLayout.io.port, true);
          if (port === PORT_SYSCALL || port === PORT_HYPERCALL) {
            const syscall = port === PORT_SYSCALL;
            const argRegs = syscall ? SYSCALL_ARGS : HYPERCALL_ARGS;
            for (let i = 0; i < 6; i++) {
              const r = argRegs[i]! * 2;
              args[i] = (regs[r + 1]! | 0) * 0x1_0000_0000 + regs[r]!;
            }
            const nr = syscall ? regs[0]! + (regs[1]! | 0) * 0x1_0000_0000 : regs[0]!;
            if (syscall && this.rewriteSyscalls && regs[RIP]! === SYSCALL_STUB_OUT_END && regs[RIP + 1]! === 0) this.patchSyscallSite(vcpu.get('rcx') - 2);
            const result = dispatch(p, syscall ? syscallTable[nr] : hypercallTable.get(nr), nr, args, this.unknownReported, syscall ? 'syscall' : 'hypercall');
            if (p.exit) {
              const { status, signal, reason: why } = p.exit;
              return signal
                ? { status, signal, outcome: 'signal', exits, message: why }
                : { status, outcome: 'exit', exits };
            }
            vcpu.set('rax', result);
            continue;
          }
          if (port >= PORT_EXCEPTION_BASE && port < PORT_EXCEPTION_BASE + 32) {
            const cr2 = Number(vcpu.getSregs().readBigUInt64LE(sregsLayout.cr2));
            return this.faulted(describeException(port - PORT_EXCEPTION_BASE, this.ram.memory, vcpu.registerDump(), cr2), exits);
          }
          return this.faulted(describeOther('io', `access to I/O port 0x${port.toString(16)}`, vcpu.registerDump()), exits);
        }
        switch (reason) {
          case KVM_EXIT_INTR:
            if (timer?.consume()) {
              const rip = vcpu.get('rip');
              return {
                status: 124, outcome: 'timeout', exits,
                message: `timeout: the program ran longer than ${this.timeoutMs / 1000} s and was stopped at rip 0x${rip.toString(16)}`,
              };
            }
            continue; // another signal: go back in
          case KVM_EXIT_HLT:
            return this.faulted(describeOther('privileged', 'privileged instruction (hlt)', vcpu.registerDump()), exits);
          case KVM_EXIT_SHUTDOWN:
            return this.faulted(describeOther('shutdown', 'triple fault (the CPU could not deliver an exception)', vcpu.registerDump()), exits);
          case KVM_EXIT_MMIO: {
            const addr = Number(view.getBigUint64(runLayout.mmio.physAddr, true));
            return this.faulted(describeOther('io', `access to unbacked guest-physical address 0x${addr.toString(16)}`, vcpu.registerDump()), exits);
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
    }
  }

  /**
   * On PVM, `syscall` from ring 3 first traps into the hypervisor, which sends
   * it on to our LSTAR stub, whose `out` then exits to us: two world switches.
   * The CPU put the return address in rcx, so the two bytes before it are a
   * `syscall` (0f 05) the guest really executed; replacing them with
   * `out %eax, $1` (e7 01, also two bytes) makes every later call from that
   * site one exit, straight to the same handler. Linux lets syscall clobber rcx
   * and r11, so leaving them intact is within the ABI. Only bytes that read
   * 0f 05 inside the program's memory are touched.
   */
  private patchSyscallSite(site: number): void {
    const bytes = this.ram.memory.bytes;
    if (site >= USER_START && site + 2 <= bytes.length && bytes[site] === 0x0f && bytes[site + 1] === 0x05) {
      this.ram.memory.recordWrite(site, 2);
      bytes[site] = 0xe7;
      bytes[site + 1] = PORT_SYSCALL;
    }
  }

  /** Releases the VM, its memory and every file the guest opened. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.guest.close();
    this.process.files.closeAll();
    this.ram.close();
  }

  private startTimer(): RunTimer {
    threadTimer ??= new RunTimer();
    this.guest.vcpu.setSignalMask(threadTimer.guestSignalMask);
    threadTimer.arm(this.timeoutMs);
    return threadTimer;
  }

  private faulted(fault: GuestFaultReport, exits: number): RunResult {
    return {
      status: 128 + fault.signal, signal: fault.signal, outcome: 'fault', fault, exits,
      message: `guest fault: ${fault.summary}\n${formatRegisters(fault.registers)}`,
    };
  }
}

/** The guest address space for a memory limit: whole 2 MiB pages, within what the page tables can map. */
export function addressSpaceSize(maxMemoryMiB: number): number {
  const bytes = Math.ceil((maxMemoryMiB * 1024 * 1024) / HUGE_PAGE) * HUGE_PAGE;
  if (!Number.isFinite(bytes) || bytes < MIN_ADDRESS_SPACE || bytes > MAX_ADDRESS_SPACE) {
    throw new TskvmError('TSKVM_ERR_CONFIG', `max memory must be between ${MIN_ADDRESS_SPACE >> 20} and ${MAX_ADDRESS_SPACE / 2 ** 20} MiB (got ${maxMemoryMiB})`);
  }
  return bytes;
}
