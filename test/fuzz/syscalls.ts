/**
 * The syscall fuzzer: a guest (test/guests/requests/fuzz.c) makes seeded random syscalls and guest-API
 * calls inside requests, with boundary values and pointers into every region, and after each request
 * the host checks what a hostile guest must never achieve:
 *   - an exception reaching the host, or a failure of the host's own (TSKVM_ERR_INTERNAL, _KVM_*);
 *   - a write into the hypervisor's pages (stubs, descriptor tables, page tables, vvar) during the
 *     request, by anyone;
 *   - a fork that is not the frozen program again after its reset: memory (every page against the
 *     frozen image), segment and control state, MSRs, fds, mappings, break, cwd and signal state
 *     (against a fresh fork), and what the guest
 *     itself sees (its globals, its heap, its open fds: /check, against a fresh fork's answer).
 * Every request's calls follow from its seed, and the seeds from the run's seed: a finding names both.
 *
 *   npm run fuzz -- [--seconds N] [--seed S] [--calls C] [--replay REQUEST_SEED]
 *
 * test/syscall-fuzz.test.ts runs it within `npm test` (TSKVM_FUZZ_SECONDS, default 15).
 */
import { readFileSync } from 'node:fs';
import { bootProgram } from '../../src/runtime/frozen-program.js';
import { RequestVm } from '../../src/runtime/request-vm.js';
import { PAGE_SIZE } from '../../src/paging/guest-memory.js';
import { EmptyFile, SinkFile } from '../../src/syscalls/open-files/memory-file.js';
import { guestPath } from '../helpers/differential.js';
import { prng } from '../helpers/prng.js';

export interface FuzzOptions {
  seconds: number;
  seed: number;
  /** Calls per request (default 200). */
  calls?: number;
  /** Run only this request seed, once (to reproduce a finding). */
  replay?: number;
}

export interface Finding {
  requestSeed: number;
  what: string;
}

export interface FuzzReport {
  requests: number;
  /** Calls the guest made: the requests' guest exits, less the one that ended each. */
  calls: number;
  seconds: number;
  /** How requests ended: "ok", or the failure's code. */
  outcomes: Record<string, number>;
  findings: Finding[];
  /** Warnings the VMs printed (unsupported calls, bounded per VM). */
  warnings: number;
}

const HOST_FAILURES = new Set(['TSKVM_ERR_INTERNAL', 'TSKVM_ERR_KVM_EXIT', 'TSKVM_ERR_KVM_IOCTL']);
const MAX_FINDINGS = 20;

export function fuzzSyscalls(o: FuzzOptions): FuzzReport {
  const path = guestPath('req-fuzz');
  const sink = new SinkFile(() => {}, 'stdout');
  let warnings = 0;
  const booted = bootProgram(readFileSync(path), path, {
    env: ['KVM_NAME=fuzz'], maxMemoryMiB: 128, maxRequestMemoryMiB: 64, sharedMemoryMiB: 2,
    stdio: [new EmptyFile(), sink, sink], log: () => {}, warn: () => { warnings++; },
  });
  const fork = (): RequestVm => new RequestVm(booted.frozen, {
    maxRequestTimeMs: 2000, ephemeral: true, output: () => () => {}, log: () => {}, warn: () => { warnings++; },
  });
  const fresh = fork();
  const vm = fork();
  const findings: Finding[] = [];
  const outcomes: Record<string, number> = {};
  let requests = 0, calls = 0;
  const started = performance.now();
  try {
    const check = (f: RequestVm): string => {
      const body = f.request({ method: 'GET', url: '/check' }).response.body.toString();
      f.settle();
      return body;
    };
    const reference = check(fresh);
    const want = fresh.inspect();
    const perRequest = o.calls ?? 200;
    const seeds = prng(o.seed);
    const deadline = started + o.seconds * 1000;
    while (o.replay !== undefined ? requests < 1 : performance.now() < deadline) {
      const requestSeed = o.replay ?? seeds() * 0x10_0000 + (seeds() >>> 12); // < 2^52: exact in a double and in the URL
      requests++;
      const found = (what: string): void => {
        if (findings.length < MAX_FINDINGS) findings.push({ requestSeed, what });
      };
      try {
        const res = vm.request({ method: 'GET', url: '/run', arg: `${requestSeed},${perRequest}` });
        const outcome = res.failure?.code ?? 'ok';
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        calls += Math.max(0, (res.exits ?? 1) - 1);
        if (HOST_FAILURES.has(outcome)) found(`the host failed: ${res.failure!.message}`);
        // Before the reset: nothing, host or guest, wrote the hypervisor's pages during the request.
        const touched = vm.inspect().systemWrites;
        if (touched.length) found(`the request changed the hypervisor's pages: ${touched.map((page) => '0x' + (page * PAGE_SIZE).toString(16)).join(', ')}`);
        vm.settle();
        const seen = vm.inspect();
        if (seen.differingPages.length) found(`after the reset ${seen.differingPages.length} pages differ from the frozen program, first at 0x${(seen.differingPages[0]! * PAGE_SIZE).toString(16)}`);
        if (!seen.sregs.equals(want.sregs)) found('after the reset the segment or control state differs from a fresh fork\'s');
        if (seen.msrs.some((v, i) => v !== want.msrs[i])) found(`after the reset the MSRs differ from a fresh fork's: ${seen.msrs.map(String)} vs ${want.msrs.map(String)}`);
        if (seen.process !== want.process) found(`after the reset the process differs from a fresh fork's: ${seen.process} vs ${want.process}`);
        const after = check(vm);
        if (after !== reference) found(`the next request sees "${after}", a fresh fork "${reference}"`);
      } catch (e) {
        found(`host exception: ${(e as Error)?.stack ?? e}`);
        break;
      }
      if (findings.length >= MAX_FINDINGS) break;
    }
  } finally {
    vm.close();
    fresh.close();
    booted.machine.close();
  }
  return { requests, calls, seconds: (performance.now() - started) / 1000, outcomes, findings, warnings };
}

/** The command line (test/fuzz/cli.ts): prints the report; 1 when there were findings. */
export function main(argv: string[]): number {
  const opt = (name: string): number | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v)) throw new Error(`--${name} needs a number`);
    return v;
  };
  const seed = opt('seed') ?? Date.now() % 1_000_000;
  const report = fuzzSyscalls({ seconds: opt('seconds') ?? 60, seed, calls: opt('calls'), replay: opt('replay') });
  console.log(`syscall fuzzer: seed ${seed}, ${report.requests} requests, ${report.calls} calls, ${report.seconds.toFixed(1)} s (${(report.calls / report.seconds).toFixed(0)} calls/s, each request checked after its reset)`);
  console.log(`outcomes: ${JSON.stringify(report.outcomes)}; ${report.warnings} warnings`);
  for (const f of report.findings) console.log(`FINDING (replay: npm run fuzz -- --replay ${f.requestSeed}): ${f.what}`);
  return report.findings.length ? 1 : 0;
}
