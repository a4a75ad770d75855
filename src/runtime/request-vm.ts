/**
 * A request VM ("fork"): its own KVM VM and vCPU over a copy-on-write view of a
 * frozen program's memory, serving one request at a time and reset after each.
 *
 *   request(input)
 *     place the request in fork memory (host writes, recorded)
 *     registers: the frozen ones; then either call the handler on a fresh stack
 *       (rip = handler, rsp below main's red zone, return address = HANDLER_RETURN)
 *       or, for wait_for_requests_paused, fill its struct and resume after the call
 *     KVM_RUN … until sys_backend_response (or a fault, a timeout, a broken rule)
 *     on failure: on_error, if registered, with a 1 s budget
 *   settle()  (after the response has been handed on)
 *     ephemeral, or after any failure: reset
 *       memory  KVM_GET_DIRTY_LOG (manual-protect: cumulative, pages stay writable)
 *               + pages the host wrote → copy the frozen bytes back over each
 *       state   registers, FPU/SSE/AVX state, segment and control state, MSRs, file table,
 *               cwd, mappings and brk, signal dispositions
 *     a fork whose written set passed req_mem_limit_after_reset: full reset
 *       (drop its private pages, clear and re-arm the dirty log)
 *
 * Pages stay private and writable across requests, so the steady state has no
 * page faults and a reset costs ~0.15 µs per page the fork has ever written
 * (docs/ARCHITECTURE.md, "Reset"; docs/PLATFORMS.md, "What things cost").
 */
import { TskvmError } from '../errors.js';
import { GuestRam } from '../paging/guest-ram.js';
import { PAGE_SIZE } from '../paging/guest-memory.js';
import { EXCEPTION_STACK_SIZE, EXCEPTION_STACK_TOP, MEMORY_SLOT_SIZE, USER_START, VVAR_ADDR } from '../paging/layout.js';
import { onlyExecutableEdits, pageTableRanges } from '../paging/page-tables.js';
import { VVAR } from '../paging/vdso.js';
import { AddressSpace, PROT_READ, PROT_WRITE } from '../syscalls/address-space.js';
import type { Fetcher } from '../syscalls/api/fetch.js';
import { GuestApi, HANDLER, type ApiRole, type GuestResponse } from '../syscalls/api/guest-api.js';
import { VIRTBUFFER_SIZE, type StorageCall, type StorageCallResult, type StorageLink } from '../syscalls/api/storage.js';
import { FileTable } from '../syscalls/fd-table.js';
import { PathPolicy } from '../syscalls/path-policy.js';
import { Process } from '../syscalls/process.js';
import { discardSaved, restoreProcess, saveProcess, thawProcess, type ProcessScalars, type SavedProcess } from '../syscalls/process-state.js';
import { SignalState } from '../syscalls/signal-state.js';
import { describeFailure, type RequestFailure } from './request-failure.js';
import { cpuControl, guestMsrs } from '../hypervisor/cpu-setup.js';
import type { FrozenProgram } from '../hypervisor/frozen.js';
import { GuestClock } from '../hypervisor/guest-clock.js';
import { MSR } from '../hypervisor/kvm/abi.js';
import { createGuestVm, type GuestVm } from '../hypervisor/guest-vm.js';
import { DirtyPages } from './dirty-pages.js';
import { registerOf, restoreVcpu } from '../hypervisor/vcpu-state.js';
import { copyRequestStruct, placeExceptionText, placeRequest, requestBlockSize, type PlacedRequest, type RequestInput } from './request-data.js';
import { callOnFreshStack, enterAt, requestEntry, type GuestEntry } from './dispatch.js';
import { GuestRunner, type RunResult } from '../hypervisor/run-loop.js';
import { endWriteQuota, startWriteQuota } from '../syscalls/write-quota.js';

export type { RequestInput };

export interface RequestVmOptions {
  /** max_request_time, in ms (0: none). */
  maxRequestTimeMs: number;
  /** Reset after every request (the program's sys_make_ephemeral choice wins when control_ephemeral allows it). */
  ephemeral: boolean;
  /** Writer for the program's stdout/stderr ('stdout', 'stderr'). */
  output: (name: string) => (bytes: Uint8Array) => number | void;
  log: (line: string) => void;
  warn: (message: string) => void;
  trace?: ((line: string) => void) | null;
  /** Budget of on_error after a failure, in ms. */
  onErrorTimeMs?: number;
  /** Bytes a request may write into writable roots (write-quota.ts); default: no quota. */
  maxWriteBytes?: number;
  /** This fork's number among its program's, 0 to concurrency − 1: what vcpureqid() tells the guest. */
  index?: number;
  /** Makes the guest's sys_fetch requests; without it sys_fetch fails (fetch.ts). */
  fetcher?: Fetcher;
  /** Reaches the program's storage VM (storage.ts); without it the storage calls fail. */
  storage?: StorageLink;
  /**
   * 'storage': this is the program's storage VM, forked from its own frozen boot and never reset:
   * it serves storageCall() and storageTask(), not request().
   */
  role?: ApiRole;
}

