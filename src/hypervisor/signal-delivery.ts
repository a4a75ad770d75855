/**
 * Running a guest's signal handler, and coming back from it, as Linux does on x86-64
 * (arch/x86/kernel/signal.c, signal_64.c, fpu/signal.c).
 *
 * Delivery pushes a struct rt_sigframe on the user stack (or the alternate stack) and enters the
 * handler with rdi = signal, rsi = &frame.info, rdx = &frame.uc, rax = 0, and the return address
 * sa_restorer (libc's, which calls rt_sigreturn). The stack, from high addresses down:
 *
 *   interrupted rsp − 128 (the red zone), or the top of the alternate stack (SA_ONSTACK)
 *   FPU state, 64-aligned: XSAVE's standard layout (user_size bytes) + FP_XSTATE_MAGIC2, with the
 *     _fpx_sw_bytes (FP_XSTATE_MAGIC1, sizes, xfeatures) in the fxsave area's software bytes 464–511
 *   struct rt_sigframe (440 bytes), at rsp ≡ 8 mod 16, as after a call:
 *     [0] pretcode = sa_restorer
 *     [8] struct ucontext: uc_flags, uc_link, uc_stack (24), uc_mcontext (struct sigcontext, 256), uc_sigmask
 *     [312] siginfo_t (128)
 *
 * rt_sigreturn reads it back: the registers (rflags only through FIX_EFLAGS, so IOPL and the rest
 * stay as they are; CS and SS are always the process's own: another CS is SIGSEGV), the FPU state
 * (checked as XRSTOR would check it; KVM_SET_XSAVE refuses the rest), the mask, the alternate stack.
 * A frame that cannot be read or written is SIGSEGV, to the program's handler if it can take it, as Linux's force_sigsegv.
 *
 * Where the CPU is when a signal comes (the "user context" below is what the interrupted program had):
 *   after a syscall: at the syscall stub (PVM: ring 3; hardware: ring 0, before sysretq) where the
 *     return address is rcx, or at a rewritten site (PVM), in ring 3
 *   after a CPU exception: in the ring-0 IDT stub, the program's rip, rsp and rflags in the frame the
 *     CPU pushed on the exception stack (guest-fault.ts)
 *   after a timer interrupted KVM_RUN: anywhere in ring 3
 * It goes back with the registers set; from ring 0 CS and SS are set to ring 3's first (KVM_SET_SREGS),
 * which drops the stub's state, as the reset of a request that faulted does.
 */
import { USER_START, PAGE, RING0_STUBS_ADDR } from '../paging/layout.js';
import { SELECTOR } from '../paging/descriptors.js';
import type { Process } from '../syscalls/process.js';
import type { AddressSpace } from '../syscalls/address-space.js';
import { PROT_READ, PROT_WRITE } from '../syscalls/address-space.js';
import {
  bit, nextDeliverable, SA, SIG, SIG_DFL, SIG_IGN, SIGINFO_SIZE, SS_AUTODISARM, SS_DISABLE, SS_ONSTACK, MINSIGSTKSZ,
  takePending, UNBLOCKABLE, type SignalAction,
} from '../syscalls/signal-state.js';
import { E } from '../host/errno.js';
import { ERESTARTSYS } from '../syscalls/deadline.js';
import { nowMs } from '../syscalls/time.js';
import { SI, siginfo } from '../syscalls/signal-state.js';
import { regIndex } from './kvm/abi.js';
import type { ExceptionFrame } from './guest-fault.js';
import { Kvm } from './kvm/system.js';
import type { Vcpu } from './kvm/vcpu.js';
import { setTaskRegisterType, supportedXcr0, userSegments } from './cpu-setup.js';
import { platform } from './platform.js';

export type SignalCpu = Pick<Vcpu, 'regs' | 'get' | 'getSregs' | 'setSregs' | 'getXsave' | 'setXsave' | 'markRegsDirty'>;

/** The 18 registers of struct kvm_regs (regIndex order) of the interrupted program. */
export type UserContext = BigUint64Array;

