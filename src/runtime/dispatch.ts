/**
 * How a request enters a program, in the VMOD's order (its backend.cpp, kvm_backend_call):
 *
 *   handler 3 (any method)            registered              → call it with the struct kvm_request
 *   handler 1 (GET)                   registered, no body     → call it with url, arg
 *   handler 2 (POST)                  registered, a body      → call it with url, arg, content type, body
 *     and handler 4 (streaming POST)  registered too          → first call 4 with each piece of the body,
 *                                                               then 2 with no body pointer, only its length
 *   paused in wait_for_requests_paused                        → fill its struct and resume after the call
 *   none of these                                             → the request fails (TSKVM_ERR_NO_HANDLER)
 *
 * So a paused program that registered handlers is served by them, and resumes only for the requests
 * none of them takes; a request with a body never goes to the GET handler.
 *
 * A call runs on a fresh stack below the frame it is given (main's, at the freeze) and that frame's
 * red zone, as a CALL would leave it: rsp ≡ 8 (mod 16) at entry, the return address the
 * HANDLER_RETURN trap (stubs.ts). Every entry goes through the request entry stub (REQUEST_ENTRY),
 * which clears the data segment selectors and puts FS's and GS's bases back first.
 * Request VMs (request-vm.ts) and the warm-up in the main VM (warmup.ts) enter the guest this way.
 */
import { HANDLER_RETURN, REQUEST_ENTRY } from '../paging/stubs.js';
import { HANDLER } from '../syscalls/api/guest-api.js';
import type { Process } from '../syscalls/process.js';
import type { Vcpu } from '../hypervisor/kvm/vcpu.js';
import { registerOf } from '../hypervisor/vcpu-state.js';
import type { PlacedRequest } from './request-data.js';

export type RequestEntry =
  /** `streamPost`: the streaming POST handler, which gets the body first, piece by piece (request-vm.ts). */
  | { kind: 'call'; fn: number; args: (r: PlacedRequest) => number[]; streamPost?: number }
  | { kind: 'resume' };

/** Which way a request goes in (the table above), or null when nothing of the program takes it. */
export function requestEntry(handlers: ReadonlyMap<number, number>, paused: boolean, hasBody: boolean): RequestEntry | null {
  const any = handlers.get(HANDLER.REQUEST);
  if (any !== undefined) return { kind: 'call', fn: any, args: (r) => [r.struct] };
  const get = handlers.get(HANDLER.GET);
  if (!hasBody && get !== undefined) return { kind: 'call', fn: get, args: (r) => [r.url, r.arg] };
  const post = handlers.get(HANDLER.POST);
  const streamPost = handlers.get(HANDLER.STREAM_POST);
  // After a streaming POST handler took the body, the POST handler gets no pointer to it, only its length (the VMOD's way).
  if (hasBody && post !== undefined && streamPost !== undefined) return { kind: 'call', fn: post, args: (r) => [r.url, r.arg, r.contentType, 0, r.bodyLength], streamPost };
  if (hasBody && post !== undefined) return { kind: 'call', fn: post, args: (r) => [r.url, r.arg, r.contentType, r.body, r.bodyLength] };
  return paused ? { kind: 'resume' } : null;
}

/** A vCPU and its process, the registers calls start from (the frozen ones), and whether the entry stub sets FS/GS bases itself. */
export interface GuestEntry {
  vcpu: Vcpu;
  process: Process;
  base: Uint32Array;
  fsgsbase: boolean;
}

const RED_ZONE = 128;
const ARG_REGS = ['rdi', 'rsi', 'rdx', 'rcx', 'r8', 'r9'] as const;

/** `fn(args…)` on a fresh stack below `below` (default: the base registers' rsp) and its red zone. */
export function callOnFreshStack(e: GuestEntry, fn: number, args: number[], below = registerOf(e.base, 'rsp')): void {
  e.vcpu.regs.set(e.base);
  // Arithmetic, not `& ~0xf`: bitwise operators cut a Number to 32 bits, and stacks live higher.
  const rsp = Math.floor((below - RED_ZONE) / 16) * 16 - 8;
  e.process.mem.setU64(rsp, HANDLER_RETURN);
  e.vcpu.set('rsp', rsp);
  enterAt(e, fn);
  args.forEach((value, n) => e.vcpu.set(ARG_REGS[n]!, value));
}

/**
 * Starts the guest in the entry stub, which goes on to `rip`. With WRFSBASE in ring 3 the stub sets
 * FS's and GS's bases from r11 and rax: the process's own (the frozen ones after a reset,
 * arch_prctl's in a VM that keeps its state).
 */
export function enterAt(e: GuestEntry, rip: number): void {
  e.vcpu.set('r10', rip);
  e.vcpu.set('rip', REQUEST_ENTRY);
  if (e.fsgsbase) {
    e.vcpu.set('r11', e.process.fsBase);
    e.vcpu.set('rax', e.process.gsBase);
  }
}