export interface RequestResult {
  response: GuestResponse;
  /** Set when the guest failed; `response` is then on_error's, or a 500/504 carrying the message. */
  failure: RequestFailure | null;
  /** Wall time in the guest, ms (on_error included). */
  runMs: number;
  /** Exits the request's run took (syscalls, hypercalls, the fault that ended it), on_error's not counted. */
  exits?: number;
}

export interface ForkStats {
  invocations: number;
  resets: number;
  resets_full: number;
  exceptions: number;
  timeouts: number;
  exception_mem: number;
  request_cpu_time: number;
  exception_cpu_time: number;
  reset_time: number;
  input_bytes: number;
  output_bytes: number;
  status_2xx: number;
  status_3xx: number;
  status_4xx: number;
  status_5xx: number;
  /** Pages the fork has written since its last full reset (what a reset copies back). */
  dirty_pages: number;
  /** The same in bytes: the memory the fork holds of its own (the VMOD's name). */
  vm_bank_current: number;
  /** The guest's address space and the program's memory in it (max_memory), bytes. */
  vm_address_space: number;
  vm_main_memory: number;
  /** What one request may map beyond the frozen program (max_request_memory; 0: no limit), bytes. */
  vm_bank_capacity: number;
  /** The most any request of this VM mapped beyond the frozen program, bytes. */
  vm_bank_highest: number;
  /** Requests whose stdout/stderr/log went past the per-request limit and were cut (the worker counts them). */
  output_cut: number;
}

/** Fields that are sizes, not counts: summing them over VMs means nothing, so totals take the largest. */
const LARGEST_OF: ReadonlySet<string> = new Set(['vm_address_space', 'vm_main_memory', 'vm_bank_capacity', 'vm_bank_highest']);

/** Adds `from` into `into`, field by field (sizes: the larger). */
export function addForkStats(into: ForkStats, from: ForkStats): void {
  for (const [k, v] of Object.entries(from) as Array<[keyof ForkStats, number]>) into[k] = LARGEST_OF.has(k) ? Math.max(into[k], v) : into[k] + v;
}

export function emptyForkStats(): ForkStats {
  return {
    invocations: 0, resets: 0, resets_full: 0, exceptions: 0, timeouts: 0, exception_mem: 0, request_cpu_time: 0,
    exception_cpu_time: 0, reset_time: 0, input_bytes: 0, output_bytes: 0, status_2xx: 0, status_3xx: 0, status_4xx: 0,
    status_5xx: 0, dirty_pages: 0, output_cut: 0, vm_bank_current: 0, vm_address_space: 0, vm_main_memory: 0, vm_bank_capacity: 0,
    vm_bank_highest: 0,
  };
}

const SEEK_CUR = 1;
export const DEFAULT_ON_ERROR_MS = 1000;
/** Time a streamed response's callback has for each piece (the VMOD gives 2 s too). */
export const STREAM_CHUNK_MS = 2000;
/** Bytes of the body a streaming POST handler gets per call: what a piece of an HTTP body often is. */
export const STREAM_POST_PIECE = 64 << 10;
/** Time a storage function has after storage_return to run to its end (the VMOD's 1 s). */
export const STORAGE_CLEANUP_MS = 1000;

export class RequestVm {
  readonly frozen: FrozenProgram;
  readonly stats = emptyForkStats();
  readonly ephemeral: boolean;
  private readonly options: RequestVmOptions;
  private readonly ram: GuestRam;
  private readonly guest: GuestVm;
  private readonly process: Process;
  private readonly runner: GuestRunner;
  /** How requests, on_error, storage calls and stream callbacks enter the guest (dispatch.ts). */
  private readonly entry: GuestEntry;
  /** The process's state as the fork started (process-state.ts): what every reset puts back. */
  private readonly saved: SavedProcess;
  /** The FS and GS bases the fork started with (the frozen program's). */
  private readonly bases: Pick<ProcessScalars, 'fsBase' | 'gsBase'>;
  /** Bytes the frozen program had mapped: the base of the request memory budget. */
  private readonly baseCommitted: number;
  private readonly maxRequestMemory: number;
  /** Which pages differ from the frozen program (KVM's dirty log and the host's writes). */
  private readonly dirtyPages: DirtyPages;
  /** The pieces of a sparse address space the frozen program had memory in (memory-slots.ts). */
  private readonly frozenPieces: ReadonlySet<number>;
  /** The state to settle once the current request's response has been handed on. */
  private pending: { failed: boolean; placed: PlacedRequest | null } | null = null;
  /** The vCPU stands right after sys_backend_response of a non-ephemeral paused program. */
  private resumeToPause = false;
  /** A streamed response in progress (begin_streaming_response): where its callbacks' stack starts, what came so far. */
  private streaming: { rsp: number; delivered: number } | null = null;
  private closed = false;

