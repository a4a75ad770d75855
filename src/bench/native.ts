/**
 * The native modes of `tskvm bench`, each timed by a small C driver so that no Node.js overhead is
 * counted against native:
 *
 *   native-loop    the program's handler linked with guest/bench/loop-host.c, called N times in one
 *                  process (the guest API answered in-process, nothing reset between requests)
 *   native-spawn   guest/bench/spawn-loop.c: posix_spawn of the native program per request, the body
 *                  as its stdin, its stdout read through a pipe, the process reaped
 *   reference      the same driver around another command (e.g. Debian's lua5.4)
 *
 * Each driver reports its per-request times in a JSON file and leaves the last response on stdout,
 * which becomes the answer every other mode is compared with.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TskvmError } from '../errors.js';
import { checkFor, type BenchCase, type BenchSuite, type Mode } from './cases.js';

export interface NativeRun {
  /** Per-request wall times, µs. */
  samples: number[];
  /** The last response's body (native-loop) or the last process's stdout. */
  output: Buffer;
  /** native-loop: the response status; the spawn modes: the exit status. */
  status: number;
  /** native-loop: heap in use after the warm-up and after the last request (bytes). */
  heap?: { before: number; after: number };
  /** Why the run is not usable (no response, or a response that differed from the first). */
  error?: string;
}

interface Report {
  ns: number[];
  status?: number;
  exit?: number;
  heap_before?: number;
  heap_after?: number;
  mismatch: number;
  error?: string;
}

function drive(command: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, what: string): { report: Report; output: Buffer } {
  const scratch = mkdtempSync(join(tmpdir(), 'tskvm-bench-'));
  const reportFile = join(scratch, 'report.json');
  try {
    const r = spawnSync(command, args.map((a) => (a === '{report}' ? reportFile : a)), {
      cwd, env: { ...env, TSKVM_LOOP_REPORT: reportFile }, maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (r.error) throw new TskvmError('TSKVM_ERR_BENCH', `${what}: cannot run ${command}: ${r.error.message}`);
    let report: Report;
    try {
      report = JSON.parse(readFileSync(reportFile, 'utf8')) as Report;
    } catch {
      const stderr = r.stderr.toString('utf8').trim().split('\n').slice(-5).join('\n');
      throw new TskvmError('TSKVM_ERR_BENCH', `${what}: ${command} exited with ${r.status ?? r.signal} and no report${stderr ? `:\n${stderr}` : ''}`);
    }
    return { report, output: r.stdout };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function result(report: Report, output: Buffer, status: number, sameWhat: string): NativeRun {
  const run: NativeRun = { samples: report.ns.map((ns) => ns / 1000), output, status };
  if (report.error) run.error = report.error;
  else if (report.mismatch) run.error = `request ${report.mismatch} ${sameWhat} differed from the first one`;
  return run;
}

/** The handler called N times in one process (after the warm-up). */
export function runNativeLoop(suite: BenchSuite, c: BenchCase): NativeRun {
  const o = c.program.options;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    TSKVM_LOOP_REQUESTS: String(c.requests),
    TSKVM_LOOP_WARMUP: String(c.warmup),
    TSKVM_LOOP_METHOD: c.method,
    TSKVM_LOOP_URL: c.url,
    TSKVM_LOOP_ARG: c.arg,
    TSKVM_LOOP_CONTENT_TYPE: c.contentType,
    TSKVM_LOOP_HEADERS: c.headers.join('\n'),
    TSKVM_LOOP_MAX_MEMORY: String(o.maxMemory ?? 256),
    TSKVM_LOOP_MAX_REQUEST_MEMORY: String(o.maxRequestMemory ?? 64),
    TSKVM_LOOP_SHARED_MEMORY: String(o.sharedMemory ?? 0),
    TSKVM_LOOP_CHECK: checkFor(c, 'native-loop'),
  };
  if (c.bodyFile) env.TSKVM_LOOP_BODY = c.bodyFile;
  const { report, output } = drive(c.loopBinary, c.nativeArgs, env, suite.dir, `${c.name}: native loop`);
  const run = result(report, output, report.status ?? 0, 'response');
  run.heap = { before: report.heap_before ?? 0, after: report.heap_after ?? 0 };
  return run;
}

/** A process per request: `command` spawned N times (after the warm-up) with the body as stdin. */
export function runSpawnLoop(suite: BenchSuite, c: BenchCase, mode: Mode, command: string[]): NativeRun {
  const args = [String(c.requests), String(c.warmup), c.bodyFile ?? '/dev/null', '{report}', ...command];
  const env = { PATH: process.env.PATH, TSKVM_LOOP_CHECK: checkFor(c, mode) };
  const { report, output } = drive(suite.spawnLoop, args, env, suite.dir, `${c.name}: ${command[0]} per request`);
  return result(report, output, report.exit ?? 0, 'output');
}

/** The native program itself, as spawn-loop needs it: an absolute path and the case's arguments. */
export function nativeCommand(c: BenchCase): string[] {
  return [c.program.path, ...c.nativeArgs];
}

/** A reference command as given (found on PATH when it has no '/'). */
export function referenceCommand(command: string[]): string[] {
  const [file, ...rest] = command;
  if (file!.includes('/')) return command;
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const candidate = join(dir, file!);
    try {
      accessSync(candidate, constants.X_OK);
      return [candidate, ...rest];
    } catch {
      // not here
    }
  }
  throw new TskvmError('TSKVM_ERR_BENCH', `reference command ${file} is not installed (not on PATH)`);
}
