/**
 * `tskvm bench`: every case of a cases file (cases.ts) through every mode, one after the other in one
 * run, so that the ratios compare like with like on a machine whose speed drifts:
 *
 *   1. native-loop       the handler called N times in-process           (native.ts)
 *   2. native-spawn      a native process per request                    (native.ts)
 *      reference         another process per request, where a case names one (e.g. lua5.4)
 *   3. tskvm-ephemeral   Program.request, reset after each request       (tskvm-modes.ts)
 *      tskvm-persistent  Program.request, ephemeral: false
 *   4. tskvm-http        a `tskvm serve` child process over keep-alive HTTP
 *
 * The native loop's last response is the expected answer: every other mode's must equal it (body and
 * status, or only the status where the case says so). A mode that fails or answers differently is
 * reported as such, with no times, and makes the run fail.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { TskvmError } from '../errors.js';
import { platform } from '../hypervisor/platform.js';
import { checkFor, loadSuite, MODES, withOrigin, type BenchCase, type Mode, type SuiteOverrides } from './cases.js';
import { startOrigin } from './origin.js';
import { nativeCommand, referenceCommand, runNativeLoop, runSpawnLoop } from './native.js';
import { runProgram, ServeProcess } from './tskvm-modes.js';

export interface ModeResult {
  mode: Mode;
  /** The reference process's name, for mode "reference". */
  label?: string;
  requests: number;
  p50_us: number;
  p99_us: number;
  mean_us: number;
  /** Requests per second, one at a time: 1 / mean. */
  rps: number;
  /** p50 over the native loop's p50. */
  ratio: number | null;
  /** Time inside the VM, p50 (the API modes). */
  vm_p50_us?: number;
  /** What was compared with the native loop's answer. */
  check: 'body' | 'status';
  error?: string;
}

export interface CaseResult {
  name: string;
  program: string;
  request: { method: string; url: string; arg: string; body_file: string | null; body_bytes: number };
  response: { status: number; bytes: number };
  /** The native loop's heap, bytes: in use after the warm-up, and after the last request. */
  native_heap?: { before: number; after: number };
  modes: ModeResult[];
}

export interface BenchResult {
  date: string;
  machine: { cpu: string; cores: number; memory_gib: number; kernel: string; node: string; kvm: string };
  cases_file: string;
  cases: CaseResult[];
}

export interface BenchOptions extends SuiteOverrides {
  cases: string;
  /** Only these modes (native-loop always runs: it is the reference answer). */
  modes?: Mode[];
  /** Progress, a line per case and mode. */
  progress?: (line: string) => void;
}

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function summarise(mode: Mode, samples: number[], check: 'body' | 'status', vmSamples?: number[]): ModeResult {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = samples.reduce((s, x) => s + x, 0) / samples.length;
  const r: ModeResult = {
    mode, requests: samples.length, p50_us: percentile(sorted, 50), p99_us: percentile(sorted, 99), mean_us: mean, rps: 1e6 / mean, ratio: null, check,
  };
  if (vmSamples?.length) r.vm_p50_us = percentile([...vmSamples].sort((a, b) => a - b), 50);
  return r;
}

function failed(mode: Mode, check: 'body' | 'status', error: string): ModeResult {
  return { mode, requests: 0, p50_us: NaN, p99_us: NaN, mean_us: NaN, rps: NaN, ratio: null, check, error };
}

interface Answer {
  status: number;
  output: Buffer;
}

/** Why `got` is not the expected answer, or null. Process modes give an exit status: 0 for a 200. */
function difference(c: BenchCase, mode: Mode, expected: Answer, got: Answer, exitStatus: boolean): string | null {
  const status = exitStatus ? (got.status === 0 ? 200 : `exit ${got.status}`) : got.status;
  if (status !== expected.status) return `status ${status}, the native loop's was ${expected.status}`;
  if (checkFor(c, mode) === 'body' && !got.output.equals(expected.output)) {
    return `the body differs from the native loop's (${got.output.length} bytes against ${expected.output.length})`;
  }
  return null;
}