  constructor(frozen: FrozenProgram, options: RequestVmOptions) {
    this.frozen = frozen;
    this.options = options;
    const chosen = frozen.process.state.api.ephemeral;
    this.ephemeral = options.role === 'storage' ? false : frozen.limits.controlEphemeral && chosen !== null ? chosen : options.ephemeral;
    const { fsBase, gsBase } = frozen.process.state.scalars;
    this.bases = { fsBase, gsBase };
    this.ram = GuestRam.fork(frozen.ram);
    this.frozenPieces = new Set(frozen.ram.backed ?? []);
    this.dirtyPages = new DirtyPages(frozen.ram.mainSize);
    let guest: GuestVm | undefined;
    try {
      guest = createGuestVm(this.ram, { rip: 0, rsp: 0 }, { taskRegister: frozen.taskRegister, syscallEntry: frozen.entryKind, dirtyLog: true });
      restoreVcpu(guest.vcpu, frozen);
      // The vvar page is this VM's own and no reset copies it back (dirty-pages.ts), so this stays.
      const vvar = this.ram.memory.span(VVAR_ADDR, PAGE_SIZE);
      new DataView(vvar.buffer, vvar.byteOffset).setUint32(VVAR.requestVmId, options.index ?? 0, true);
      guest.vcpu.setMsrs(guestMsrs(frozen.entryKind, fsBase, gsBase));
      this.guest = guest;
      this.process = this.newProcess();
    } catch (e) {
      guest?.close();
      this.ram.close();
      this.dirtyPages.close();
      throw e;
    }
    const p = this.process;
    p.cpu = cpuControl(guest.vcpu, { syscallEntry: frozen.entryKind, taskRegister: frozen.taskRegister });
    this.saved = saveProcess(p);
    this.baseCommitted = p.mm.committed;
    this.maxRequestMemory = frozen.limits.maxRequestMemory || Infinity;
    Object.assign(this.stats, { vm_address_space: this.ram.size, vm_main_memory: frozen.limits.maxMemory, vm_bank_capacity: frozen.limits.maxRequestMemory });
    p.api.requestMemoryInUse = () => Math.max(0, p.mm.committed - this.baseCommitted);
    this.ram.memory.onHostWrite = (first, count) => this.dirtyPages.recordHostWrite(first, count);
    this.runner = new GuestRunner(guest.vcpu, p, true, guest.clock);
    this.entry = { vcpu: guest.vcpu, process: p, base: frozen.regs, fsgsbase: frozen.fsgsbase };
  }

  /** Runs one request to its response (or failure). Blocks the calling thread; call settle() after. */
  request(input: RequestInput): RequestResult {
    if (this.closed) throw new TskvmError('TSKVM_ERR_CLOSED', 'this request VM is closed');
    this.settle();
    const started = performance.now();
    this.stats.invocations++;
    this.stats.input_bytes += input.body?.length ?? 0;
    // Until the request ends in a way finish() understands, the fork owes a full reset: an exception
    // thrown on the way must never hand the next request this one's memory, files or registers.
    this.pending = { failed: true, placed: null };
    startWriteQuota(this.options.maxWriteBytes ?? Infinity);
    try {
      return this.serve(input, started);
    } catch (e) {
      return this.hostFailure(e, started);
    } finally {
      endWriteQuota();
    }
  }