/** What the CPU said about the exception a signal reports (sigcontext's trapno, err, cr2). */
export interface Trap {
  trapno: number;
  err: number;
  cr2: number;
}

const NO_TRAP: Trap = { trapno: 0, err: 0, cr2: 0 };
const CLOCK_MONOTONIC = 1;
const R = regIndex;

/** sigcontext's general registers, in its order, as kvm_regs indices. */
const SIGCONTEXT_REGS = [R.r8, R.r9, R.r10, R.r11, R.r12, R.r13, R.r14, R.r15, R.rdi, R.rsi, R.rbp, R.rbx, R.rdx, R.rax, R.rcx, R.rsp, R.rip, R.rflags];
const SC = { cs: 144, gs: 146, fs: 148, ss: 150, err: 152, trapno: 160, oldmask: 168, cr2: 176, fpstate: 184, size: 256 };
const UC = { flags: 0, link: 8, stack: 16, mcontext: 40, sigmask: 296, size: 304 };
const FRAME_UC = 8;
const FRAME_INFO = FRAME_UC + UC.size;
const FRAME_SIZE = FRAME_INFO + SIGINFO_SIZE;
const RED_ZONE = 128;
const UC_FP_XSTATE = 1, UC_SIGCONTEXT_SS = 2, UC_STRICT_RESTORE_SS = 4;
const FP_XSTATE_MAGIC1 = 0x46505853, FP_XSTATE_MAGIC2 = 0x46505845;
const FXSAVE_SIZE = 512, XSAVE_HEADER = 512, SW_BYTES = 464, MXCSR = 24, MXCSR_MASK = 28;
const XFEATURE_FPSSE = 3n;
const EFLAGS = { CF: 0x1, PF: 0x4, AF: 0x10, ZF: 0x40, SF: 0x80, TF: 0x100, DF: 0x400, OF: 0x800, RF: 0x10000, AC: 0x40000 };
/** What rt_sigreturn takes from the frame's rflags (FIX_EFLAGS); the rest (IF, IOPL, NT, VM…) stays. */
const FIX_EFLAGS = BigInt(EFLAGS.AC | EFLAGS.OF | EFLAGS.DF | EFLAGS.TF | EFLAGS.SF | EFLAGS.ZF | EFLAGS.AF | EFLAGS.PF | EFLAGS.CF | EFLAGS.RF);
const HANDLER_CLEARS = BigInt(EFLAGS.DF | EFLAGS.RF | EFLAGS.TF);

/** The size of the XSAVE image a signal frame holds (Linux's fpstate->user_size), and which features it has. */
interface XstateLayout {
  xcr0: bigint;
  /** 0 without XSAVE: the frame holds fxsave's 512 bytes only. */
  size: number;
}

let layout: XstateLayout | null = null;

function xstateLayout(): XstateLayout {
  if (layout) return layout;
  const kvm = Kvm.shared();
  const xcr0 = supportedXcr0(kvm);
  let size = 0;
  if (xcr0) {
    size = FXSAVE_SIZE + 64;
    for (let i = 2; i < 64; i++) {
      if (!(xcr0 & (1n << BigInt(i)))) continue;
      const [eax, ebx] = kvm.cpuidLeaf(0xd, i);
      size = Math.max(size, ebx + eax);
    }
  }
  layout = { xcr0, size };
  return layout;
}

/**
 * A rip the CPU can hold in 64-bit mode (bits 63:47 all equal). Natively a non-canonical one makes the
 * kernel's return to the process fault (SIGSEGV); given to KVM, hardware would refuse the VM entry.
 */
function canonical(v: bigint): boolean {
  const top = v >> 47n;
  return top === 0n || top === 0x1_ffffn;
}

export function contextOf(regs: Uint32Array): UserContext {
  const copy = new Uint32Array(regs.length);
  copy.set(regs);
  return new BigUint64Array(copy.buffer);
}

/** Whether the vCPU stopped in a ring-0 stub (the hardware syscall entry, an exception stub). */
export function inRing0Stub(rip: number): boolean {
  return rip >= RING0_STUBS_ADDR && rip < RING0_STUBS_ADDR + PAGE;
}

