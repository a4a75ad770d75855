/**
 * What a guest can change in its process, in pieces, and the four things done with them:
 *
 *   freezeProcess  the frozen program records each piece as plain data (it crosses to worker threads)
 *   thawProcess    a fork's new process takes each piece from that
 *   saveProcess    the fork keeps each piece as it started
 *   restoreProcess its reset puts each piece back
 *
 * The pieces are the keys of PROCESS_STATE, and the frozen and saved forms are records over exactly
 * those keys (StateRecord), so a piece added to one is a compile error until the other three handle it.
 * test/process-state.test.ts checks that every field of a Process is in a piece or fixed for the
 * process's life (PROCESS_FIXED), and that restore and thaw give back what save and freeze took.
 *
 * The four are plain functions calling each piece by name rather than a loop over piece objects: the
 * reset runs for every request, and a call through six different closures cost ~1 µs of its ~19 µs.
 *
 * The vCPU's state (registers, segment state, vector registers, MSRs) and guest memory live in KVM,
 * not in the Process: src/hypervisor/vcpu-state.ts and src/runtime/dirty-pages.ts restore them.
 */
import type { AddressSpaceSnapshot } from './address-space.js';
import type { FileTableSnapshot, FrozenFileTable } from './fd-table.js';
import type { Process } from './process.js';
import type { SignalSnapshot } from './signal-state.js';
import type { FrozenRegexes, RegexSnapshot } from './api/regex.js';
import type { FrozenThreads } from './thread-table.js';
import { SignalFdFile } from './open-files/signal-file.js';

/** Each piece of the process's state, and the Process fields it covers. */
export const PROCESS_STATE = {
  files: ['files'],
  addressSpace: ['mm'],
  signals: ['signals', 'threadSignals'],
  cwd: ['paths'],
  scalars: ['umask', 'fsBase', 'gsBase', 'exit', 'pause'],
  threads: ['threads'],
  api: ['api'],
  regexes: ['regexes'],
} as const satisfies Record<string, ReadonlyArray<keyof Process>>;

/** Process fields that are wiring or configuration, set once: no request can change them. */
export const PROCESS_FIXED: ReadonlyArray<keyof Process> = ['mem', 'argv', 'env', 'trace', 'warn', 'log', 'cpu'];

type Piece = keyof typeof PROCESS_STATE;
/** A record with exactly one entry per piece. */
type StateRecord<T extends { [K in Piece]: unknown } & { [K in Exclude<keyof T, Piece>]: never }> = T;

/** The scalars of a process. */
export interface ProcessScalars {
  umask: number;
  fsBase: number;
  gsBase: number;
}

/** What the program chose through the guest API while it booted; requests cannot change it. */
export interface FrozenApi {
  /** register_func calls: [index, guest address]. */
  handlers: Array<[number, number]>;
  /** What the program chose with sys_make_ephemeral, or null. */
  ephemeral: boolean | null;
  /** A storage VM's allow list (sys_storage_allow); empty: any function may be called. */
  storageAllowed: number[];
}

/** The process as the frozen program records it: plain data, transferable to another thread. */
export type FrozenProcessState = StateRecord<{
  files: FrozenFileTable;
  addressSpace: AddressSpaceSnapshot;
  signals: SignalSnapshot;
  cwd: string;
  scalars: ProcessScalars;
  /** The threads not running, and the running one's identity: every fork has them. */
  threads: FrozenThreads;
  api: FrozenApi;
  /** The handles main() compiled: a request starts with them. */
  regexes: FrozenRegexes;
}>;

/** The process as a fork keeps it, to reset to. Open files are held by reference (discardSaved releases them). */
export type SavedProcess = StateRecord<{
  files: FileTableSnapshot;
  addressSpace: AddressSpaceSnapshot;
  signals: SignalSnapshot;
  cwd: string;
  scalars: ProcessScalars;
  /** A request's threads are gone after the reset; main()'s are back as they were frozen. */
  threads: FrozenThreads;
  /** A fork always serves requests: the API is back in its request phase. */
  api: null;
  regexes: RegexSnapshot;
}>;

export function freezeProcess(p: Process): FrozenProcessState {
  return {
    files: p.files.freeze(),
    addressSpace: p.mm.snapshot(),
    signals: p.signals.snapshot(p.threadSignals),
    cwd: p.paths.snapshot(),
    scalars: saveScalars(p),
    threads: p.threads.freeze(),
    api: { handlers: [...p.api.handlers], ephemeral: p.api.ephemeral, storageAllowed: [...p.api.storageAllowed] },
    regexes: p.regexes.freeze(),
  };
}

/**
 * Gives a new process (files: an empty table) the frozen state, as a fork starts. `sink`: where the
 * fork's output files write (their host side cannot cross threads).
 */
export function thawProcess(p: Process, f: FrozenProcessState, sink: (name: string) => (bytes: Uint8Array) => number | void): void {
  p.files.thaw(f.files, sink);
  p.mm.restore(f.addressSpace);
  p.signals.restore(f.signals, p.threadSignals);
  p.paths.restore(f.cwd);
  restoreScalars(p, f.scalars);
  p.threads.thaw(f.threads);
  // A thawed signalfd reads the signals of the process it is thawed into.
  for (const fd of p.files.openFds()) {
    const file = p.files.get(fd);
    if (file instanceof SignalFdFile) file.bind(p);
  }
  for (const [index, fn] of f.api.handlers) p.api.handlers.set(index, fn);
  p.api.ephemeral = f.api.ephemeral;
  for (const fn of f.api.storageAllowed) p.api.storageAllowed.add(fn);
  p.api.phase = 'request';
  p.regexes.thaw(f.regexes);
}

export function saveProcess(p: Process): SavedProcess {
  return {
    files: p.files.snapshot(),
    addressSpace: p.mm.snapshot(),
    signals: p.signals.snapshot(p.threadSignals),
    cwd: p.paths.snapshot(),
    scalars: saveScalars(p),
    threads: p.threads.freeze(),
    api: null,
    regexes: p.regexes.snapshot(),
  };
}

export function restoreProcess(p: Process, s: SavedProcess): void {
  p.files.restore(s.files);
  p.mm.restore(s.addressSpace);
  p.signals.restore(s.signals, p.threadSignals);
  p.paths.restore(s.cwd);
  restoreScalars(p, s.scalars);
  p.threads.thaw(s.threads);
  p.api.phase = 'request';
  p.regexes.restore(s.regexes);
}

/** Releases what a saved process holds (open files keep their host fds alive). */
export function discardSaved(p: Process, s: SavedProcess): void {
  p.files.discard(s.files);
}

function saveScalars(p: Process): ProcessScalars {
  return { umask: p.umask, fsBase: p.fsBase, gsBase: p.gsBase };
}

/** Puts the scalars back; a process being restored has neither exited nor paused. */
function restoreScalars(p: Process, s: ProcessScalars): void {
  p.umask = s.umask;
  p.fsBase = s.fsBase;
  p.gsBase = s.gsBase;
  p.exit = null;
  p.pause = null;
}