  private serve(input: RequestInput, started: number): RequestResult {
    const p = this.process;
    let placed: PlacedRequest | null = null;
    let result: RequestResult;
    const blockSize = requestBlockSize(input);
    if ((input.body?.length ?? 0) > this.maxRequestMemory) {
      result = this.failed({ code: 'TSKVM_ERR_REQUEST_TOO_LARGE', status: 413, message: `request body of ${input.body!.length} bytes exceeds max_request_memory (${this.maxRequestMemory} bytes)` }, started);
      this.pending = { failed: false, placed: null };
      return this.count(result);
    }
    p.mm.limit = this.baseCommitted + this.maxRequestMemory + blockSize;
    p.api.beginRequest(input.method, input.headers ?? []);
    p.api.selfDepth = input.selfDepth ?? 0;

    let run: RunResult | null = null;
    if (this.resumeToPause) {
      // Non-ephemeral paused program: let it loop back into wait_for_requests_paused first.
      this.resumeToPause = false;
      run = this.runner.run(this.options.maxRequestTimeMs);
      if (!(run.outcome === 'pause' && run.pause?.kind === 'freeze')) {
        return this.finish(run, null, started);
      }
    }
    const at = p.mm.map(0, blockSize, PROT_READ | PROT_WRITE, 'any', 'request');
    if (at < 0) {
      result = this.failed({ code: 'TSKVM_ERR_REQUEST_MEMORY', status: 500, message: `no room in guest memory for a request of ${blockSize} bytes` }, started);
      this.pending = { failed: true, placed: null };
      return this.count(result);
    }
    placed = placeRequest(p.mem, at, blockSize, input);

    const entry = requestEntry(p.api.handlers, this.frozen.paused, (input.body?.length ?? 0) > 0);
    if (!entry) {
      result = this.failed({ code: 'TSKVM_ERR_NO_HANDLER', status: 500, message: `the program registered no handler for a ${input.method} request${input.body?.length ? ' with a body' : ' without a body'}` }, started);
      this.pending = { failed: false, placed };
      return this.count(result);
    }
    if (entry.kind === 'resume') {
      const vcpu = this.guest.vcpu;
      if (!run) {
        vcpu.regs.set(this.frozen.regs);
        enterAt(this.entry, registerOf(this.frozen.regs, 'rip'));
      }
      copyRequestStruct(p.mem, placed, run?.pause?.kind === 'freeze' ? run.pause.requestAddress : this.frozen.requestAddress);
      vcpu.set('rax', 0);
    } else if (entry.streamPost !== undefined) {
      const failed = this.streamBody(entry.streamPost, placed, started);
      if (failed) return this.finish(failed, placed, started);
      this.callHandler(entry.fn, entry.args(placed));
      // The pieces took part of the request's time; the POST handler has what is left.
      run = this.runner.run(this.timeLeft(started));
      return this.finish(run, placed, started);
    } else {
      this.callHandler(entry.fn, entry.args(placed));
    }
    run = this.runner.run(this.options.maxRequestTimeMs);
    return this.finish(run, placed, started, entry.kind === 'resume');
  }

  /**
   * The streaming POST handler (register_func 4): `fn(url, arg, content type, data, len, offset)` for
   * each piece of the body in order, STREAM_POST_PIECE bytes at most, each of which it must take whole
   * (return len). The run that ended it, when one did not return so; else null.
   */
  private streamBody(fn: number, placed: PlacedRequest, started: number): RunResult | null {
    for (let offset = 0; offset < placed.bodyLength; offset += STREAM_POST_PIECE) {
      const len = Math.min(STREAM_POST_PIECE, placed.bodyLength - offset);
      this.callHandler(fn, [placed.url, placed.arg, placed.contentType, placed.body + offset, len, offset]);
      const run = this.runner.run(this.timeLeft(started));
      if (!(run.outcome === 'pause' && run.pause?.kind === 'returned')) return run;
      // The handler-return stub keeps rax in rdi (stubs.ts).
      const took = this.guest.vcpu.get('rdi');
      if (took !== len) {
        return { ...run, pause: { kind: 'failed', reason: `the streaming POST handler took ${took} of the ${len} bytes at offset ${offset} (it must take each piece whole)` } };
      }
    }
    return null;
  }

  /** What is left of max_request_time for a request that started at `started` (0: no limit). */
  private timeLeft(started: number): number {
    const limit = this.options.maxRequestTimeMs;
    return limit > 0 ? Math.max(1, limit - (performance.now() - started)) : 0;
  }

  /**
   * The next piece of a streamed response: `callback(arg, max, written, length)` runs in this VM, on
   * the request's memory, within STREAM_CHUNK_MS, and returns struct streaming_content {data, len} in
   * rax:rdx (the handler-return stub keeps rax in rdi: stubs.ts); 1 to `max` bytes of it are copied out. A callback that gives nothing (stalled), faults or
   * runs out of time fails the stream: TSKVM_ERR_STREAM, and the fork is reset at settle().
   */
  streamChunk(max: number): Uint8Array {
    const response = this.process.api.response;
    const streaming = this.streaming;
    if (!streaming || !response?.stream || !this.pending) throw new TskvmError('TSKVM_ERR_STREAM', 'this request VM has no streamed response in progress');
    const { callback, arg, length } = response.stream;
    const fail = (why: string): never => {
      this.streaming = null;
      this.pending = { failed: true, placed: this.pending?.placed ?? null };
      this.stats.exceptions++;
      throw new TskvmError('TSKVM_ERR_STREAM', `the streamed response failed after ${streaming.delivered} of ${length} bytes: ${why}`);
    };
    const want = Math.min(max, length - streaming.delivered);
    if (want <= 0) return new Uint8Array(0);
    const p = this.process;
    const started = performance.now();
    p.exit = null;
    p.pause = null;
    this.callHandler(callback, [arg, want, streaming.delivered, length], streaming.rsp);
    const run = this.runner.run(STREAM_CHUNK_MS);
    this.stats.request_cpu_time += (performance.now() - started) / 1000;
    if (!(run.outcome === 'pause' && run.pause?.kind === 'returned')) return fail(describeFailure(run, p.mm.limitHit).message.split('\n')[0]!);
    const vcpu = this.guest.vcpu;
    const at = vcpu.get('rdi');
    const len = Math.min(vcpu.get('rdx'), want);
    if (len <= 0) return fail('the callback gave no bytes (stalled)');
    let chunk: Uint8Array;
    try {
      chunk = Uint8Array.from(p.mem.read(at, len));
    } catch {
      return fail(`the callback's data at 0x${at.toString(16)} (${len} bytes) is not in guest memory`);
    }
    streaming.delivered += len;
    this.stats.output_bytes += len;
    return chunk;
  }

