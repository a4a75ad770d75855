/**
 * The guest API's hypercalls (GUEST_ABI.md): `mov $NR, %eax; out %eax, $0`
 * with C-convention arguments (rdi, rsi, rdx, rcx, r8, r9). The request
 * lifecycle calls (0x10000…) belong to programs that serve requests; a program
 * started with `tskvm run` gets the calls that make sense for it and -ENOSYS
 * for the rest, like any unknown call.
 */
import type { SyscallDef } from '../syscall.js';

export const HYPERCALL = {
  SYS_LOG: 0x7f000,
  SYS_IS_DEBUG: 0x7fdeb,
} as const;

const definitions: SyscallDef[] = [
  {
    nr: HYPERCALL.SYS_LOG, name: 'sys_log', args: ['inbuf', 'size'],
    handler: (p, a) => {
      const bytes = p.mem.read(a[0]!, Math.max(0, a[1]!));
      p.warn(`log: ${Buffer.from(bytes).toString('utf8').replace(/\n$/, '')}`);
      return 0;
    },
  },
  { nr: HYPERCALL.SYS_IS_DEBUG, name: 'sys_is_debug', args: [], handler: () => 0 },
];

export const hypercallTable = new Map<number, SyscallDef>(definitions.map((d) => [d.nr, d]));
