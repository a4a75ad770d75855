/**
 * Differential testing: run one program natively and under `tskvm run`, then compare stdout, stderr
 * and exit status byte for byte.
 *
 *   const args = ['a', 'b'];
 *   const native = runNative(guestPath('args.glibc'), args, { env: { A: '1' } });
 *   const vm = runTskvm(guestPath('args.glibc'), args, { env: { A: '1' } });
 *   assertSameOutcome(t, vm, native);
 *
 * Both sides start from nothing: the native program gets exactly `env` (no inherited variables),
 * and the tskvm process gets a clean environment too (only TSKVM_* variables pass through, for
 * debugging), with `env` handed to the guest as `--env K=V` flags in the same order, so the guest's
 * envp equals the native one. Status follows the shell's convention: the exit code, or 128 + the
 * signal number when the process was killed by a signal.
 *
 * Both are started through `env -i NAME=VALUE... PROGRAM ARGS...`, because under `tap` every spawn
 * from a test process gets NODE_OPTIONS and _TAPJS_PROCESSINFO_* variables added to its environment
 * (@tapjs/processinfo hooks child_process), whatever `env` option is passed. env(1) execs the
 * program in its own process, so argv[0], the exit status and a killing signal are the program's.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';

/**
 * The checkout: the nearest directory above this file with package.json. Tests run from test/ (tap,
 * through its TypeScript loader) or compiled, from build/tests/test/ (the hardware-KVM lane).
 */
export const repoRoot = findRepoRoot(dirname(fileURLToPath(import.meta.url)));

function findRepoRoot(dir: string): string {
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
}
export const guestBinDir = join(repoRoot, 'test', 'guests', 'bin');
export const cliPath = join(repoRoot, 'dist', 'cli', 'main.js');

export interface RunOutcome {
  stdout: Buffer;
  stderr: Buffer;
  /** Exit code, or 128 + signal number when killed by a signal. */
  status: number;
  /** True when the harness's own timeoutMs killed the process (status is then 128 + SIGKILL). */
  timedOut: boolean;
}

export interface NativeOptions {
  env?: Record<string, string>;
  input?: Buffer | string;
  cwd?: string;
  /** Harness guard: kill the process with SIGKILL after this long. Default 60 s. */
  timeoutMs?: number;
}

export interface TskvmOptions {
  env?: Record<string, string>;
  input?: Buffer | string;
  cwd?: string;
  allow?: string[];
  allowWrite?: string[];
  maxMemoryMiB?: number;
  /** tskvm's own --timeout, in seconds. */
  timeoutSec?: number;
  trace?: boolean;
  /** More CLI flags, placed after the ones above and before the ELF path. */
  extraFlags?: string[];
  /** Harness guard: kill tskvm with SIGKILL after this long. Default 120 s, or --timeout + 60 s. */
  timeoutMs?: number;
}

/** Outputs can be large (heap and compute tests print little, but cat-style tests echo input). */
const MAX_BUFFER = 256 * 1024 * 1024;

/** env(1): /usr/bin/env on Debian (and on every merged-/usr system), /bin/env on some others. */
const ENV = existsSync('/usr/bin/env') ? '/usr/bin/env' : '/bin/env';

/** Spawns `env -i NAME=VALUE... command args...`: exactly `env` as the environment. */
export function spawnClean(command: string, args: string[], env: Record<string, string>, options: {
  input?: Buffer | string; cwd?: string; timeoutMs: number;
}): SpawnSyncReturns<Buffer> {
  const assignments = Object.entries(env).map(([key, value]) => {
    if (key === '' || key.includes('=')) throw new Error(`invalid environment variable name: ${JSON.stringify(key)}`);
    return `${key}=${value}`;
  });
  return spawnSync(ENV, ['-i', ...assignments, command, ...args], {
    input: options.input,
    cwd: options.cwd,
    timeout: options.timeoutMs,
    killSignal: 'SIGKILL',
    maxBuffer: MAX_BUFFER,
  });
}

/** Absolute path of a built guest program, `test/guests/bin/<name>` (e.g. `hello.musl`). */
export function guestPath(name: string): string {
  const path = join(guestBinDir, name);
  if (!existsSync(path)) {
    throw new Error(`guest program ${path} is missing: build the guests with \`make -C test/guests\``);
  }
  return path;
}