  /**
   * Storage VM: `fn(n, bufs, resultMax)` with the caller's buffers copied in, until it gives its result
   * with storage_return (then it runs on to its end, STORAGE_CLEANUP_MS at most) or storage_noreturn.
   * The VM keeps whatever the function wrote; a call that fails (faults, runs past `timeMs`, returns
   * without a result) gets its registers, FPU and segment state put back, so the next call starts
   * clean, and its caller gets −1.
   */
  storageCall(call: StorageCall, timeMs: number): StorageCallResult {
    return this.inStorage(call.func, call.inputs, call.resultMax, timeMs, { args: (array) => [call.inputs.length, array, call.resultMax] });
  }

  /** Storage VM: a task, `fn(data, len)`, run to its end (storage_return ends it too). */
  storageTask(func: number, data: Uint8Array, timeMs: number): StorageCallResult {
    return this.inStorage(func, [data], 0, timeMs, { args: (_, [at]) => [at!, data.length], task: true });
  }

  /**
   * Storage VM, live update, old side: on_live_update() (register_func 6) gives the state to hand
   * over with storage_return(data, len), up to `max` bytes. Null when the program registered none.
   */
  liveSave(max: number, timeMs: number): StorageCallResult | null {
    const fn = this.process.api.handlers.get(HANDLER.LIVE_SAVE);
    return fn === undefined ? null : this.inStorage(fn, [], max, timeMs, { args: () => [] });
  }

  /**
   * Storage VM, live update, new side: on_live_restore(len) (register_func 7) names where the state
   * goes with storage_return(dst, len); `data` is copied there (at most len bytes), and the function
   * runs on to its end, within `timeMs`, to take it in. Null when the program registered none.
   */
  liveRestore(data: Uint8Array, timeMs: number): StorageCallResult | null {
    const fn = this.process.api.handlers.get(HANDLER.LIVE_RESTORE);
    return fn === undefined ? null : this.inStorage(fn, [], 0, timeMs, { args: () => [data.length], restore: data });
  }

  /**
   * A call into the storage VM: `inputs` copied into a mapping of their own with their struct
   * virtbuffer array after them, `how.args(array, addresses)` the function's arguments.
   */
  private inStorage(func: number, inputs: Uint8Array[], resultMax: number, timeMs: number,
    how: { args: (array: number, addresses: number[]) => number[]; task?: boolean; restore?: Uint8Array }): StorageCallResult {
    if (this.closed || this.options.role !== 'storage') throw new TskvmError('TSKVM_ERR_CLOSED', 'this VM is not a storage VM');
    const p = this.process;
    const started = performance.now();
    this.stats.invocations++;
    // The inputs and their struct virtbuffer array in a mapping of their own, given back after the call.
    const sizes = inputs.map((b) => Math.ceil(b.length / 8) * 8);
    const blockSize = Math.max(1, sizes.reduce((a, b) => a + b, 0) + inputs.length * VIRTBUFFER_SIZE);
    const block = p.mm.map(0, blockSize, PROT_READ | PROT_WRITE, 'any', 'storage call');
    if (block < 0) return this.storageFailed(`no room in the storage VM for ${blockSize} bytes of input`, started);
    // What one call may write to the state file (or any writable path) is bounded like a request's.
    startWriteQuota(this.options.maxWriteBytes ?? Infinity);
    try {
      const array = block + sizes.reduce((a, b) => a + b, 0);
      const addresses: number[] = [];
      let at = block;
      inputs.forEach((bytes, i) => {
        p.mem.put(at, bytes);
        p.mem.setU64(array + i * VIRTBUFFER_SIZE, at);
        p.mem.setU64(array + i * VIRTBUFFER_SIZE + 8, bytes.length);
        addresses.push(at);
        at += sizes[i]!;
        this.stats.input_bytes += bytes.length;
      });
      p.exit = null;
      p.pause = null;
      p.api.phase = 'request';
      p.api.storageCall = { resultMax, result: null, restore: how.restore };
      this.callHandler(func, how.args(array, addresses));
      let run = this.runner.run(timeMs);
      const result = p.api.storageCall.result;
      if (run.outcome === 'pause' && run.pause?.kind === 'storageReturn' && !run.pause.noreturn) run = this.runner.run(how.restore ? timeMs : STORAGE_CLEANUP_MS);
      const ended = run.outcome === 'pause' && (run.pause?.kind === 'returned' || (run.pause?.kind === 'storageReturn' && (run.pause.noreturn || !result)));
      if (!ended) return this.storageFailed(describeFailure(run, p.mm.limitHit).message.split('\n')[0]!, started, run.outcome === 'timeout');
      if (!how.task && !result) return this.storageFailed('the storage function returned without storage_return()', started);
      this.stats.output_bytes += result?.data.length ?? 0;
      this.stats.request_cpu_time += (performance.now() - started) / 1000;
      return { ok: true, data: result?.data ?? new Uint8Array(0), length: result?.length ?? 0 };
    } catch (e) {
      return this.storageFailed(`the host failed: ${(e as Error)?.message ?? e}`, started);
    } finally {
      endWriteQuota();
      p.api.storageCall = null;
      p.mm.unmap(block, blockSize);
      this.dirtyPages.forgetHostWrites();
    }
  }

