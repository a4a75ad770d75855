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
import { HUGE_PAGE, MAX_ADDRESS_SPACE, MIN_ADDRESS_SPACE, STACK_GUARD, STACK_SIZE, USER_START } from '../paging/layout.js';
import { AddressSpace } from '../syscalls/address-space.js';
import { FileTable, StdioFile, type OpenFile } from '../syscalls/fd-table.js';
import { PathPolicy, type AllowedPath } from '../syscalls/path-policy.js';
import { Process } from '../syscalls/process.js';
import { SignalState } from '../syscalls/signal-state.js';
import { cpuControl } from './cpu-setup.js';
import { GuestRunner, type RunResult } from './run-loop.js';
import { Kvm } from './kvm/system.js';
import { createGuestVm, writeSystemArea, type GuestVm } from './guest-vm.js';
import { platform } from './platform.js';

export type { RunResult };

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


const DEFAULT_MEMORY_MIB = 1024;
/** Where static-pie programs are placed (their own code relocates them). */
const PIE_BASE = 0x40_0000;


export class Machine {
  readonly image: ElfImage;
  readonly process: Process;
  readonly ram: GuestRam;
  private readonly guest: GuestVm;
  private readonly timeoutMs: number;
  private readonly runner: GuestRunner;
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
    this.process.cpu = cpuControl(this.guest.vcpu);
    this.runner = new GuestRunner(this.guest.vcpu, this.process, options.rewriteSyscalls ?? true);
  }

  /** Runs the program until it exits, faults, times out or pauses in a guest API call. Blocks the calling thread. */
  run(): RunResult {
    return this.runner.run(this.timeoutMs);
  }

  /** Releases the VM, its memory and every file the guest opened. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.guest.close();
    this.process.files.closeAll();
    this.ram.close();
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
