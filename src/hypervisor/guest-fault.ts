/**
 * Turning a CPU exception in the guest into what a person needs to read: the
 * exception's name, where it happened, the faulting address, the registers —
 * and the signal a native process would have died of.
 *
 * The IDT stub for the vector (paging/stubs.ts) leaves the CPU's frame on the
 * exception stack, always with an error code slot:
 *   [rsp+0] error code  [+8] rip  [+16] cs  [+24] rflags  [+32] rsp  [+40] ss
 */
import type { GuestMemory } from '../paging/guest-memory.js';
import { EXCEPTION_STACK_SIZE, EXCEPTION_STACK_TOP } from '../paging/layout.js';
import { SIG } from '../syscalls/signal-state.js';
import type { RegName } from './kvm/abi.js';

interface VectorInfo { mnemonic: string; name: string; signal: number }

const VECTORS: Record<number, VectorInfo> = {
  0: { mnemonic: '#DE', name: 'divide error', signal: SIG.SIGFPE },
  1: { mnemonic: '#DB', name: 'debug exception', signal: SIG.SIGTRAP },
  2: { mnemonic: 'NMI', name: 'non-maskable interrupt', signal: SIG.SIGSEGV },
  3: { mnemonic: '#BP', name: 'breakpoint (int3)', signal: SIG.SIGTRAP },
  4: { mnemonic: '#OF', name: 'overflow', signal: SIG.SIGSEGV },
  5: { mnemonic: '#BR', name: 'bound range exceeded', signal: SIG.SIGSEGV },
  6: { mnemonic: '#UD', name: 'invalid opcode', signal: SIG.SIGILL },
  7: { mnemonic: '#NM', name: 'device not available', signal: SIG.SIGSEGV },
  8: { mnemonic: '#DF', name: 'double fault', signal: SIG.SIGSEGV },
  10: { mnemonic: '#TS', name: 'invalid TSS', signal: SIG.SIGSEGV },
  11: { mnemonic: '#NP', name: 'segment not present', signal: SIG.SIGBUS },
  12: { mnemonic: '#SS', name: 'stack-segment fault', signal: SIG.SIGBUS },
  13: { mnemonic: '#GP', name: 'general protection fault', signal: SIG.SIGSEGV },
  14: { mnemonic: '#PF', name: 'page fault', signal: SIG.SIGSEGV },
  16: { mnemonic: '#MF', name: 'x87 floating-point exception', signal: SIG.SIGFPE },
  17: { mnemonic: '#AC', name: 'alignment check', signal: SIG.SIGBUS },
  18: { mnemonic: '#MC', name: 'machine check', signal: SIG.SIGBUS },
  19: { mnemonic: '#XM', name: 'SIMD floating-point exception', signal: SIG.SIGFPE },
  21: { mnemonic: '#CP', name: 'control protection', signal: SIG.SIGSEGV },
};

export interface GuestFaultReport {
  kind: 'exception' | 'shutdown' | 'privileged' | 'io';
  vector?: number;
  /** `page fault (#PF)`, `triple fault`, … */
  name: string;
  signal: number;
  rip: number;
  rsp: number;
  errorCode?: number;
  /** The faulting address (CR2) of a page fault. */
  address?: number;
  registers: Record<string, bigint>;
  /** One line for the terminal. */
  summary: string;
}

const hex = (v: number | bigint): string => '0x' + v.toString(16);

function pageFaultDetail(errorCode: number, address: number): string {
  const access = errorCode & 0x10 ? 'instruction fetch' : errorCode & 2 ? 'write' : 'read';
  const why = errorCode & 1 ? 'protection violation' : 'unmapped address';
  return `${access} at ${hex(address)} (${why})`;
}

/** What the CPU pushed when the exception came, the stub's error code slot included. */
export interface ExceptionFrame {
  errorCode: number;
  rip: bigint;
  cs: number;
  rflags: bigint;
  rsp: bigint;
  ss: number;
}

/**
 * The frame at `rsp` (the stub's, at its exit). It is on the exception stack, in the hypervisor's
 * pages, which the checked accessors (for guest pointers) refuse: read it directly, but only from
 * there. Null for a frame anywhere else: the exception stack itself is broken.
 */
export function exceptionFrame(mem: GuestMemory, rsp: number): ExceptionFrame | null {
  if (!(rsp >= EXCEPTION_STACK_TOP - EXCEPTION_STACK_SIZE && rsp + 48 <= EXCEPTION_STACK_TOP)) return null;
  const frame = mem.span(rsp, 48);
  const view = new DataView(frame.buffer, frame.byteOffset, 48);
  const u64 = (at: number): bigint => view.getBigUint64(at, true);
  return { errorCode: Number(u64(0)), rip: u64(8), cs: Number(u64(16) & 0xffffn), rflags: u64(24), rsp: u64(32), ss: Number(u64(40) & 0xffffn) };
}

/** A fault report from an exception stub's exit. */
export function describeException(vector: number, mem: GuestMemory, registers: Record<RegName, bigint>, cr2: number): GuestFaultReport {
  const info = VECTORS[vector] ?? { mnemonic: `#${vector}`, name: `exception ${vector}`, signal: SIG.SIGSEGV };
  const frame = exceptionFrame(mem, Number(registers.rsp));
  // Without a frame, report what we have.
  const errorCode = frame?.errorCode ?? 0;
  const rip = frame ? Number(frame.rip) : Number(registers.rip);
  const rsp = frame ? Number(frame.rsp) : Number(registers.rsp);
  const regs: Record<string, bigint> = { ...registers, rip: BigInt(rip), rsp: BigInt(rsp) };
  const name = `${info.name} (${info.mnemonic})`;
  const detail = vector === 14 ? `: ${pageFaultDetail(errorCode, cr2)}` : errorCode ? ` (error code ${hex(errorCode)})` : '';
  return {
    kind: 'exception', vector, name, signal: info.signal, rip, rsp, errorCode,
    address: vector === 14 ? cr2 : undefined, registers: regs,
    summary: `${name} at rip ${hex(rip)}${detail}`,
  };
}

/** A fault the hypervisor saw directly (triple fault, hlt, a stray I/O port). */
export function describeOther(kind: GuestFaultReport['kind'], name: string, registers: Record<RegName, bigint>): GuestFaultReport {
  const rip = Number(registers.rip);
  return {
    kind, name, signal: SIG.SIGSEGV, rip, rsp: Number(registers.rsp), registers: { ...registers },
    summary: `${name} at rip ${hex(rip)}`,
  };
}

/** The register dump printed under a fault, four registers a line. */
export function formatRegisters(registers: Record<string, bigint>): string {
  const names = Object.keys(registers);
  const lines: string[] = [];
  for (let i = 0; i < names.length; i += 4) {
    lines.push('  ' + names.slice(i, i + 4).map((n) => `${n.padStart(6)} ${registers[n]!.toString(16).padStart(16, '0')}`).join('  '));
  }
  return lines.join('\n');
}