/** Puts the program back on the CPU with `ctx`, leaving ring 0 first if it was there. */
export function resume(cpu: SignalCpu, ctx: UserContext, ring0: boolean): void {
  // TR as the platform loads it: KVM reports it busy, which QEMU's emulated CPU would not take (platform.ts).
  if (ring0) cpu.setSregs(setTaskRegisterType(userSegments(cpu.getSregs()), platform().taskRegister));
  for (let i = 0; i < 18; i++) {
    cpu.regs[i * 2] = Number(ctx[i]! & 0xffff_ffffn);
    cpu.regs[i * 2 + 1] = Number(ctx[i]! >> 32n);
  }
  cpu.markRegsDirty();
}

/** Every page of [start, end) mapped with at least `prot` (the program could touch it itself). */
function accessible(p: Process, mm: AddressSpace, start: number, end: number, prot: number): boolean {
  if (start < USER_START || start >= end || !p.mem.contains(start, end - start) || !mm.isMapped(start, end)) return false;
  return mm.list().every((m) => m.end <= start || m.start >= end || (m.prot & prot) === prot);
}


/** The FPU state as the frame holds it, and the vCPU's FPU reset to what a handler starts with. */
function saveFpu(cpu: SignalCpu): { bytes: Uint8Array; xsave: boolean } {
  const { xcr0, size } = xstateLayout();
  const current = cpu.getXsave();
  cpu.setXsave(initFpu(current));
  if (!size) return { bytes: current.slice(0, FXSAVE_SIZE), xsave: false };
  const bytes = new Uint8Array(size + 4);
  bytes.set(current.subarray(0, size));
  const v = new DataView(bytes.buffer);
  // XSAVE writes a header with no reserved bits, and Linux marks x87 and SSE present for fxrstor's sake.
  bytes.fill(0, XSAVE_HEADER + 8, XSAVE_HEADER + 64);
  v.setBigUint64(XSAVE_HEADER, (v.getBigUint64(XSAVE_HEADER, true) & xcr0) | XFEATURE_FPSSE, true);
  bytes.fill(0, SW_BYTES, FXSAVE_SIZE);
  v.setUint32(SW_BYTES, FP_XSTATE_MAGIC1, true);
  v.setUint32(SW_BYTES + 4, size + 4, true); // extended_size
  v.setBigUint64(SW_BYTES + 8, xcr0, true); // xfeatures
  v.setUint32(SW_BYTES + 16, size, true); // xstate_size
  v.setUint32(size, FP_XSTATE_MAGIC2, true);
  return { bytes, xsave: true };
}

/** The FPU's initial state (fninit, MXCSR 0x1f80, every XSAVE component in its init state). */
function initFpu(current: Uint8Array): Uint8Array {
  const b = new Uint8Array(current);
  const v = new DataView(b.buffer);
  const mask = v.getUint32(MXCSR_MASK, true);
  b.fill(0, 0, XSAVE_HEADER + 64);
  v.setUint16(0, 0x37f, true);
  v.setUint32(MXCSR, 0x1f80, true);
  v.setUint32(MXCSR_MASK, mask, true);
  // x87 and SSE marked present (their values are the init ones): KVM takes MXCSR from the image only
  // when SSE or AVX is (hardware KVM kept the interrupted MXCSR otherwise).
  if (b.length > XSAVE_HEADER) v.setBigUint64(XSAVE_HEADER, XFEATURE_FPSSE, true);
  return b;
}

