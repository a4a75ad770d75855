/**
 * Boot and freeze: run a program's main() in the main VM until it calls
 * wait_for_requests*, then describe it as plain data (FrozenProgram) from which
 * request VMs are forked, on this thread or another.
 *
 *   Machine.run() ─► pause 'freeze' ─► Machine.freeze() ─► FrozenProgram
 *                                         │  memfds (by number: fds are process-wide)
 *                                         │  registers, sregs, TLS bases
 *                                         │  files, cwd, mappings, signals (plain data)
 *                                         ▼
 *                             RequestVm × concurrency (request-vm.ts)
 *
 * With a warm-up (warmup.ts), its requests run in the main VM between the
 * pause and the freeze, and the freeze takes the state they leave.
 *
 * A program that exits, crashes or runs past max_boot_time never freezes: it
 * fails to load with an error that carries its log; so does one whose
 * warm-up fails.
 */
import { TskvmError } from '../errors.js';
import type { ElfImage } from '../elf/parse-elf.js';
import { Machine, type MachineOptions } from '../hypervisor/machine.js';
import type { FrozenProgram } from '../hypervisor/frozen.js';
import type { ApiRole } from '../syscalls/api/guest-api.js';
import type { StorageLink } from '../syscalls/api/storage.js';
import type { Fetcher } from '../syscalls/api/fetch.js';
import type { ResolvedWarmup } from './program-options.js';
import { warmUp } from './warmup.js';

export interface BootOptions extends MachineOptions {
  /** 'storage': the program's storage VM starts (sys_is_storage() is 1, it need not register handlers). */
  role?: ApiRole;
  /** Reaches the program's storage VM, for storage tasks scheduled while it starts. */
  storage?: StorageLink | null;
  /** Makes main()'s sys_fetch requests (as for requests: fetch.ts); without it sys_fetch fails. */
  fetcher?: Fetcher | null;
  /** Limit for main() to reach wait_for_requests*, in seconds (max_boot_time). */
  maxBootTimeSec?: number;
  /** The program's last output lines (stdout, stderr, logs) for a failed start; default: its sys_log lines. */
  recentLog?: () => string[];
  /** Requests to run before the freeze (warmup.ts); a storage VM gets none. */
  warmup?: ResolvedWarmup | null;
  /** Limit of each warm-up request, in seconds (max_request_time). */
  maxRequestTimeSec?: number;
}

export interface BootedProgram {
  machine: Machine;
  frozen: FrozenProgram;
  image: ElfImage;
  bootTimeMs: number;
}

const DEFAULT_BOOT_TIME_SEC = 16;
const DEFAULT_REQUEST_TIME_SEC = 8;
/** Log lines kept to explain a failed start. */
const BOOT_LOG_LINES = 40;

/**
 * Loads the ELF and runs main() until it waits for requests. The returned
 * machine must stay open while request VMs exist: it owns the memfds.
 */
export function bootProgram(file: Uint8Array, exePath: string, options: BootOptions): BootedProgram {
  const log: string[] = [];
  const keep = (line: string): void => {
    log.push(line);
    if (log.length > BOOT_LOG_LINES) log.shift();
  };
  const userLog = options.log;
  const started = performance.now();
  const machine = new Machine(file, exePath, {
    ...options,
    timeoutSec: options.maxBootTimeSec ?? DEFAULT_BOOT_TIME_SEC,
    log: (line) => {
      keep(line);
      userLog?.(line);
    },
  });
  machine.process.api.role = options.role ?? 'request';
  machine.process.api.storage = options.storage ?? null;
  machine.process.api.fetcher = options.fetcher ?? null;
  const failed = (code: 'TSKVM_ERR_PROGRAM_BOOT_TIMEOUT' | 'TSKVM_ERR_PROGRAM_INIT', why: string, details: Record<string, unknown> = {}): TskvmError => {
    if (options.recentLog) log.splice(0, log.length, ...options.recentLog().slice(-BOOT_LOG_LINES));
    return new TskvmError(code, `${exePath}: ${why}${log.length ? `\nits last log lines:\n  ${log.join('\n  ')}` : ''}`, { log, ...details });
  };
  try {
    const result = machine.run();
    const why = (): string => {
      switch (result.outcome) {
        case 'exit': return `the program exited with status ${result.status} before calling wait_for_requests()`;
        case 'timeout': return `the program did not reach wait_for_requests() within max_boot_time (${options.maxBootTimeSec ?? DEFAULT_BOOT_TIME_SEC} s)`;
        case 'pause': return result.pause?.kind === 'failed' ? result.pause.reason : `the program made a request-only call (${result.pause?.kind}) while starting`;
        default: return `the program crashed while starting: ${result.message}`;
      }
    };
    if (result.outcome !== 'pause' || result.pause?.kind !== 'freeze') {
      throw failed(result.outcome === 'timeout' ? 'TSKVM_ERR_PROGRAM_BOOT_TIMEOUT' : 'TSKVM_ERR_PROGRAM_INIT', why(), { outcome: result.outcome, status: result.status });
    }
    let pause = result.pause;
    if (options.role !== 'storage') {
      if (!pause.paused && machine.process.api.handlers.size === 0) {
        throw failed('TSKVM_ERR_PROGRAM_INIT', 'wait_for_requests() was called with no request handler registered (register_func)');
      }
      if (options.warmup) {
        try {
          pause = warmUp(machine, pause, options.warmup, (options.maxRequestTimeSec ?? DEFAULT_REQUEST_TIME_SEC) * 1000);
        } catch (e) {
          if (e instanceof TskvmError) throw e;
          throw failed('TSKVM_ERR_PROGRAM_INIT', (e as Error).message);
        }
      }
    }
    const frozen = machine.freeze(pause);
    return { machine, frozen, image: machine.image, bootTimeMs: performance.now() - started };
  } catch (e) {
    machine.close();
    throw e;
  }
}
