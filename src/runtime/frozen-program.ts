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
 * A program that exits, crashes or runs past max_boot_time never freezes: it
 * fails to load with an error that carries its log.
 */
import { TskvmError } from '../errors.js';
import type { ElfImage } from '../elf/parse-elf.js';
import { Machine, type MachineOptions } from '../hypervisor/machine.js';
import type { FrozenProgram } from '../hypervisor/frozen.js';
import type { ApiRole } from '../syscalls/api/guest-api.js';
import type { StorageLink } from '../syscalls/api/storage.js';
import type { Fetcher } from '../syscalls/api/fetch.js';

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
}

export interface BootedProgram {
  machine: Machine;
  frozen: FrozenProgram;
  image: ElfImage;
  bootTimeMs: number;
}

const DEFAULT_BOOT_TIME_SEC = 16;
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
    if (options.recentLog) log.splice(0, log.length, ...options.recentLog().slice(-BOOT_LOG_LINES));
    if (result.outcome !== 'pause' || result.pause?.kind !== 'freeze') {
      const code = result.outcome === 'timeout' ? 'TSKVM_ERR_PROGRAM_BOOT_TIMEOUT' : 'TSKVM_ERR_PROGRAM_INIT';
      throw new TskvmError(code, `${exePath}: ${why()}${log.length ? `\nits last log lines:\n  ${log.join('\n  ')}` : ''}`, { log, outcome: result.outcome, status: result.status });
    }
    const frozen = machine.freeze(result.pause);
    if (!frozen.paused && frozen.process.state.api.handlers.length === 0 && options.role !== 'storage') {
      throw new TskvmError('TSKVM_ERR_PROGRAM_INIT', `${exePath}: wait_for_requests() was called with no request handler registered (register_func)`, { log });
    }
    return { machine, frozen, image: machine.image, bootTimeMs: performance.now() - started };
  } catch (e) {
    machine.close();
    throw e;
  }
}