/** The FPU state from a frame's fpstate pointer (0: the initial state); false if the CPU would refuse it. */
function restoreFpu(cpu: SignalCpu, p: Process, mm: AddressSpace, fp: number): boolean {
  const current = cpu.getXsave();
  if (fp === 0) {
    cpu.setXsave(initFpu(current));
    return true;
  }
  const { xcr0, size } = xstateLayout();
  if (fp % 16 !== 0 || !accessible(p, mm, fp, fp + FXSAVE_SIZE, PROT_READ)) return false;
  const legacy = p.mem.read(fp, FXSAVE_SIZE);
  const sw = new DataView(legacy.buffer, legacy.byteOffset + SW_BYTES, 48);
  const xstateSize = sw.getUint32(16, true);
  let fxOnly = !size || sw.getUint32(0, true) !== FP_XSTATE_MAGIC1 || xstateSize < FXSAVE_SIZE + 64 || xstateSize > size
    || xstateSize > sw.getUint32(4, true);
  if (!fxOnly && (!accessible(p, mm, fp, fp + xstateSize + 4, PROT_READ) || p.mem.u32(fp + xstateSize) !== FP_XSTATE_MAGIC2)) fxOnly = true;
  const b = new Uint8Array(current);
  const v = new DataView(b.buffer);
  const mxcsrMask = v.getUint32(MXCSR_MASK, true) || 0xffbf;
  if (fxOnly) {
    b.set(legacy);
    b.fill(0, XSAVE_HEADER, XSAVE_HEADER + 64);
    if (size) v.setBigUint64(XSAVE_HEADER, XFEATURE_FPSSE, true);
  } else {
    if (fp % 64 !== 0) return false; // XRSTOR's alignment
    b.set(p.mem.read(fp, xstateSize));
    const features = v.getBigUint64(XSAVE_HEADER, true);
    // XRSTOR faults on a header naming a feature XCR0 lacks, on a compacted format, on reserved bytes.
    if (features & ~xcr0 || v.getBigUint64(XSAVE_HEADER + 8, true) !== 0n) return false;
    for (let i = XSAVE_HEADER + 16; i < XSAVE_HEADER + 64; i++) if (b[i]) return false;
    // What the frame's xfeatures leaves out starts in its init state, as Linux restores it.
    v.setBigUint64(XSAVE_HEADER, features & sw.getBigUint64(8, true), true);
  }
  if (v.getUint32(MXCSR, true) & ~mxcsrMask) return false;
  b.fill(0, SW_BYTES, FXSAVE_SIZE);
  v.setUint32(MXCSR_MASK, new DataView(current.buffer, current.byteOffset).getUint32(MXCSR_MASK, true), true);
  try {
    cpu.setXsave(b);
  } catch {
    return false; // KVM's own check of the image (what XRSTOR would #GP on)
  }
  return true;
}

/**
 * Pushes the frame for `sig` and points `ctx` at its handler; false if the frame cannot be written
 * (the stack is not mapped writable, the alternate stack overflows, no SA_RESTORER).
 */
