/**
 * Signal syscalls. Dispositions are recorded (so programs that install handlers
 * run), and a signal a process sends to itself (abort() → tgkill(SIGABRT)) ends
 * it with status 128+signal unless ignored — as a native process without a
 * handler would. Running guest signal handlers is not implemented.
 */
import { E } from '../host/errno.js';
import type { SyscallDef } from './syscall.js';
import { Process } from './process.js';
import { SIG, SIG_IGN, SIGACTION_SIZE } from './signal-state.js';

const SIG_BLOCK = 0, SIG_UNBLOCK = 1, SIG_SETMASK = 2;
const UNBLOCKABLE = (1n << BigInt(SIG.SIGKILL - 1)) | (1n << BigInt(SIG.SIGSTOP - 1));
const SS_DISABLE = 2;

function validSignal(sig: number): boolean {
  return sig >= 1 && sig <= 64;
}

/** The effect of a signal sent to this process. */
function raise(p: Process, sig: number): number {
  if (sig === 0) return 0;
  if (!validSignal(sig)) return -E.EINVAL;
  const handler = p.signals.handlerOf(sig);
  if (sig !== SIG.SIGKILL && handler === SIG_IGN) return 0;
  if (sig !== SIG.SIGKILL && handler !== 0n) {
    p.warn(`signal ${sig} has a handler, but tskvm does not run guest signal handlers; taking the default action`);
  }
  if (!p.signals.defaultIsFatal(sig)) return 0;
  p.exit = { status: 128 + sig, signal: sig };
  return 0;
}

const isSelf = (pid: number): boolean => pid === Process.PID || pid === 0 || pid === -Process.PID;

export const signalSyscalls: SyscallDef[] = [
  {
    nr: 13, name: 'rt_sigaction', args: ['signal', 'ptr', 'ptr', 'size'],
    handler: (p, a) => {
      const [sig, act, oldact, size] = [a[0]! | 0, a[1]!, a[2]!, a[3]!];
      if (size !== 8 || !validSignal(sig)) return -E.EINVAL;
      if (act && (sig === SIG.SIGKILL || sig === SIG.SIGSTOP)) return -E.EINVAL;
      const incoming = act ? Uint8Array.from(p.mem.read(act, SIGACTION_SIZE)) : null;
      if (oldact) p.mem.put(oldact, p.signals.action(sig));
      if (incoming) p.signals.setAction(sig, incoming);
      return 0;
    },
  },
  {
    nr: 14, name: 'rt_sigprocmask', args: ['int', 'ptr', 'ptr', 'size'],
    handler: (p, a) => {
      const [how, set, oldset, size] = [a[0]! | 0, a[1]!, a[2]!, a[3]!];
      if (size !== 8) return -E.EINVAL;
      const incoming = set ? BigInt(p.mem.u32(set)) | (BigInt(p.mem.u32(set + 4)) << 32n) : null;
      if (incoming !== null && how !== SIG_BLOCK && how !== SIG_UNBLOCK && how !== SIG_SETMASK) return -E.EINVAL;
      if (oldset) p.mem.setU64(oldset, p.signals.blocked);
      if (incoming !== null) {
        const next = how === SIG_BLOCK ? p.signals.blocked | incoming : how === SIG_UNBLOCK ? p.signals.blocked & ~incoming : incoming;
        p.signals.blocked = next & ~UNBLOCKABLE;
      }
      return 0;
    },
  },
  {
    nr: 131, name: 'sigaltstack', args: ['ptr', 'ptr'],
    handler: (p, a) => {
      const [ss, old] = [a[0]!, a[1]!];
      const incoming = ss ? Uint8Array.from(p.mem.read(ss, 24)) : null;
      if (old) {
        const current = p.signals.altStack ?? new Uint8Array(24);
        p.mem.put(old, current);
        if (!p.signals.altStack) p.mem.setI32(old + 8, SS_DISABLE);
      }
      if (incoming) p.signals.altStack = incoming;
      return 0;
    },
  },
  { nr: 15, name: 'rt_sigreturn', args: [], handler: () => -E.ENOSYS },
  {
    nr: 62, name: 'kill', args: ['int', 'signal'],
    handler: (p, a) => (isSelf(a[0]! | 0) || (a[0]! | 0) === -1 ? raise(p, a[1]! | 0) : -E.ESRCH),
  },
  { nr: 200, name: 'tkill', args: ['int', 'signal'], handler: (p, a) => ((a[0]! | 0) === Process.PID ? raise(p, a[1]! | 0) : -E.ESRCH) },
  {
    nr: 234, name: 'tgkill', args: ['int', 'int', 'signal'],
    handler: (p, a) => ((a[0]! | 0) === Process.PID && (a[1]! | 0) === Process.PID ? raise(p, a[2]! | 0) : -E.ESRCH),
  },
  {
    nr: 127, name: 'rt_sigpending', args: ['ptr', 'size'],
    handler: (p, a) => (a[1] !== 8 ? -E.EINVAL : (p.mem.setU64(a[0]!, 0), 0)),
  },
];
