/**
 * The state of one emulated Linux process: what a syscall handler may see.
 *
 * Handlers get this narrow view and never the vCPU or the server (docs/ARCHITECTURE.md, "Layers"):
 * guest memory through checked accessors, the file table, the path policy, the
 * address-space bookkeeping, signal dispositions, identity and limits.
 * Each piece is its own object so a request fork can save and restore it.
 */
import type { GuestMemory } from '../paging/guest-memory.js';
import { VCPU_INFO_ADDR } from '../paging/vdso.js';
import type { FileTable } from './fd-table.js';
import type { PathPolicy } from './path-policy.js';
import type { AddressSpace } from './address-space.js';
import { ThreadSignalState, type SignalState } from './signal-state.js';
import { ThreadTable, type ContextSwitch } from './thread-table.js';
import { GuestApi } from './api/guest-api.js';
import { RegexTable } from './api/regex.js';

/** Why the guest stopped running, set by exit_group, a fatal signal to itself, … */
export interface ExitState {
  status: number;
  /** The signal that "killed" the process (status is then 128+signal). */
  signal?: number;
  /** Why tskvm ended the process itself (a deadlock, …); absent for a normal exit. */
  reason?: string;
}

/**
 * What a syscall may ask of the vCPU, without seeing it: the TLS segment bases, a second result
 * register, and saving and loading threads' registers (ContextSwitch).
 */
export interface CpuControl extends ContextSwitch {
  setFsBase(value: number): void;
  setGsBase(value: number): void;
  /** rdx, for guest API calls that return a 16-byte struct in rax:rdx. */
  setRdx(value: number): void;
  /** After an edit of the guest's page tables: drop what the CPU and KVM derived from the old ones. */
  flushTranslations(): void;
  /** rsp at the call: sigaltstack asks whether the thread runs on its alternate stack. */
  stackPointer(): number;
}

/** A guest API call that hands control back to the host (the run loop returns it). */
export type PauseState =
  /** wait_for_requests (paused: false) or wait_for_requests_paused(req) (paused: true): freeze here. */
  | { kind: 'freeze'; paused: boolean; requestAddress: number }
  /** sys_backend_response: the response is in `Process.api`. */
  | { kind: 'response' }
  /** A request handler returned without responding. */
  | { kind: 'returned' }
  /** storage_return / storage_noreturn in a storage call: the result is in `Process.api.storageCall`. */
  | { kind: 'storageReturn'; noreturn: boolean }
  /** The guest broke the API's rules (bad status, oversized header…): the request fails with `reason`. */
  | { kind: 'failed'; reason: string };

export interface ProcessParts {
  mem: GuestMemory;
  files: FileTable;
  paths: PathPolicy;
  mm: AddressSpace;
  signals: SignalState;
  argv: string[];
  env: string[];
  /** One line per traced syscall, or null when tracing is off. */
  trace: ((line: string) => void) | null;
  /** Diagnostics from tskvm itself (unimplemented syscall, …): never mixed into guest stdout. */
  warn: (message: string) => void;
  /** The program's own log lines (sys_log); default: through `warn`. */
  log?: (line: string) => void;
  /** Guest API state; a program run as a plain process gets one with no limits. */
  api?: GuestApi;
}

export class Process {
  static readonly PID = 2;
  static readonly PPID = 1;

  readonly mem: GuestMemory;
  readonly files: FileTable;
  readonly paths: PathPolicy;
  readonly mm: AddressSpace;
  readonly signals: SignalState;
  /** The running thread's blocked mask, alternate stack and pending signals (thread-table.ts keeps each thread's). */
  get threadSignals(): ThreadSignalState {
    return this.threads.current.signals;
  }

  readonly argv: string[];
  readonly env: string[];
  trace: ((line: string) => void) | null;
  readonly warn: (message: string) => void;
  readonly log: (line: string) => void;
  readonly api: GuestApi;
  /** sys_regex_compile's handles. */
  readonly regexes = new RegexTable();
  umask = 0o022;
  /** The running thread's FS segment base, set by arch_prctl(ARCH_SET_FS): its TLS pointer. */
  fsBase = 0;
  /** GS segment base: the guest API's vcpuid()/vcpureqid() read %gs:0 and %gs:4 (vdso.ts), until the program sets its own. */
  gsBase = VCPU_INFO_ADDR;
  /** The process's threads; the running one's registers are in the vCPU (thread-table.ts). */
  readonly threads = new ThreadTable(Process.PID);
  exit: ExitState | null = null;
  /** Set by a guest API call that stops this run (see PauseState); the run loop clears it. */
  pause: PauseState | null = null;
  /** Set by the machine that runs this process. */
  cpu: CpuControl | null = null;

  constructor(parts: ProcessParts) {
    this.mem = parts.mem;
    this.files = parts.files;
    this.paths = parts.paths;
    this.mm = parts.mm;
    this.signals = parts.signals;
    this.argv = parts.argv;
    this.env = parts.env;
    this.trace = parts.trace;
    this.warn = rateLimited(parts.warn);
    this.log = parts.log ?? ((line) => parts.warn(`log: ${line}`));
    this.api = parts.api ?? new GuestApi({
      maxMemory: parts.mem.size, maxRequestMemory: 0, requestMemoryUpper: 0, sharedStart: 0, sharedEnd: 0, controlEphemeral: false,
    });
  }
}

/** Warnings a process may cause per WARN_WINDOW_MS; past it they are counted, and the count is said once. */
const WARN_BURST = 20;
const WARN_WINDOW_MS = 10_000;

/**
 * Warnings a guest causes (unsupported calls, invalid regexes) come as often as the
 * guest likes, from inside one syscall loop: rate-limited, they cannot flood the host's stderr (and,
 * from a worker thread, the main thread that carries it).
 */
function rateLimited(warn: (message: string) => void): (message: string) => void {
  let windowStart = -Infinity;
  let said = 0, suppressed = 0;
  return (message) => {
    const now = performance.now();
    if (now - windowStart >= WARN_WINDOW_MS) {
      if (suppressed > 0) warn(`${suppressed} warnings were not shown`);
      windowStart = now;
      said = suppressed = 0;
    }
    if (said++ < WARN_BURST) return warn(message);
    if (suppressed++ === 0) warn(`more than ${WARN_BURST} warnings: the rest of these ${WARN_WINDOW_MS / 1000} s are counted, not shown`);
  };
}
