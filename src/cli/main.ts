#!/usr/bin/env node
/**
 * The `tskvm` command.
 *
 *   tskvm run [--allow P] [--allow-write P] [--env K=V] [--max-memory MiB] [--timeout S] [--trace] ELF [ARGS…]
 *
 * `run` behaves like running the program natively: its stdin, stdout and stderr
 * are ours, and our exit status is its exit status (128+signal when it died of
 * one). tskvm's own messages start with "tskvm:" and go to stderr.
 */
import { realpathSync, writeSync } from 'node:fs';
import { TskvmError } from '../errors.js';
import { Machine } from '../hypervisor/machine.js';
import type { AllowedPath } from '../syscalls/path-policy.js';

const USAGE = `usage: tskvm run [options] ELF [ARGS...]

Runs a static x86-64 Linux program in a KVM micro-VM.

options:
  --allow PATH        let the program read PATH (a file or a directory tree)
  --allow-write PATH  let the program read and write PATH
  --env KEY=VALUE     add to the program's environment (it starts empty)
  --max-memory MIB    guest memory, address space included (default 1024)
  --timeout SECONDS   stop the program after this long (exit status 124)
  --trace             print every syscall, strace-style, to stderr
  --                  end of options
`;

/** Exit statuses for failures of tskvm itself, as env(1) and shells use them. */
const EXIT_TSKVM_ERROR = 125;
const EXIT_CANNOT_EXECUTE = 126;
const EXIT_NOT_FOUND = 127;

function say(message: string): void {
  writeSync(2, `tskvm: ${message}\n`);
}

class UsageError extends Error {}

interface RunCommand {
  elf: string;
  args: string[];
  allowed: AllowedPath[];
  env: string[];
  maxMemoryMiB?: number;
  timeoutSec?: number;
  trace: boolean;
}

function parseRun(argv: string[]): RunCommand {
  const cmd: RunCommand = { elf: '', args: [], allowed: [], env: [], trace: false };
  let i = 0;
  const value = (flag: string): string => {
    const v = argv[++i];
    if (v === undefined) throw new UsageError(`${flag} needs a value`);
    return v;
  };
  const number = (flag: string): number => {
    const v = value(flag);
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} needs a positive number, not "${v}"`);
    return n;
  };
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('--')) break;
    switch (a) {
      case '--allow': cmd.allowed.push({ real: value(a) }); break;
      case '--allow-write': cmd.allowed.push({ real: value(a), writable: true }); break;
      case '--env': {
        const kv = value(a);
        if (!kv.includes('=')) throw new UsageError(`--env needs KEY=VALUE, not "${kv}"`);
        cmd.env.push(kv);
        break;
      }
      case '--max-memory': cmd.maxMemoryMiB = number(a); break;
      case '--timeout': cmd.timeoutSec = number(a); break;
      case '--trace': cmd.trace = true; break;
      default: throw new UsageError(`unknown option ${a}`);
    }
  }
  const elf = argv[i];
  if (!elf) throw new UsageError('no program given');
  cmd.elf = elf;
  cmd.args = argv.slice(i + 1);
  return cmd;
}

/**
 * The guest starts where we are, as a native program would — when that
 * directory is visible to it at all; otherwise at /.
 */
function guestCwd(allowed: AllowedPath[]): string {
  const here = process.cwd();
  const inside = allowed.some((a) => {
    try {
      const root = realpathSync(a.real);
      return here === root || here.startsWith(root.endsWith('/') ? root : root + '/');
    } catch {
      return false;
    }
  });
  return inside ? here : '/';
}

function run(argv: string[]): number {
  const cmd = parseRun(argv);
  const trace = cmd.trace ? (line: string) => writeSync(2, line + '\n') : null;
  const machine = Machine.fromFile(cmd.elf, {
    args: cmd.args, env: cmd.env, allowed: cmd.allowed, cwd: guestCwd(cmd.allowed), maxMemoryMiB: cmd.maxMemoryMiB, timeoutSec: cmd.timeoutSec, trace,
  });
  try {
    const result = machine.run();
    if (trace) {
      writeSync(2, result.signal ? `+++ killed by signal ${result.signal} +++\n` : `+++ exited with ${result.status} +++\n`);
    }
    // A program that kills itself (abort) prints nothing natively either; faults and timeouts are ours to explain.
    if (result.message) say(result.message);
    return result.status;
  } finally {
    machine.close();
  }
}

function exitStatusFor(e: TskvmError): number {
  if (e.code === 'TSKVM_ERR_PROGRAM_NOT_FOUND') return EXIT_NOT_FOUND;
  if (e.code.startsWith('TSKVM_ERR_ELF_')) return EXIT_CANNOT_EXECUTE;
  return EXIT_TSKVM_ERROR;
}

function main(argv: string[]): number {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run': return run(rest);
      case '--help': case '-h': case 'help':
        writeSync(1, USAGE);
        return 0;
      default:
        throw new UsageError(command ? `unknown command "${command}"` : 'no command given');
    }
  } catch (e) {
    if (e instanceof UsageError) {
      say(e.message);
      writeSync(2, USAGE);
      return 2;
    }
    if (e instanceof TskvmError) {
      say(`error [${e.code}]: ${e.message}`);
      return exitStatusFor(e);
    }
    throw e;
  }
}

process.exitCode = main(process.argv.slice(2));
