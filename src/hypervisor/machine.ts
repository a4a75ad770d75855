/**
 * A Machine is one program in one micro-VM: guest RAM, a VM with one vCPU, and
 * the emulated Linux process around them. Creation reads top to bottom like
 * the list of steps it is:
 *
 *   parse the ELF (and, for a dynamically linked one, find its loader through the
 *   guest's file view: interpreter.ts) → guest RAM (memfd) → system area (page
 *   tables, GDT/TSS/IDT, stubs) → ELF segments (the loader's too) → entry stack
 *   (argv, envp, auxv) → process state (files, paths, address space, signals) →
 *   VM + vCPU in ring 3 at the entry (the loader's, which then runs the program's)
 *
 * `run()` is the vCPU loop: KVM_RUN, look at why the guest exited, emulate,
 * repeat — until the program exits, faults or runs out of time.
 */
import { randomBytes } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import { readProgramFileSync, TskvmError } from '../errors.js';
import { parseElf, type ElfImage } from '../elf/parse-elf.js';
import { loadSegments } from '../elf/load-elf.js';
import { loadInterpreter, type Interpreter } from './interpreter.js';
import { buildInitialStack, standardAuxv } from '../elf/initial-stack.js';
import { GuestRam } from '../paging/guest-ram.js';
import { STACK_GUARD, STACK_SIZE, USER_START, VDSO_ADDR } from '../paging/layout.js';
import { planMemory, type RemapOption } from './memory-plan.js';
import { AddressSpace, type AddressSpaceOptions } from '../syscalls/address-space.js';
import { GuestApi } from '../syscalls/api/guest-api.js';
import type { PauseState } from '../syscalls/process.js';
import type { FrozenProgram } from './frozen.js';
import { FileTable } from '../syscalls/fd-table.js';
import { StdioFile } from '../syscalls/open-files/host-file.js';
import type { OpenFile } from '../syscalls/open-files/open-file.js';
import { PathPolicy, type AllowedPath } from '../syscalls/path-policy.js';
import { freezeProcess } from '../syscalls/process-state.js';
import { saveVcpu, type VcpuSnapshot } from './vcpu-state.js';
import { Process } from '../syscalls/process.js';
import { SignalState } from '../syscalls/signal-state.js';
import { cpuControl } from './cpu-setup.js';
import { GuestRunner, type RunResult } from './run-loop.js';
import { Kvm } from './kvm/system.js';
import { createGuestVm, writeSystemArea, type GuestVm } from './guest-vm.js';
import type { Vcpu } from './kvm/vcpu.js';
import { platform, type Platform } from './platform.js';

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
  /** The program's sys_log lines; default: through `warn`. */
  log?: (line: string) => void;
  /**
   * The highest guest address of the program's memory (MiB), when larger than `maxMemoryMiB`: a
   * sparse address space (the VMOD's `address_space`), in which the program may place its mappings
   * anywhere but hold only `maxMemoryMiB` of them (guest-ram.ts). Default: `maxMemoryMiB`.
   */
  addressSpaceMiB?: number;
  /** Memory at fixed high addresses (the VMOD's `remapping`; memory-plan.ts). */
  remaps?: RemapOption[];
  /** Size of the region shared by all request VMs, above the program's memory (MiB, 0: none). */
  sharedMemoryMiB?: number;
  /** What get_meminfo reports and request VMs enforce (MiB); see docs/GUEST_ABI.md, "Structures". */
  maxRequestMemoryMiB?: number;
  requestMemoryUpperMiB?: number;
  /**
   * Every page of user memory executable (the VMOD's `executable_heap`), for programs that generate
   * code (JITs). Default: only the 2 MiB pages that hold the ELF's executable segments.
   */
  executableHeap?: boolean;
  /** Let the program choose ephemeral or not with sys_make_ephemeral during init. */
  controlEphemeral?: boolean;
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
  private readonly exePath: string;
  private readonly platform: Platform;
  private readonly allowed: AllowedPath[];
  private readonly layout: Omit<AddressSpaceOptions, 'release'>;
  private closed = false;

  /** Loads the ELF at `path` (the guest sees this path as its own). */
  static fromFile(path: string, options: MachineOptions = {}): Machine {
    return new Machine(readProgramFileSync(path), resolvePath(path), { argv0: path, ...options });
  }

  constructor(file: Uint8Array, exePath: string, options: MachineOptions = {}) {
    const plan = planMemory({ maxMemoryMiB: options.maxMemoryMiB ?? DEFAULT_MEMORY_MIB, addressSpaceMiB: options.addressSpaceMiB, sharedMemoryMiB: options.sharedMemoryMiB, remaps: options.remaps });
    const { maxMemory, addressSpace: mainSize, sparse, sharedSize, size } = plan;
    const stackTop = mainSize;
    const stackBottom = stackTop - STACK_SIZE;
    const guardStart = stackBottom - STACK_GUARD;
    this.image = parseElf(file, { minAddress: USER_START, maxAddress: guardStart, pieBase: PIE_BASE }, exePath);
    this.exePath = exePath;
    this.platform = platform();
    this.allowed = options.allowed ?? [];
    const paths = new PathPolicy({ allowed: this.allowed, cwd: options.cwd ?? '/', exe: { hostPath: exePath, guestPath: exePath } });
    let loader: Interpreter | null;
    try {
      loader = this.image.interpreter === null ? null : loadInterpreter(this.image, paths, { minAddress: USER_START, top: guardStart }, exePath);
    } catch (e) {
      paths.close();
      throw e;
    }
    this.layout = {
      userStart: USER_START, end: mainSize, imageStart: this.image.start, brkStart: this.image.brkStart,
      ...(loader ? { loader: [loader.image.start, loader.image.end] as [number, number] } : {}),
      stackTop, stackSize: STACK_SIZE, stackGuard: STACK_GUARD, fileExec: this.platform.nx && !options.executableHeap,
      remaps: plan.remaps.map((r) => [r.virt, r.virt + r.size] as [number, number]),
    };
    this.timeoutMs = (options.timeoutSec ?? 0) * 1000;

    this.ram = GuestRam.create(size, sharedSize, 'tskvm:' + exePath, { pieceBudget: plan.pieceBudget, remaps: plan.remaps });
    try {
      // The system area and the images, the stack and the remaps' memory: there from the start.
      const initial: Array<[number, number]> = [[0, this.image.brkStart], [stackBottom, stackTop], [mainSize, plan.mainSize]];
      if (loader) initial.push([loader.image.start, loader.image.end]);
      for (const [start, end] of initial) {
        if (this.ram.back(start, end) === null) throw new TskvmError('TSKVM_ERR_CONFIG', `the program's image and stack need more memory than max memory (${maxMemory / 2 ** 20} MiB) gives in a sparse address space`);
      }
      const images = loader ? [this.image, loader.image] : [this.image];
      const executable: Array<[number, number]> = images.flatMap((image) => image.segments).filter((seg) => seg.executable).map((seg) => [seg.vaddr, seg.vaddr + seg.memsz]);
      writeSystemArea(this.ram, this.platform, { nx: this.platform.nx, executable: options.executableHeap ? 'all' : executable }, [[guardStart, stackBottom]]);
      const mem = this.ram.memory;
      const target = { length: mem.size, fill: (value: number, start: number, end: number) => mem.fill(start, end - start, value), set: (data: Uint8Array, at: number) => mem.put(at, data) };
      loadSegments(this.image, file, target);
      if (loader) loadSegments(loader.image, loader.file, target);
      const argv = [options.argv0 ?? exePath, ...(options.args ?? [])];
      const stack = buildInitialStack({
        stackTop, argv, envp: options.env ?? [], execfn: argv[0]!, random: randomBytes(16),
        auxv: standardAuxv(this.image, Kvm.shared().cpuidLeaf(1)[3], { vdso: VDSO_ADDR, interpreterBase: loader?.image.base }),
      });
      this.ram.memory.put(stack.sp, stack.bytes);

      const warn = options.warn ?? ((m: string) => process.stderr.write(`tskvm: ${m}\n`));
      this.process = new Process({
        mem: this.ram.memory,
        files: new FileTable(options.stdio ?? [new StdioFile(0), new StdioFile(1), new StdioFile(2)], options.maxOpenFiles ?? 1024),
        paths,
        mm: new AddressSpace({ ...this.layout, release: (addr, len) => this.ram.release(addr, len), back: (start, end) => this.guest.slots.back(start, end) }),
        signals: new SignalState(),
        argv, env: options.env ?? [], trace: options.trace ?? null, warn, log: options.log,
        api: new GuestApi({
          maxMemory,
          maxRequestMemory: (options.maxRequestMemoryMiB ?? 0) * 2 ** 20,
          requestMemoryUpper: (options.requestMemoryUpperMiB ?? 0) * 2 ** 20,
          sharedStart: sharedSize ? plan.mainSize : 0,
          sharedEnd: sharedSize ? size : 0,
          controlEphemeral: options.controlEphemeral ?? false,
        }),
      });
      this.guest = createGuestVm(this.ram, { rip: loader?.image.entry ?? this.image.entry, rsp: stack.sp }, this.platform);
    } catch (e) {
      paths.close();
      this.ram.close();
      throw e;
    }
    // In a sparse address space, the memory limit is on what the program maps (as a request's budget is).
    if (sparse) this.process.mm.limit = maxMemory;
    this.process.cpu = cpuControl(this.guest.vcpu, this.platform);
    this.runner = new GuestRunner(this.guest.vcpu, this.process, options.rewriteSyscalls ?? true, this.guest.clock);
  }

  /** Runs the program until it exits, faults, times out or pauses in a guest API call. Blocks the calling thread. */
  run(): RunResult {
    return this.runner.run(this.timeoutMs);
  }

  /** Runs on, as run() does, for at most `timeoutMs` (0: no limit) instead of the machine's own limit. */
  runFor(timeoutMs: number): RunResult {
    return this.runner.run(timeoutMs);
  }

  /**
   * The vCPU, for whoever runs requests in this VM before it is frozen (the warm-up,
   * src/runtime/warmup.ts); nothing may run it after the freeze.
   */
  get vcpu(): Vcpu {
    return this.guest.vcpu;
  }

  /** Ring 3 has WRFSBASE here (platform.ts): the request entry stub sets FS's and GS's bases itself. */
  get fsgsbase(): boolean {
    return this.platform.fsgsbase;
  }

  /**
   * The vCPU's state now, for restoreVcpu (vcpu-state.ts), with the guest API call it stopped in
   * completed first: on hardware KVM rip moves past the `out` only at the next KVM_RUN, and a
   * snapshot taken before would run the call again.
   */
  snapshot(): VcpuSnapshot {
    const vcpu = this.guest.vcpu;
    vcpu.completeExit();
    return saveVcpu(vcpu, this.platform.taskRegister);
  }

  /**
   * The program as request VMs need it, after run() paused in
   * wait_for_requests*: registers, segment state, memory (by memfd), and the
   * process's bookkeeping, all as plain data (FrozenProgram). From now on the
   * main VM never runs again and its memory is never written: it is the
   * master every fork copies on write from and resets back to.
   */
  freeze(pause: Extract<PauseState, { kind: 'freeze' }>): FrozenProgram {
    const p = this.process;
    return {
      ram: this.ram.source,
      entryKind: this.platform.syscallEntry,
      fsgsbase: this.platform.fsgsbase,
      taskRegister: this.platform.taskRegister,
      ...this.snapshot(),
      paused: pause.paused,
      requestAddress: pause.requestAddress,
      limits: { ...p.api.limits },
      process: { argv: p.argv, env: p.env, exePath: this.exePath, allowed: this.allowed, layout: this.layout, state: freezeProcess(p) },
    };
  }

  /** Releases the VM, its memory and every file the guest opened. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.guest.close();
    this.process.files.closeAll();
    this.process.paths.close();
    this.ram.close();
  }

}
