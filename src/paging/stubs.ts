/**
 * The only guest code tskvm itself provides: a few bytes at the entry points the
 * CPU jumps to. Each stub tells the host what happened with an `out` to a port
 * (one VM exit) and lets the host do the work.
 *
 * Two pages: the ring-3 stubs (user read + execute) and the ring-0 stubs
 * (supervisor only, so that with SMEP ring 0 runs nothing a user page holds).
 *
 * Syscall entry (LSTAR). Which one depends on the CPU (probed at start-up,
 * platform.ts):
 *   PVM, in the ring-3 page — `syscall` jumps to LSTAR but stays in ring 3, where sysretq would #GP:
 *       out %eax, $0x1        e7 01         ; host emulates syscall rax, sets rax
 *       jmp *%rcx             ff e1         ; rcx = return address (set by syscall)
 *   hardware, in the ring-0 page — `syscall` switches to ring 0:
 *       out %eax, $0x1        e7 01
 *       sysretq               48 0f 07      ; back to ring 3 at rcx, rflags from r11
 *
 * Exception stubs, in the ring-0 page, one 16-byte slot per vector 0–31, run in ring 0 on IST1:
 *       [push $0]             6a 00         ; for vectors without an error code, so
 *                                           ;   the frame always is err, rip, cs, rflags, rsp, ss
 *       out %al, $(0x80+v)    e6 80+v       ; the port names the vector; no register changes
 *   1:  hlt; jmp 1b           f4 eb fd      ; never resumed
 *
 * Request entry (REQUEST_ENTRY): where every request starts, r10 holding where
 * it goes on (the handler, or the instruction after the pausing call). DS, ES,
 * FS and GS selectors, and FS's and GS's bases, are part of what a request may
 * change (`mov %ax, %fs`; on PVM also `wrfsbase`), and on PVM the host cannot
 * set the selectors back (the switcher keeps the guest's selectors in the CPU;
 * KVM_SET_SREGS does not reach them), so the guest clears them itself. Where
 * ring 3 has WRFSBASE (CR4.FSGSBASE, probed at start-up) the stub also sets the
 * bases, from r11 (FS) and rax (GS), at no exit:
 *       mov ZERO(%rip), %ds   8e 1d 52 00 00 00   ; ZERO: 8 zero bytes at 0xf8 of the page
 *       mov ZERO(%rip), %es   8e 05 4c 00 00 00
 *       mov ZERO(%rip), %fs   8e 25 46 00 00 00
 *       mov ZERO(%rip), %gs   8e 2d 40 00 00 00
 *       wrfsbase %r11         f3 49 0f ae d3
 *       wrgsbase %rax         f3 48 0f ae d8
 *       xor %eax, %eax        31 c0               ; a paused call returns 0
 *       xor %r11d, %r11d      45 31 db
 *       jmp *%r10             41 ff e2
 * Without it, loading a selector is the only way to change a base from ring 3;
 * the stub clears the selectors and, only when FS or GS was not null, asks the
 * host with one exit to put the bases back. Only r11 and the flags change:
 *       xor %r11d, %r11d      45 31 db
 *       mov %r11d, %ds        41 8e db
 *       mov %r11d, %es        41 8e c3
 *       mov %fs, %r11d        41 8c e3
 *       test %r11d, %r11d     45 85 db
 *       jnz 1f                75 0b
 *       mov %gs, %r11d        41 8c eb
 *       test %r11d, %r11d     45 85 db
 *       jnz 1f                75 03
 *       jmp *%r10             41 ff e2
 *   1:  xor %r11d, %r11d      45 31 db
 *       mov %r11d, %fs        41 8e e3
 *       mov %r11d, %gs        41 8e eb
 *       out %al, $2           e6 02               ; PORT_SEGMENT_BASES
 *       jmp *%r10             41 ff e2
 *
 * Handler return (HANDLER_RETURN): the return address the host pushes when it
 * calls a request handler, so a handler that returns without responding traps
 * back to the host instead of running off into its caller's frame. What the
 * function returned is kept, rax in rdi (rdx is untouched), as the VMOD does: a
 * streamed response's callback returns struct streaming_content in rax:rdx.
 *       mov %rax, %rdi        48 89 c7
 *       mov $0x7ffff, %eax    b8 ff ff 07 00 ; tskvm's private hypercall HANDLER_RETURNED
 *       out %eax, $0          e7 00
 *       ud2                   0f 0b          ; never resumed
 */