function setupFrame(cpu: SignalCpu, p: Process, ctx: UserContext, sig: number, info: Uint8Array, act: SignalAction, trap: Trap): boolean {
  const thread = p.threadSignals;
  const mm = p.mm;
  const sp0 = Number(ctx[R.rsp]!);
  const alt = thread.altStack;
  const onAlt = (sp: number): boolean => sp > alt.sp && sp - alt.sp <= alt.size;
  const nested = thread.onAltStack(sp0);
  let sp = sp0 - RED_ZONE;
  let entering = false;
  if (act.flags & SA.ONSTACK && thread.altStackFlags(sp) === 0) {
    sp = alt.sp + alt.size;
    entering = true;
  }
  if (!(act.flags & SA.RESTORER) || !canonical(act.handler)) return false;
  const { xsave, size } = { xsave: xstateLayout().size > 0, size: xstateLayout().size };
  const fpLength = xsave ? size + 4 : FXSAVE_SIZE;
  const fpAddr = Math.floor((sp - fpLength) / 64) * 64;
  const frame = Math.floor((fpAddr - FRAME_SIZE) / 16) * 16 - 8;
  if ((nested || entering) && !onAlt(frame)) return false;
  if (!accessible(p, mm, frame, fpAddr + fpLength, PROT_READ | PROT_WRITE)) return false;

  const oldMask = thread.savedMask ?? thread.blocked;
  const fpu = saveFpu(cpu);
  const f = new Uint8Array(FRAME_SIZE);
  const v = new DataView(f.buffer);
  v.setBigUint64(0, act.restorer, true);
  const uc = FRAME_UC;
  v.setBigUint64(uc + UC.flags, BigInt(UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS | (fpu.xsave ? UC_FP_XSTATE : 0)), true);
  v.setBigUint64(uc + UC.stack, BigInt(alt.sp), true);
  v.setInt32(uc + UC.stack + 8, thread.altStackFlags(sp0), true);
  v.setBigUint64(uc + UC.stack + 16, BigInt(alt.size), true);
  const sc = uc + UC.mcontext;
  SIGCONTEXT_REGS.forEach((reg, i) => v.setBigUint64(sc + i * 8, ctx[reg]!, true));
  v.setUint16(sc + SC.cs, SELECTOR.USER_CS, true);
  v.setUint16(sc + SC.ss, SELECTOR.USER_DS, true);
  v.setBigUint64(sc + SC.err, BigInt(trap.err), true);
  v.setBigUint64(sc + SC.trapno, BigInt(trap.trapno), true);
  v.setBigUint64(sc + SC.oldmask, oldMask, true);
  v.setBigUint64(sc + SC.cr2, BigInt(trap.cr2), true);
  v.setBigUint64(sc + SC.fpstate, BigInt(fpAddr), true);
  v.setBigUint64(uc + UC.sigmask, oldMask, true);
  f.set(info, FRAME_INFO);
  p.mem.put(fpAddr, fpu.bytes);
  p.mem.put(frame, f);

  if (alt.flags & SS_AUTODISARM) thread.altStack = { sp: 0, size: 0, flags: SS_DISABLE };
  thread.savedMask = null;
  thread.blocked = (thread.blocked | act.mask | (act.flags & SA.NODEFER ? 0n : bit(sig))) & ~UNBLOCKABLE;
  if (act.flags & SA.RESETHAND) p.signals.resetHandler(sig);

  ctx[R.rdi] = BigInt(sig);
  ctx[R.rsi] = BigInt(frame + FRAME_INFO);
  ctx[R.rdx] = BigInt(frame + uc);
  ctx[R.rax] = 0n;
  ctx[R.rsp] = BigInt(frame);
  ctx[R.rip] = act.handler;
  ctx[R.rflags] &= ~HANDLER_CLEARS;
  return true;
}

/** How a signal ended the process: its status and the line that says why. */
export interface Killed {
  signal: number;
  /** Absent for a signal's default action: the process died as it would natively, nothing to explain. */
  message?: string;
}

const MAX_NESTED = 8;

/**
 * Takes the thread's deliverable signals, one handler frame on top of the other as Linux nests them
 * (the last taken runs first), changing `ctx`. Returns how the process died if one killed it, else
 * whether `ctx` changed. `restart`: a call interrupted with ERESTARTSYS, run again unless a handler
 * without SA_RESTART is set up for it (then EINTR).
 */
export function deliverPending(cpu: SignalCpu, p: Process, ctx: UserContext, restart: { nr: number; eintr: number } | null): Killed | boolean {
  const thread = p.threadSignals;
  let changed = false;
  for (let n = 0; n < MAX_NESTED; n++) {
    const sig = nextDeliverable(p.signals, thread);
    if (!sig) break;
    const info = takePending(p.signals, thread, sig);
    const act = p.signals.decoded(sig);
    if (act.handler === SIG_IGN) continue;
    if (act.handler === SIG_DFL) {
      if (!p.signals.defaultIsFatal(sig)) continue;
      return { signal: sig };
    }
    if (restart) {
      if (act.flags & SA.RESTART) rewindCall(ctx, restart.nr);
      else ctx[R.rax] = BigInt.asUintN(64, BigInt(-restart.eintr));
      restart = null;
    }
    if (!setupFrame(cpu, p, ctx, sig, info, act, NO_TRAP)) {
      // Linux's force_sigsegv: SIGSEGV, which its own handler may take (on another stack, say).
      if (sig === SIG.SIGSEGV) return frameFault(p, sig);
      const segv = deliverFault(cpu, p, ctx, SIG.SIGSEGV, siginfo(SIG.SIGSEGV, SI.KERNEL), NO_TRAP);
      if (segv !== true) return segv || frameFault(p, sig);
    }
    changed = true;
  }
  if (restart) {
    rewindCall(ctx, restart.nr);
    changed = true;
  }
  if (thread.savedMask !== null) {
    thread.blocked = thread.savedMask;
    thread.savedMask = null;
  }
  return changed;
}

