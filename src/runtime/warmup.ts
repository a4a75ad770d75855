/**
 * Warm-up (the `warmup` setting, the VMOD's): requests that run in the main VM after main() reached
 * wait_for_requests* and before the freeze, so that what they leave behind — caches filled, code a
 * JIT generated, buffers allocated, files opened — is part of the frozen program every request VM
 * is forked from. The VMOD does the same, in its main VM before it makes it forkable
 * (machine_instance.cpp, MachineInstance::warmup).
 *
 * Each warm-up request is the configured one (no body, no arg), with bit 0 of info_flags set in its
 * struct kvm_request, and goes in the way any request would (dispatch.ts):
 *
 *   a handler   called on a fresh stack below main's frame; after its response the vCPU goes back
 *               to where main() waits (registers, FPU, segment state, FS and GS bases), and the
 *               memory, mappings and files keep what the handler left
 *   the paused  resumed with its struct filled; after its response it runs on (1 s at most, as in
 *   loop       the VMOD) until it waits in wait_for_requests_paused again, and is frozen there
 *
 * A warm-up request that fails (no response within max_request_time, a crash, an exit, a broken rule
 * of the guest API, a paused program that does not come back to its wait) fails the program's start;
 * on_error is not called. Its request block is unmapped afterwards, as a persistent request VM does.
 */
import type { Machine } from '../hypervisor/machine.js';
import { restoreVcpu } from '../hypervisor/vcpu-state.js';
import type { PauseState } from '../syscalls/process.js';
import { PROT_READ, PROT_WRITE } from '../syscalls/address-space.js';
import { callOnFreshStack, requestEntry } from './dispatch.js';
import type { ResolvedWarmup } from './program-options.js';
import { describeFailure } from './request-failure.js';
import { copyRequestStruct, placeRequest, requestBlockSize, type RequestInput } from './request-data.js';

type FreezePause = Extract<PauseState, { kind: 'freeze' }>;

/** Time a paused program has, after a warm-up response, to get back to wait_for_requests_paused (the VMOD's 1 s). */
export const WARMUP_RUN_ON_MS = 1000;

/**
 * Runs the warm-up in `machine`, paused at `pause` by main(); returns where it waits afterwards,
 * which is what to freeze. Throws an Error saying which request failed, and how.
 */
export function warmUp(machine: Machine, pause: FreezePause, warmup: ResolvedWarmup, maxRequestTimeMs: number): FreezePause {
  const p = machine.process;
  const vcpu = machine.vcpu;
  const input: RequestInput = { method: warmup.method, url: warmup.url, headers: warmup.headers, warmup: true };
  const size = requestBlockSize(input);
  let waiting = machine.snapshot();
  for (let i = 1; i <= warmup.requests; i++) {
    const what = `warm-up request ${i} of ${warmup.requests} (${input.method} ${input.url})`;
    const entry = requestEntry(p.api.handlers, pause.paused, false);
    if (!entry) throw new Error(`${what}: the program registered no handler for a ${input.method} request without a body`);
    const block = p.mm.map(0, size, PROT_READ | PROT_WRITE, 'any', 'request');
    if (block < 0) throw new Error(`${what}: no room in guest memory for a request of ${size} bytes`);
    const placed = placeRequest(p.mem, block, size, input);
    p.api.beginRequest(input.method, input.headers!);
    const { fsBase, gsBase } = p;
    if (entry.kind === 'call') {
      callOnFreshStack({ vcpu, process: p, base: waiting.regs, fsgsbase: machine.fsgsbase }, entry.fn, entry.args(placed));
    } else {
      copyRequestStruct(p.mem, placed, pause.requestAddress);
      vcpu.set('rax', 0);
    }
    let run = machine.runFor(maxRequestTimeMs);
    if (!(run.outcome === 'pause' && run.pause?.kind === 'response')) {
      const failure = describeFailure(run, p.mm.limitHit);
      throw new Error(`${what} failed (${failure.code}): ${failure.message}`);
    }
    if (entry.kind === 'call') {
      restoreVcpu(vcpu, waiting);
      // arch_prctl changes the process's bases and the MSRs; restoreVcpu reaches neither.
      if (p.fsBase !== fsBase) p.cpu?.setFsBase(fsBase);
      if (p.gsBase !== gsBase) p.cpu?.setGsBase(gsBase);
      p.fsBase = fsBase;
      p.gsBase = gsBase;
    } else {
      run = machine.runFor(WARMUP_RUN_ON_MS);
      if (!(run.outcome === 'pause' && run.pause?.kind === 'freeze')) {
        const why = run.outcome === 'pause' && run.pause?.kind === 'response' ? 'it answered once more instead' : describeFailure(run, p.mm.limitHit).message;
        throw new Error(`${what}: after its response the program did not get back to wait_for_requests_paused within ${WARMUP_RUN_ON_MS / 1000} s: ${why}`);
      }
      pause = run.pause;
      waiting = machine.snapshot();
    }
    p.mm.unmap(block, size);
  }
  return pause;
}
