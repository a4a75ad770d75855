/**
 * The storage VM's calls (docs/GUEST_ABI.md, "The storage VM"): a program with `storage: true` has
 * one long-lived VM besides its request VMs, never reset, which request VMs call into one caller at
 * a time.
 *
 *   request VM                          main thread                 storage VM
 *   storage_callv(fn, n, bufs, dst, len)
 *     inputs copied out ──────────────► queue (one call at a time) ─► inputs copied in below its stack
 *                                                                    fn(n, bufs, len) runs until
 *                                                                    storage_return(data, len)
 *     result copied into dst ◄──────────────────────────────────────── data copied out; fn runs on
 *                                                                    to its end (≤ 1 s)
 *
 * Nothing of one VM's memory is visible to the other: only the bytes the calls name are copied.
 * Whoever runs a VM gives it a StorageLink (a worker thread asks the main thread and waits); the
 * storage VM's side of a call (the function's result) is GuestApi.storageCall.
 */
import type { Process } from '../process.js';

/** The VMOD's limits: buffers per call, a task's data, timers per program. Input and result bytes are tskvm's. */
export const STORAGE_LIMITS = { buffers: 64, inputBytes: 16 << 20, resultBytes: 16 << 20, taskBytes: 2 << 20, timers: 15 } as const;
/** struct virtbuffer { const void *data; size_t len; } */
export const VIRTBUFFER_SIZE = 16;
/** The VMOD's failure value for every storage call. */
const FAILED = -1;

export interface StorageCall {
  func: number;
  inputs: Uint8Array[];
  /** Bytes the caller can take back (dstlen); the function sees it as its third argument. */
  resultMax: number;
}

export type StorageCallResult =
  /** `data`: what storage_return named, cut to resultMax; `length`: the length it gave. */
  | { ok: true; data: Uint8Array; length: number }
  /**
   * `refused`: the function is not on the storage VM's allow list (the calling request fails, as in
   * the VMOD); `abandoned`: still queued at the caller's deadline (the caller's run times out).
   */
  | { ok: false; reason: string; refused?: boolean; abandoned?: boolean };

export interface StorageTaskRequest {
  func: number;
  data: Uint8Array;
  /** 0 and 0: queued now; else once after startMs, then every periodMs when that is not 0. */
  startMs: number;
  periodMs: number;
}

/** How a VM reaches its program's storage VM. Calls block the calling thread until the answer comes. */
export interface StorageLink {
  call(call: StorageCall): StorageCallResult;
  /** Queues or schedules a task: 0 for one queued now, a timer id for a scheduled one, −1 when refused. */
  task(task: StorageTaskRequest): number;
  /** 1 when the timer was found and stopped, else 0 (the VMOD's TRUE/FALSE). */
  stopTask(id: number): number;
}

/** The storage VM's side of the call it is in: what storage_return gave, once it did. */
export interface StorageCallState {
  resultMax: number;
  result: { data: Uint8Array; length: number } | null;
  /** on_live_restore: the state handed over, which storage_return(dst, len) copies into dst instead. */
  restore?: Uint8Array;
}

/** storage_callv(fn, n, bufs, dst, dstlen): the bytes copied into dst, or the length storage gave when dst is NULL; −1 on failure. */
export function storageCallv(p: Process, a: Float64Array): number {
  const [func, n, bufs, dst, dstLen] = [a[0]!, a[1]!, a[2]!, a[3]!, a[4]!];
  const link = p.api.storage;
  // From the storage VM itself it would wait for its own caller: the VMOD answers -1 too.
  if (!link || p.api.role === 'storage' || n > STORAGE_LIMITS.buffers) return FAILED;
  const inputs: Uint8Array[] = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const at = p.mem.u64(bufs + i * VIRTBUFFER_SIZE);
    const len = p.mem.u64(bufs + i * VIRTBUFFER_SIZE + 8);
    total += len;
    if (total > STORAGE_LIMITS.inputBytes) return FAILED;
    inputs.push(len === 0 ? new Uint8Array(0) : Uint8Array.from(p.mem.read(at, len)));
  }
  const resultMax = dst === 0 ? 0 : Math.min(dstLen, STORAGE_LIMITS.resultBytes);
  const result = link.call({ func, inputs, resultMax });
  if (!result.ok) {
    if (result.refused) p.pause = { kind: 'failed', reason: result.reason };
    return FAILED;
  }
  if (dst === 0) return result.length;
  if (result.data.length > 0) p.mem.put(dst, result.data);
  return result.data.length;
}

/**
 * storage_return / storage_noreturn(data, len), in the storage VM during a call or task: its result;
 * in on_live_restore, where the handed-over state goes.
 */
export function storageReturn(p: Process, a: Float64Array, noreturn: boolean): number {
  const call = p.api.storageCall;
  if (p.api.role !== 'storage' || !call) {
    p.pause = { kind: 'failed', reason: `${noreturn ? 'storage_noreturn' : 'storage_return'} outside a storage call` };
    return FAILED;
  }
  const [at, len] = [a[0]!, a[1]!];
  if (call.restore) {
    const put = at === 0 ? 0 : Math.min(len, call.restore.length);
    if (put > 0) p.mem.put(at, call.restore.subarray(0, put));
    call.result = { data: new Uint8Array(0), length: put };
  } else {
    const keep = at === 0 ? 0 : Math.min(len, call.resultMax);
    call.result = { data: keep === 0 ? new Uint8Array(0) : Uint8Array.from(p.mem.read(at, keep)), length: len };
  }
  p.pause = { kind: 'storageReturn', noreturn };
  return 0;
}

/** sys_storage_task(fn, data, len, start_ms, period_ms): see StorageLink.task. */
export function storageTask(p: Process, a: Float64Array): number {
  const link = p.api.storage;
  const [func, at, len, startMs, periodMs] = [a[0]!, a[1]!, a[2]!, a[3]!, a[4]!];
  if (!link || len > STORAGE_LIMITS.taskBytes) return FAILED;
  const data = len === 0 ? new Uint8Array(0) : Uint8Array.from(p.mem.read(at, len));
  return link.task({ func, data, startMs, periodMs });
}

/** sys_storage_allow(fn): only the storage VM, only while it starts. */
export function storageAllow(p: Process, a: Float64Array): number {
  if (p.api.role !== 'storage' || p.api.phase !== 'init') return FAILED;
  p.api.storageAllowed.add(a[0]!);
  return 0;
}

export function stopStorageTask(p: Process, a: Float64Array): number {
  return p.api.storage ? p.api.storage.stopTask(a[0]!) : 0;
}
