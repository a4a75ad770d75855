/**
 * What a guest can change in its process, as one list of pieces, each with how to save it and put it
 * back. A request VM saves every piece once, when it is forked, and its reset restores every piece
 * from that: the two walk the same list, so a piece cannot be saved and forgotten, or the other way
 * round. test/process-state.test.ts checks that every field of a Process is either in a piece or
 * fixed for the process's life (PROCESS_FIXED), so a new field must be placed in one or the other.
 *
 * The vCPU's state (registers, segment state, vector registers, MSRs) and guest memory are the
 * request VM's own to restore (request-vm.ts, "reset"): they live in KVM, not in the Process.
 */
import type { GuestApi } from './api/guest-api.js';
import type { Process } from './process.js';

export interface StatePiece<S = unknown> {
  readonly name: string;
  /** The Process fields this piece covers. */
  readonly fields: ReadonlyArray<keyof Process>;
  save(): S;
  restore(saved: S): void;
  /** Releases what a saved copy holds (open files keep their host fds alive). */
  discard?(saved: S): void;
}

/** Process fields that are wiring or configuration, set once: no request can change them. */
export const PROCESS_FIXED: ReadonlyArray<keyof Process> = ['mem', 'argv', 'env', 'trace', 'warn', 'log', 'cpu'];

/** The scalars of a process: what a frozen program records of them, and what a reset puts back. */
export interface ProcessScalars {
  umask: number;
  threadName: Uint8Array;
  clearChildTid: number;
  fsBase: number;
  gsBase: number;
}

/** The guest API's part of a process that a request changes: the phase (requests never go back to init). */
type ApiState = Pick<GuestApi, 'phase'>;

export function processState(p: Process): StatePiece[] {
  return [
    piece('files', ['files'], () => p.files.snapshot(), (s) => p.files.restore(s), (s) => p.files.discard(s)),
    piece('address space', ['mm'], () => p.mm.snapshot(), (s) => p.mm.restore(s)),
    piece('signals', ['signals'], () => p.signals.snapshot(), (s) => p.signals.restore(s)),
    piece('working directory', ['paths'], () => p.paths.snapshot(), (s) => p.paths.restore(s)),
    piece('scalars', ['umask', 'threadName', 'clearChildTid', 'fsBase', 'gsBase', 'exit', 'pause'],
      () => saveScalars(p), (s) => restoreScalars(p, s)),
    piece<ApiState>('guest API', ['api'], () => ({ phase: p.api.phase }), (s) => { p.api.phase = s.phase; }),
  ];
}

export function saveScalars(p: Process): ProcessScalars {
  return { umask: p.umask, threadName: Uint8Array.from(p.threadName), clearChildTid: p.clearChildTid, fsBase: p.fsBase, gsBase: p.gsBase };
}

/** Puts the scalars back; a process being restored has neither exited nor paused. */
export function restoreScalars(p: Process, s: ProcessScalars): void {
  p.umask = s.umask;
  p.threadName.set(s.threadName);
  p.clearChildTid = s.clearChildTid;
  p.fsBase = s.fsBase;
  p.gsBase = s.gsBase;
  p.exit = null;
  p.pause = null;
}

function piece<S>(name: string, fields: Array<keyof Process>, save: () => S, restore: (s: S) => void, discard?: (s: S) => void): StatePiece {
  return { name, fields, save, restore: restore as (s: unknown) => void, discard: discard as ((s: unknown) => void) | undefined };
}