/** Back to the `syscall` (or the `out` rewritten over it: also two bytes) with the call's number in rax. */
function rewindCall(ctx: UserContext, nr: number): void {
  ctx[R.rip] -= 2n;
  ctx[R.rax] = BigInt(nr);
}

/** A handler that could not be entered, and no SIGSEGV handler that could: the process dies of SIGSEGV. */
function frameFault(p: Process, sig: number): Killed {
  p.signals.resetHandler(SIG.SIGSEGV);
  return { signal: SIG.SIGSEGV, message: `killed by SIGSEGV: signal ${sig}'s handler could not be entered (no room for its frame at the stack, or no code can be at its address)` };
}

/**
 * A CPU fault: to its handler when one is installed and the signal is not blocked (true: `ctx` is the
 * handler's), as Linux's force_sig_fault; false when the fault kills (no handler, blocked, ignored).
 * A frame that cannot be written kills with SIGSEGV (the Killed returned).
 */
export function deliverFault(cpu: SignalCpu, p: Process, ctx: UserContext, sig: number, info: Uint8Array, trap: Trap): boolean | Killed {
  const act = p.signals.decoded(sig);
  if (act.handler === SIG_DFL || act.handler === SIG_IGN || p.threadSignals.blocked & bit(sig)) return false;
  if (!setupFrame(cpu, p, ctx, sig, info, act, trap)) return frameFault(p, sig);
  return true;
}

/**
 * rt_sigreturn: `ctx` (the registers at the call) becomes the context the frame at rsp − 8 saved.
 * False if the frame cannot be read, or its FPU state is one the CPU would refuse.
 */
export function sigreturn(cpu: SignalCpu, p: Process, ctx: UserContext): boolean {
  const mm = p.mm;
  const sp = Number(ctx[R.rsp]!);
  const frame = sp - 8;
  if (!Number.isSafeInteger(frame) || !accessible(p, mm, frame, frame + FRAME_SIZE, PROT_READ)) return false;
  const f = p.mem.read(frame, FRAME_SIZE);
  const view = new DataView(f.buffer, f.byteOffset, FRAME_SIZE);
  const u64 = (at: number): bigint => view.getBigUint64(at, true);
  const uc = FRAME_UC, sc = uc + UC.mcontext;
  // CS and SS as Linux takes them (RPL forced to 3): a process has one code and one stack segment
  // here, and any other CS faults natively on the way back (a 32-bit one would run: tskvm has none);
  // a bad SS is replaced, unless UC_STRICT_RESTORE_SS asks for it as it is (then it faults).
  if ((view.getUint16(sc + SC.cs, true) | 3) !== SELECTOR.USER_CS) return false;
  if ((view.getUint16(sc + SC.ss, true) | 3) !== SELECTOR.USER_DS && u64(uc + UC.flags) & BigInt(UC_STRICT_RESTORE_SS)) return false;
  const flags = ctx[R.rflags]!;
  SIGCONTEXT_REGS.forEach((reg, i) => { ctx[reg] = u64(sc + i * 8); });
  ctx[R.rflags] = (flags & ~FIX_EFLAGS) | (ctx[R.rflags]! & FIX_EFLAGS);
  const thread = p.threadSignals;
  thread.blocked = u64(uc + UC.sigmask) & ~UNBLOCKABLE;
  // restore_altstack: a valid uc_stack becomes the alternate stack; anything else is ignored.
  const ss = { sp: Number(u64(uc + UC.stack)), flags: view.getInt32(uc + UC.stack + 8, true), size: Number(u64(uc + UC.stack + 16)) };
  const mode = ss.flags & ~SS_AUTODISARM;
  if (!thread.onAltStack(sp) && (mode === 0 || mode === SS_ONSTACK) && ss.size >= MINSIGSTKSZ && Number.isSafeInteger(ss.sp + ss.size)) {
    thread.altStack = { sp: ss.sp, size: ss.size, flags: ss.flags & SS_AUTODISARM };
  } else if (mode === SS_DISABLE && !thread.onAltStack(sp)) {
    thread.altStack = { sp: 0, size: 0, flags: SS_DISABLE | (ss.flags & SS_AUTODISARM) };
  }
  const fp = u64(sc + SC.fpstate);
  return fp <= BigInt(Number.MAX_SAFE_INTEGER) && restoreFpu(cpu, p, mm, Number(fp));
}