export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const suite = await loadSuite(options.cases, options);
  const modes = new Set<Mode>(options.modes ?? MODES);
  const progress = options.progress ?? (() => {});
  const cpu = cpus()[0]?.model ?? 'unknown';
  const result: BenchResult = {
    date: new Date().toISOString(),
    machine: {
      cpu, cores: availableParallelism(), memory_gib: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version,
      kvm: platform().description,
    },
    cases_file: suite.file,
    cases: [],
  };
  const origin = suite.cases.some((c) => c.origin) ? await startOrigin() : null;
  const bodies = origin ? mkdtempSync(join(tmpdir(), 'tskvm-bench-')) : null;
  const configure = suite.cases.filter((c) => origin && c.origin).map((c) => withOrigin(c, origin!.url, bodies!).program)
    .map((p) => `${p.name}=${JSON.stringify({ fetch_origins: p.options.fetchOrigins })}`);
  const serve = modes.has('tskvm-http') ? await ServeProcess.start(suite.libraryFile, configure) : null;
  try {
    for (const plain of suite.cases) {
      const c = origin ? withOrigin(plain, origin.url, bodies!) : plain;
      if (c.requests < 1) throw new TskvmError('TSKVM_ERR_BENCH', `${c.name}: requests must be at least 1`);
      const loop = runNativeLoop(suite, c);
      if (loop.error) throw new TskvmError('TSKVM_ERR_BENCH', `${c.name}: the native loop failed: ${loop.error}`);
      const expected: Answer = { status: loop.status, output: loop.output };
      const base = summarise('native-loop', loop.samples, checkFor(c, 'native-loop'));
      base.ratio = 1;
      const caseResult: CaseResult = {
        name: c.name,
        program: c.program.name,
        request: { method: c.method, url: c.url, arg: c.arg, body_file: c.bodyFile, body_bytes: c.body?.length ?? 0 },
        response: { status: loop.status, bytes: loop.output.length },
        native_heap: loop.heap,
        modes: [base],
      };
      const add = (r: ModeResult): void => {
        if (!r.error) r.ratio = r.p50_us / base.p50_us;
        caseResult.modes.push(r);
        progress(`${c.name}: ${r.label ?? r.mode}: ${r.error ? `FAILED: ${r.error}` : `p50 ${(r.p50_us / 1000).toFixed(3)} ms (×${r.ratio!.toFixed(2)})`}`);
      };
      progress(`${c.name}: native-loop: p50 ${(base.p50_us / 1000).toFixed(3)} ms`);

      const processMode = (mode: Mode, command: string[], label?: string): void => {
        const run = runSpawnLoop(suite, c, mode, command);
        const why = run.error ?? difference(c, mode, expected, run, true);
        const r = why ? failed(mode, checkFor(c, mode), why) : summarise(mode, run.samples, checkFor(c, mode));
        if (label) r.label = label;
        add(r);
      };
      if (modes.has('native-spawn')) processMode('native-spawn', nativeCommand(c));
      if (modes.has('reference') && c.reference) {
        let command: string[] | null = null;
        try {
          command = referenceCommand(c.reference.command);
        } catch (e) {
          add({ ...failed('reference', checkFor(c, 'reference'), (e as Error).message), label: c.reference.label });
        }
        if (command) processMode('reference', command, c.reference.label);
      }

      for (const [mode, ephemeral] of [['tskvm-ephemeral', true], ['tskvm-persistent', false]] as const) {
        if (!modes.has(mode)) continue;
        const run = await runProgram(c, ephemeral);
        const why = run.error ?? difference(c, mode, expected, run, false);
        add(why ? failed(mode, checkFor(c, mode), why) : summarise(mode, run.samples, checkFor(c, mode), run.vmSamples));
      }
      if (serve) {
        const run = await serve.run(c);
        const why = run.error ?? difference(c, 'tskvm-http', expected, run, false);
        add(why ? failed('tskvm-http', checkFor(c, 'tskvm-http'), why) : summarise('tskvm-http', run.samples, checkFor(c, 'tskvm-http')));
      }
      result.cases.push(caseResult);
    }
  } finally {
    await serve?.stop();
    await origin?.stop();
    if (bodies) rmSync(bodies, { recursive: true, force: true });
  }
  return result;
}