  private storageFailed(reason: string, started: number, timedOut = false): StorageCallResult {
    if (timedOut) this.stats.timeouts++;
    else this.stats.exceptions++;
    // The memory stays as the function left it (as in the VMOD); the CPU goes back to the frozen state.
    restoreVcpu(this.guest.vcpu, this.frozen);
    this.restoreMsrs(true);
    this.process.fsBase = this.bases.fsBase;
    this.process.gsBase = this.bases.gsBase;
    this.stats.exception_cpu_time += (performance.now() - started) / 1000;
    return { ok: false, reason };
  }

  /**
   * Puts the fork back in the state the next request needs: a reset when the
   * fork is ephemeral or the request failed, else just its request block given
   * back. Called by request() when the caller did not.
   */
  settle(): void {
    const pending = this.pending;
    if (!pending) return;
    this.pending = null;
    // A stream left unfinished (its client went away) leaves the program mid-response: a full reset.
    if (this.streaming && this.streaming.delivered < (this.process.api.response?.stream?.length ?? 0)) pending.failed = true;
    this.streaming = null;
    if (this.ephemeral || pending.failed) {
      this.reset(pending.failed);
      return;
    }
    const p = this.process;
    if (pending.placed) p.mm.unmap(pending.placed.start, pending.placed.size);
    this.dirtyPages.forgetHostWrites();
    p.api.phase = 'request';
    p.pause = null;
    const upper = this.frozen.limits.requestMemoryUpper;
    if (upper > 0 && this.dirtyPages.count(this.guest.vm, this.guest.slots) * PAGE_SIZE > upper) this.reset(false);
  }

