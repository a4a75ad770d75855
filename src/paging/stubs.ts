/**
 * The only guest code tskvm itself provides: a few bytes at the entry points the
 * CPU jumps to. Each stub tells the host what happened with an `out` to a port
 * (one VM exit) and lets the host do the work.
 *
 * Syscall entry (LSTAR). Which return depends on the CPU (probed at start-up,
 * platform.ts):
 *   PVM — `syscall` jumps to LSTAR but stays in ring 3, where sysretq would #GP:
 *       out %eax, $0x1        e7 01         ; host emulates syscall rax, sets rax
 *       jmp *%rcx             ff e1         ; rcx = return address (set by syscall)
 *   hardware — `syscall` switches to ring 0:
 *       out %eax, $0x1        e7 01
 *       sysretq               48 0f 07      ; back to ring 3 at rcx, rflags from r11
 *
 * Exception stubs, one 16-byte slot per vector 0–31, run in ring 0 on IST1:
 *       [push $0]             6a 00         ; for vectors without an error code, so
 *                                           ;   the frame always is err, rip, cs, rflags, rsp, ss
 *       out %al, $(0x80+v)    e6 80+v       ; the port names the vector; no register changes
 *   1:  hlt; jmp 1b           f4 eb fd      ; never resumed
 *
 * Handler return (HANDLER_RETURN): the return address the host pushes when it
 * calls a request handler, so a handler that returns without responding traps
 * back to the host instead of running off into its caller's frame:
 *       mov $0x7ffff, %eax    b8 ff ff 07 00 ; tskvm's private hypercall HANDLER_RETURNED
 *       out %eax, $0          e7 00
 *       ud2                   0f 0b          ; never resumed
 */
import { PORT_EXCEPTION_BASE, PORT_HYPERCALL, PORT_SYSCALL, STUBS_ADDR } from './layout.js';

export type SyscallEntryKind = 'ring3-jmp' | 'ring0-sysret';

export const SYSCALL_ENTRY = STUBS_ADDR;
export const HANDLER_RETURN = STUBS_ADDR + 0x80;
const EXCEPTION_STUBS = STUBS_ADDR + 0x100;
const HANDLER_RETURN_CODE = [0xb8, 0xff, 0xff, 0x07, 0x00, 0xe7, PORT_HYPERCALL, 0x0f, 0x0b];

const syscallStubs: Record<SyscallEntryKind, number[]> = {
  'ring3-jmp': [0xe7, PORT_SYSCALL, 0xff, 0xe1],
  'ring0-sysret': [0xe7, PORT_SYSCALL, 0x48, 0x0f, 0x07],
};

/** Vectors for which the CPU pushes an error code itself. */
const HAS_ERROR_CODE = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);

export function exceptionStubAddress(vector: number): number {
  return EXCEPTION_STUBS + vector * 16;
}

/** Writes the syscall entry and the 32 exception stubs into the stub page. */
export function writeStubs(memory: Uint8Array, entry: SyscallEntryKind): void {
  memory.fill(0xcc, STUBS_ADDR, STUBS_ADDR + 0x1000); // int3 everywhere else
  memory.set(syscallStubs[entry], SYSCALL_ENTRY);
  memory.set(HANDLER_RETURN_CODE, HANDLER_RETURN);
  for (let vector = 0; vector < 32; vector++) {
    const code = HAS_ERROR_CODE.has(vector) ? [] : [0x6a, 0x00];
    code.push(0xe6, PORT_EXCEPTION_BASE + vector, 0xf4, 0xeb, 0xfd);
    memory.set(code, exceptionStubAddress(vector));
  }
}