// ---- The run loop's delivery points (run-loop.ts) ----

/**
 * The context of a program stopped at a syscall or hypercall exit: its registers, but rip is where
 * the call returns to (rcx, when the exit is in a syscall stub rather than a rewritten site).
 */
function callContext(cpu: SignalCpu, viaStub: boolean): { ctx: UserContext; ring0: boolean } {
  const ring0 = inRing0Stub(cpu.get('rip'));
  const ctx = contextOf(cpu.regs);
  if (ring0 || viaStub) ctx[R.rip] = ctx[R.rcx]!;
  return { ctx, ring0 };
}

function fireTimers(p: Process): void {
  if (p.signals.timers.size) p.signals.fireTimers(nowMs(CLOCK_MONOTONIC));
}

/** Whether anything may need doing when a call returns `result`: the cheap test on every call's way out. */
export function signalsWaiting(p: Process, result: number): boolean {
  const thread = p.threadSignals, signals = p.signals;
  return thread.pending.set !== 0n || signals.pending.set !== 0n || signals.timers.size !== 0 || thread.savedMask !== null
    || result === -ERESTARTSYS;
}

/** A call returned (its result in rax): the pending signals are delivered, or restarted/EINTR settled. */
export function signalsAfterCall(cpu: SignalCpu, p: Process, viaStub: boolean, nr: number, result: number): Killed | null {
  fireTimers(p);
  const { ctx, ring0 } = callContext(cpu, viaStub);
  const outcome = deliverPending(cpu, p, ctx, result === -ERESTARTSYS ? { nr, eintr: E.EINTR } : null);
  if (typeof outcome === 'object') return outcome;
  if (outcome) resume(cpu, ctx, ring0);
  return null;
}

/** rt_sigreturn: back to the context the frame saved, then what its mask lets through. */
export function sigreturnCall(cpu: SignalCpu, p: Process, viaStub: boolean): Killed | null {
  const { ctx, ring0 } = callContext(cpu, viaStub);
  if (!sigreturn(cpu, p, ctx) || !canonical(ctx[R.rip]!)) {
    // Linux's badframe: SIGSEGV, to a handler if the process has one it does not block.
    const outcome = deliverFault(cpu, p, ctx, SIG.SIGSEGV, siginfo(SIG.SIGSEGV, SI.KERNEL), NO_TRAP);
    if (outcome !== true) return outcome || { signal: SIG.SIGSEGV, message: 'killed by SIGSEGV: rt_sigreturn found no signal frame at the stack that the process can return to' };
  }
  fireTimers(p);
  const outcome = deliverPending(cpu, p, ctx, null);
  if (typeof outcome === 'object') return outcome;
  resume(cpu, ctx, ring0);
  return null;
}