  /**
   * The vCPU's state as KVM holds it now, for inspection: segment and control registers, the MSRs
   * tskvm sets, and where main memory differs from the frozen program (the vvar page, this VM's own
   * clock, left out). After settle(), all of it equals a fresh fork's. `systemWrites`: pages of the
   * hypervisor's area that differ by more than what the CPU itself writes there while the guest runs
   * (the frame of an exception on the exception stack; accessed and dirty bits in page-table entries)
   * and what a file mapped with PROT_EXEC changes in them (onlyExecutableEdits): empty at any time, or
   * something wrote the hypervisor's pages.
   */
  inspect(): { sregs: Buffer; msrs: bigint[]; differingPages: number[]; systemWrites: number[]; process: string } {
    const vcpu = this.guest.vcpu;
    const msrs = vcpu.getMsrs([...guestMsrs(this.frozen.entryKind, 0, 0), GuestClock.MSR].map(([index]) => index));
    const fork = this.ram.memory;
    const master = this.ram.master!;
    const differingPages: number[] = [];
    for (const piece of this.guest.slots.pieces()) {
      const base = piece * MEMORY_SLOT_SIZE;
      const len = Math.min(MEMORY_SLOT_SIZE, this.ram.mainSize - base);
      const ours = Buffer.from(fork.span(base, len).buffer, fork.span(base, len).byteOffset, len);
      const theirs = master.span(base, len);
      for (let at = 0; at < len; at += PAGE_SIZE) {
        if (base + at !== VVAR_ADDR && ours.compare(theirs, at, at + PAGE_SIZE, at, at + PAGE_SIZE) !== 0) differingPages.push((base + at) / PAGE_SIZE);
      }
    }
    const systemFork = fork.span(0, USER_START);
    const systemMaster = master.span(0, USER_START);
    const tables = pageTableRanges(this.ram.size);
    const systemWrites = differingPages.filter((page) => {
      const at = page * PAGE_SIZE;
      if (at >= USER_START) return false;
      if (at >= EXCEPTION_STACK_TOP - EXCEPTION_STACK_SIZE && at < EXCEPTION_STACK_TOP) return false;
      if (!tables.some(([start, end]) => at >= start && at < end)) return true;
      return !onlyExecutableEdits(systemFork, systemMaster, at, this.ram.size);
    });
    const p = this.process;
    // The emulated process as the guest could observe it: open fds (and where each stands), mappings,
    // the break, cwd, umask, the signal dispositions.
    const process = JSON.stringify({
      fds: p.files.openFds().map((fd) => [fd, p.files.isCloexec(fd), p.files.get(fd)!.seek(0, SEEK_CUR)]),
      mappings: p.mm.list().map((m) => [m.start, m.end, m.prot, m.label]),
      brk: p.mm.brk, cwd: p.paths.cwd, umask: p.umask, signals: p.signals.snapshot(p.threadSignals),
    }, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v));
    return { sregs: vcpu.getSregs(), msrs, differingPages, systemWrites, process };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.guest.close();
    discardSaved(this.process, this.saved);
    this.process.files.closeAll();
    this.process.paths.close();
    this.ram.close();
    this.dirtyPages.close();
  }

  /** The fork's own process, made as the frozen one was and given its frozen state. */
  private newProcess(): Process {
    const f = this.frozen;
    const fp = f.process;
    const paths = new PathPolicy({ allowed: fp.allowed, cwd: fp.state.cwd, exe: { hostPath: fp.exePath, guestPath: fp.exePath } });
    const mm = new AddressSpace({ ...fp.layout, release: (addr, len) => this.ram.release(addr, len), back: (start, end) => this.guest.slots.back(start, end) });
    const p = new Process({
      mem: this.ram.memory, files: new FileTable([], fp.state.files.maxFiles), paths, mm, signals: new SignalState(),
      argv: fp.argv, env: fp.env, trace: this.options.trace ?? null, warn: this.options.warn, log: this.options.log, api: new GuestApi(f.limits),
    });
    thawProcess(p, fp.state, this.options.output);
    p.api.fetcher = this.options.fetcher ?? null;
    p.api.storage = this.options.storage ?? null;
    p.api.role = this.options.role ?? 'request';
    return p;
  }

  /** A call on a fresh stack below main's frozen frame, or below `below` (dispatch.ts). */
  private callHandler(fn: number, args: number[], below?: number): void {
    callOnFreshStack(this.entry, fn, args, below);
  }

  /** `resumed`: the request resumed the paused program (not a handler call), which a persistent fork lets loop back into its wait. */
  private finish(run: RunResult, placed: PlacedRequest | null, started: number, resumed = false): RequestResult {
    const p = this.process;
    let failure: RequestFailure | null = null;
    if (run.outcome === 'pause' && run.pause?.kind === 'response' && p.api.response) {
      if (resumed && !this.ephemeral) this.resumeToPause = true;
      this.pending = { failed: false, placed };
      // The stream's callbacks run below the frame that began it, which the program's state may live in.
      if (p.api.response.stream) this.streaming = { rsp: this.guest.vcpu.get('rsp'), delivered: 0 };
      return this.count({ response: p.api.response, failure: null, runMs: performance.now() - started, exits: run.exits });
    }
    failure = describeFailure(run, p.mm.limitHit);
    if (failure.code === 'TSKVM_ERR_GUEST_TIMEOUT') this.stats.timeouts++;
    else this.stats.exceptions++;
    if (failure.code === 'TSKVM_ERR_REQUEST_MEMORY') this.stats.exception_mem++;
    this.pending = { failed: true, placed };
    const onError = p.api.handlers.get(HANDLER.ON_ERROR);
    if (onError !== undefined && placed) {
      const response = this.runOnError(onError, placed, failure);
      if (response) return this.count({ response, failure, runMs: performance.now() - started, exits: run.exits });
    }
    return this.count({ ...this.failed(failure, started), exits: run.exits });
  }

  /** on_error(url, arg, exception) with a short budget, on the failed request's memory; its response or null. */
  private runOnError(fn: number, placed: PlacedRequest, failure: RequestFailure): GuestResponse | null {
    const p = this.process;
    const errorStarted = performance.now();
    // The failed request may have left any segment state (or faulted with it): on_error starts clean.
    this.guest.vcpu.setSregs(Buffer.from(this.frozen.sregs));
    p.exit = null;
    p.pause = null;
    p.api.beginRequest(p.api.method, p.api.requestHeaders);
    const text = placeExceptionText(p.mem, placed, failure.message.split('\n')[0]!);
    this.callHandler(fn, [placed.url, placed.arg, text]);
    const run = this.runner.run(this.options.onErrorTimeMs ?? DEFAULT_ON_ERROR_MS);
    this.stats.exception_cpu_time += (performance.now() - errorStarted) / 1000;
    if (run.outcome === 'pause' && run.pause?.kind === 'response' && p.api.response) return p.api.response;
    const why = describeFailure(run, p.mm.limitHit);
    failure.message += `\non_error failed too: ${why.message.split('\n')[0]}`;
    return null;
  }

  /**
   * The host failed while serving (a bug of ours the guest found, or a KVM ioctl that failed): the
   * client gets a 500 naming the call, the log gets the stack, and the fork is reset before its next
   * request (pending is already a full reset).
   */
  private hostFailure(e: unknown, started: number): RequestResult {
    this.resumeToPause = false;
    this.stats.exceptions++;
    const error = e instanceof TskvmError ? e : new TskvmError('TSKVM_ERR_INTERNAL', `the host failed: ${(e as Error)?.message ?? e}`, { cause: (e as Error)?.stack });
    const cause = typeof error.details.cause === 'string' ? error.details.cause : error.stack;
    this.options.warn(`request failed in the host (${error.code}): ${error.message}\n${cause}`);
    return this.count(this.failed({ code: error.code, status: 500, message: error.message.split('\n')[0]! }, started));
  }

  private failed(failure: RequestFailure, started: number): RequestResult {
    return {
      response: { status: failure.status, contentType: 'text/plain', headers: [], body: Buffer.from(failure.message + '\n'), cache: null },
      failure,
      runMs: performance.now() - started,
    };
  }

  private count(result: RequestResult): RequestResult {
    const s = this.stats;
    const status = result.response.status;
    if (status < 300) s.status_2xx++;
    else if (status < 400) s.status_3xx++;
    else if (status < 500) s.status_4xx++;
    else s.status_5xx++;
    s.output_bytes += result.response.body.length;
    s.request_cpu_time += result.runMs / 1000;
    s.vm_bank_highest = Math.max(s.vm_bank_highest, this.process.api.requestMemoryInUse());
    return result;
  }

  /**
   * The MSRs back. FS's and GS's bases, where the entry stub cannot do it: without WRFSBASE in ring 3,
   * only arch_prctl (which the host sees) and selector loads (which the stub handles) change them; with
   * it, the stub sets them at every request and no ioctl is needed (on PVM one KVM_SET_MSRS costs
   * ~10 µs). The other MSRs tskvm sets (STAR, LSTAR, SFMASK, KERNEL_GS_BASE, kvmclock's) only ring 0
   * can write, and a guest has no way there: the stubs are read-only and the host refuses to write the
   * system area for it. So they are set again only after a failed request, where that costs nothing
   * anyone waits for; test/attacks.test.ts checks all of them after each attack.
   */
  private restoreMsrs(failed: boolean): void {
    if (failed) {
      this.guest.vcpu.setMsrs([...guestMsrs(this.frozen.entryKind, this.bases.fsBase, this.bases.gsBase), GuestClock.MSR]);
      return;
    }
    if (this.frozen.fsgsbase) return;
    const p = this.process;
    const { fsBase, gsBase } = this.bases;
    if (p.fsBase !== fsBase || p.gsBase !== gsBase) {
      this.guest.vcpu.setMsrs([[MSR.FS_BASE, fsBase], [MSR.GS_BASE, gsBase]]);
    }
  }

  /** Everything back to the frozen program (see the header). */
  private reset(failed: boolean): void {
    const started = performance.now();
    const ram = this.ram;
    const dirty = this.dirtyPages.restore(this.guest.vm, this.guest.slots, ram);
    // Pieces of a sparse address space a request reached lose their slots again.
    if (ram.backed !== null) this.guest.slots.trim(this.frozenPieces);
    // Page tables the request changed are the frozen ones again: KVM must forget what it built from them.
    if (this.dirtyPages.systemRestored) this.guest.vm.flushTranslations();
    this.stats.dirty_pages = dirty;
    this.stats.vm_bank_current = dirty * PAGE_SIZE;
    const upper = this.frozen.limits.requestMemoryUpper;
    if (upper > 0 && dirty * PAGE_SIZE > upper) {
      // Too much kept private: give it all back and track from scratch.
      ram.dropPrivatePages();
      this.dirtyPages.clear(this.guest.vm, this.guest.slots);
      this.guest.clock.arm();
      this.stats.resets_full++;
      this.stats.dirty_pages = 0;
      this.stats.vm_bank_current = 0;
    }

    this.restoreMsrs(failed);
    restoreVcpu(this.guest.vcpu, this.frozen);
    restoreProcess(this.process, this.saved);
    this.resumeToPause = false;
    this.stats.resets++;
    this.stats.reset_time += (performance.now() - started) / 1000;
  }
}
