/**
 * Signal dispositions, the blocked mask and the alternate stack: the state
 * rt_sigaction/rt_sigprocmask/sigaltstack read and write. tskvm does not deliver
 * asynchronous signals into the guest; a signal a process sends itself takes its
 * default action (see signal.ts), and CPU faults end the run like a fatal signal.
 */
export const SIG = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8, SIGKILL: 9,
  SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGCHLD: 17, SIGCONT: 18,
  SIGSTOP: 19, SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22, SIGURG: 23, SIGWINCH: 28,
} as const;

export const SIG_IGN = 1n;

/** Signals whose default action is to do nothing (or to stop, which a sandbox treats the same). */
const DEFAULT_IGNORED = new Set<number>([SIG.SIGCHLD, SIG.SIGCONT, SIG.SIGURG, SIG.SIGWINCH, SIG.SIGSTOP, SIG.SIGTSTP, SIG.SIGTTIN, SIG.SIGTTOU]);

/** struct kernel_sigaction as the guest passed it: handler, flags, restorer, mask (4 × u64). */
export const SIGACTION_SIZE = 32;

export interface SignalSnapshot {
  actions: Array<[number, Uint8Array]>;
  blocked: bigint;
  altStack: Uint8Array | null;
}

export class SignalState {
  private actions = new Map<number, Uint8Array>();
  blocked = 0n;
  /** struct stack_t (24 bytes) from sigaltstack, or null when none is set. */
  altStack: Uint8Array | null = null;

  action(sig: number): Uint8Array {
    return this.actions.get(sig) ?? new Uint8Array(SIGACTION_SIZE);
  }

  setAction(sig: number, raw: Uint8Array): void {
    this.actions.set(sig, Uint8Array.from(raw));
  }

  handlerOf(sig: number): bigint {
    return new DataView(this.action(sig).buffer).getBigUint64(0, true);
  }

  /** What sending `sig` to ourselves does: nothing, or end the process. */
  defaultIsFatal(sig: number): boolean {
    return !DEFAULT_IGNORED.has(sig);
  }

  snapshot(): SignalSnapshot {
    return { actions: [...this.actions].map(([k, v]) => [k, Uint8Array.from(v)]), blocked: this.blocked, altStack: this.altStack && Uint8Array.from(this.altStack) };
  }

  restore(s: SignalSnapshot): void {
    this.actions = new Map(s.actions.map(([k, v]) => [k, Uint8Array.from(v)]));
    this.blocked = s.blocked;
    this.altStack = s.altStack && Uint8Array.from(s.altStack);
  }
}