/** The signal and siginfo Linux sends for a user-mode exception (traps.c, fault.c), or null for one it never sends. */
function faultSignal(cpu: SignalCpu, vector: number, frame: ExceptionFrame, cr2: number): { sig: number; info: Uint8Array } | null {
  const at = (addr: bigint) => (v: DataView): void => v.setBigUint64(16, addr, true);
  switch (vector) {
    case 0: return { sig: SIG.SIGFPE, info: siginfo(SIG.SIGFPE, SI.FPE_INTDIV, at(frame.rip)) };
    case 1: return { sig: SIG.SIGTRAP, info: siginfo(SIG.SIGTRAP, SI.TRAP_TRACE, at(frame.rip)) };
    case 3: return { sig: SIG.SIGTRAP, info: siginfo(SIG.SIGTRAP, SI.KERNEL) };
    case 4: case 5: case 13: return { sig: SIG.SIGSEGV, info: siginfo(SIG.SIGSEGV, SI.KERNEL) };
    case 6: return { sig: SIG.SIGILL, info: siginfo(SIG.SIGILL, SI.ILL_ILLOPN, at(frame.rip)) };
    case 11: case 12: return { sig: SIG.SIGBUS, info: siginfo(SIG.SIGBUS, SI.KERNEL) };
    case 14: return { sig: SIG.SIGSEGV, info: siginfo(SIG.SIGSEGV, frame.errorCode & 1 ? SI.SEGV_ACCERR : SI.SEGV_MAPERR, at(BigInt(cr2))) };
    case 16: case 19: return { sig: SIG.SIGFPE, info: siginfo(SIG.SIGFPE, fpeCode(cpu, vector), at(frame.rip)) };
    case 17: return { sig: SIG.SIGBUS, info: siginfo(SIG.SIGBUS, SI.BUS_ADRALN) };
    default: return null;
  }
}

/** fpu__exception_code: which unmasked x87 (#MF) or SSE (#XM) exception it was. */
function fpeCode(cpu: SignalCpu, vector: number): number {
  const x = new DataView(cpu.getXsave().buffer);
  let err: number;
  if (vector === 16) {
    err = x.getUint16(2, true) & ~x.getUint16(0, true) & 0x3f; // FSW & ~FCW
  } else {
    const mxcsr = x.getUint32(MXCSR, true);
    err = mxcsr & 0x3f & ~(mxcsr >> 7);
  }
  if (err & 0x1) return 7; // FPE_FLTINV
  if (err & 0x4) return SI.FPE_FLTDIV;
  if (err & 0x8) return 4; // FPE_FLTOVF
  if (err & 0x12) return 5; // FPE_FLTUND
  if (err & 0x20) return 6; // FPE_FLTRES
  return 0;
}

/**
 * A CPU exception in ring 3, at an exception stub's exit: to the signal's handler, if the process has
 * one it does not block (true: the guest goes on in the handler). False: the fault ends the run, as
 * without handlers (the caller reports it). A Killed: the handler's frame could not be written.
 */
export function faultToHandler(cpu: SignalCpu, p: Process, vector: number, frame: ExceptionFrame | null, cr2: number): boolean | Killed {
  if (!frame || (frame.cs & 3) !== 3) return false;
  const what = faultSignal(cpu, vector, frame, cr2);
  if (!what) return false;
  const ctx = contextOf(cpu.regs);
  ctx[R.rip] = frame.rip;
  ctx[R.rsp] = frame.rsp;
  ctx[R.rflags] = frame.rflags;
  const trap = { trapno: vector, err: frame.errorCode, cr2: vector === 14 ? cr2 : 0 };
  const outcome = deliverFault(cpu, p, ctx, what.sig, what.info, trap);
  if (outcome === true) resume(cpu, ctx, true);
  return outcome;
}

/**
 * The run timer interrupted the guest for one of its own timers: what is due is delivered if the
 * guest is in its own code. 'later' when it is in a stub or the vDSO, on its way back there: the
 * caller tries again shortly.
 */
export function signalsOnInterrupt(cpu: SignalCpu, p: Process): Killed | 'later' | null {
  fireTimers(p);
  if (nextDeliverable(p.signals, p.threadSignals) === 0) return null;
  if (cpu.get('rip') < USER_START) return 'later';
  const ctx = contextOf(cpu.regs);
  const outcome = deliverPending(cpu, p, ctx, null);
  if (typeof outcome === 'object') return outcome;
  if (outcome) resume(cpu, ctx, false);
  return null;
}