/** Runs `bin` directly with exactly `opts.env` as its environment. */
export function runNative(bin: string, args: string[], opts: NativeOptions = {}): RunOutcome {
  // Checked here because env(1) would turn a missing program into exit status 127.
  if (!existsSync(bin)) throw new Error(`cannot run ${bin}: no such file`);
  const result = spawnClean(bin, args, opts.env ?? {}, { ...opts, timeoutMs: opts.timeoutMs ?? 60_000 });
  return outcome(result, `${bin} ${args.join(' ')}`);
}

/** Runs `node dist/cli/main.js run [flags] bin args...`: the tskvm CLI in a fresh process. */
export function runTskvm(bin: string, args: string[], opts: TskvmOptions = {}): RunOutcome {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: build with \`npm run build\``);
  const flags: string[] = [];
  for (const path of opts.allow ?? []) flags.push('--allow', path);
  for (const path of opts.allowWrite ?? []) flags.push('--allow-write', path);
  for (const [key, value] of Object.entries(opts.env ?? {})) flags.push('--env', `${key}=${value}`);
  if (opts.maxMemoryMiB !== undefined) flags.push('--max-memory', String(opts.maxMemoryMiB));
  if (opts.timeoutSec !== undefined) flags.push('--timeout', String(opts.timeoutSec));
  if (opts.trace) flags.push('--trace');
  flags.push(...(opts.extraFlags ?? []));

  const tskvmEnv = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => key.startsWith('TSKVM_')),
  ) as Record<string, string>;
  const guard = opts.timeoutMs ?? (opts.timeoutSec !== undefined ? opts.timeoutSec * 1000 + 60_000 : 120_000);
  const result = spawnClean(process.execPath, [cliPath, 'run', ...flags, bin, ...args], tskvmEnv, {
    ...opts,
    timeoutMs: guard,
  });
  return outcome(result, `tskvm run ${[...flags, bin, ...args].join(' ')}`);
}

function outcome(result: SpawnSyncReturns<Buffer>, command: string): RunOutcome {
  const error = result.error as NodeJS.ErrnoException | undefined;
  const timedOut = error?.code === 'ETIMEDOUT';
  if (error && !timedOut) throw new Error(`cannot run ${command}: ${error.message}`);
  let status: number;
  if (result.status !== null) status = result.status;
  else if (result.signal) status = 128 + constants.signals[result.signal];
  else throw new Error(`${command}: neither an exit status nor a signal`);
  return { stdout: result.stdout, stderr: result.stderr, status, timedOut };
}

/** Asserts that two runs printed the same bytes and ended the same way; text diffs on failure. */
export function assertSameOutcome(t: Test, actual: RunOutcome, expected: RunOutcome, label = ''): void {
  const prefix = label ? `${label}: ` : '';
  t.equal(actual.stdout.toString('latin1'), expected.stdout.toString('latin1'), `${prefix}stdout`);
  t.equal(actual.stderr.toString('latin1'), expected.stderr.toString('latin1'), `${prefix}stderr`);
  t.equal(actual.status, expected.status, `${prefix}exit status`);
}

let kvmError: string | null | undefined; // undefined: not probed yet; null: usable

/**
 * True if /dev/kvm can be opened read-write. If not, the test fails with the reason — or is
 * skipped, when TSKVM_SKIP_KVM=1 says so explicitly. Call at the top of every KVM test:
 *   if (!kvmAvailable(t)) return;
 */
export function kvmAvailable(t: Test): boolean {
  if (kvmError === undefined) {
    try {
      closeSync(openSync('/dev/kvm', 'r+'));
      kvmError = null;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      kvmError = code === 'ENOENT'
        ? '/dev/kvm does not exist: KVM is not available on this machine'
        : `/dev/kvm cannot be opened read-write (${code})` +
          (code === 'EACCES' || code === 'EPERM' ? ': run as root or join the kvm group' : '');
    }
  }
  if (kvmError === null) return true;
  if (process.env.TSKVM_SKIP_KVM === '1') {
    t.skip(`${kvmError} (skipped: TSKVM_SKIP_KVM=1)`, () => {});
  } else {
    t.fail(`${kvmError}. KVM tests fail without it; set TSKVM_SKIP_KVM=1 to skip them instead`);
  }
  return false;
}