import { PORT_EXCEPTION_BASE, PORT_HYPERCALL, PORT_SEGMENT_BASES, PORT_SYSCALL, RING0_STUBS_ADDR, STUBS_ADDR } from './layout.js';

export type SyscallEntryKind = 'ring3-jmp' | 'ring0-sysret';

/** What the probe found that decides which stubs a guest gets (platform.ts). */
export interface StubChoice {
  /** Ring 3 may use WRFSBASE/WRGSBASE: the request entry sets the bases itself. */
  fsgsbase: boolean;
}

/** Where LSTAR points, for each kind of syscall entry. */
export const SYSCALL_ENTRY: Record<SyscallEntryKind, number> = { 'ring3-jmp': STUBS_ADDR, 'ring0-sysret': RING0_STUBS_ADDR };
export const HANDLER_RETURN = STUBS_ADDR + 0x80;
export const REQUEST_ENTRY = STUBS_ADDR + 0xa0;
const EXCEPTION_STUBS = RING0_STUBS_ADDR + 0x100;
const HANDLER_RETURN_CODE = [0x48, 0x89, 0xc7, 0xb8, 0xff, 0xff, 0x07, 0x00, 0xe7, PORT_HYPERCALL, 0x0f, 0x0b];
const REQUEST_ENTRY_FSGSBASE = [
  0x8e, 0x1d, 0x52, 0x00, 0x00, 0x00, 0x8e, 0x05, 0x4c, 0x00, 0x00, 0x00, 0x8e, 0x25, 0x46, 0x00, 0x00, 0x00,
  0x8e, 0x2d, 0x40, 0x00, 0x00, 0x00, 0xf3, 0x49, 0x0f, 0xae, 0xd3, 0xf3, 0x48, 0x0f, 0xae, 0xd8,
  0x31, 0xc0, 0x45, 0x31, 0xdb, 0x41, 0xff, 0xe2,
];
const REQUEST_ENTRY_SELECTORS_ONLY = [
  0x45, 0x31, 0xdb, 0x41, 0x8e, 0xdb, 0x41, 0x8e, 0xc3, 0x41, 0x8c, 0xe3, 0x45, 0x85, 0xdb, 0x75, 0x0b,
  0x41, 0x8c, 0xeb, 0x45, 0x85, 0xdb, 0x75, 0x03, 0x41, 0xff, 0xe2,
  0x45, 0x31, 0xdb, 0x41, 0x8e, 0xe3, 0x41, 0x8e, 0xeb, 0xe6, PORT_SEGMENT_BASES, 0x41, 0xff, 0xe2,
];
const ZERO = STUBS_ADDR + 0xf8;

const syscallStubs: Record<SyscallEntryKind, number[]> = {
  'ring3-jmp': [0xe7, PORT_SYSCALL, 0xff, 0xe1],
  'ring0-sysret': [0xe7, PORT_SYSCALL, 0x48, 0x0f, 0x07],
};

/** Vectors for which the CPU pushes an error code itself. */
const HAS_ERROR_CODE = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);

export function exceptionStubAddress(vector: number): number {
  return EXCEPTION_STUBS + vector * 16;
}

/** Writes both stub pages: both syscall entries (LSTAR picks one), the request entry, the handler return, the 32 exception stubs. */
export function writeStubs(memory: Uint8Array, choice: StubChoice): void {
  memory.fill(0xcc, STUBS_ADDR, STUBS_ADDR + 0x1000); // int3 everywhere else
  memory.fill(0xcc, RING0_STUBS_ADDR, RING0_STUBS_ADDR + 0x1000);
  for (const kind of ['ring3-jmp', 'ring0-sysret'] as const) memory.set(syscallStubs[kind], SYSCALL_ENTRY[kind]);
  memory.set(HANDLER_RETURN_CODE, HANDLER_RETURN);
  memory.set(choice.fsgsbase ? REQUEST_ENTRY_FSGSBASE : REQUEST_ENTRY_SELECTORS_ONLY, REQUEST_ENTRY);
  memory.fill(0, ZERO, ZERO + 8);
  for (let vector = 0; vector < 32; vector++) {
    const code = HAS_ERROR_CODE.has(vector) ? [] : [0x6a, 0x00];
    code.push(0xe6, PORT_EXCEPTION_BASE + vector, 0xf4, 0xeb, 0xfd);
    memory.set(code, exceptionStubAddress(vector));
  }
}
