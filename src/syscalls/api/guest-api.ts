/**
 * The request-side state of a program that serves requests (docs/GUEST_ABI.md):
 * the handlers it registered while booting, the request being served (method,
 * request and response headers) and the response it gave.
 *
 * The hypercalls (hypercalls.ts) read and write this; the request VM
 * (runtime/request-vm.ts) fills it before a request and collects it after.
 * Nothing here touches guest memory except through the hypercalls' checked
 * accessors, and nothing survives a request except what `init` set up.
 */
import type { Fetcher } from './fetch.js';
import type { StorageCallState, StorageLink } from './storage.js';

/** register_func indices (docs/GUEST_ABI.md, "Program model"). */
export const HANDLER = { GET: 1, POST: 2, REQUEST: 3, STREAM_POST: 4, ON_ERROR: 5, LIVE_SAVE: 6, LIVE_RESTORE: 7, SOCKET: 12 } as const;
const KNOWN_HANDLERS = new Set<number>(Object.values(HANDLER));

/** Header fields a request or a response may carry, and how long one may be. */
export const HEADER_LIMITS = { count: 128, fieldBytes: 64 * 1024 } as const;

export interface CachePolicy {
  cached: boolean;
  ttlMs: number;
  graceMs: number;
  keepMs: number;
}

/** What a guest answered with sys_backend_response. Bytes are copies: the fork's memory is reset after. */
export interface GuestResponse {
  status: number;
  contentType: string;
  /** Whole `Key: value` fields, in the order the guest gave them. */
  headers: string[];
  body: Buffer;
  cache: CachePolicy | null;
  /**
   * begin_streaming_response: no body yet; the host pulls it by calling `callback(arg, max, written,
   * length)` in the same VM until `length` bytes came (request-vm.ts, streamChunk).
   */
  stream?: { callback: number; arg: number; length: number };
}

/** Limits and regions the guest may ask about (get_meminfo, shared_memory_area). */
export interface ApiLimits {
  maxMemory: number;
  maxRequestMemory: number;
  /** req_mem_limit_after_reset in bytes (0: unlimited). */
  requestMemoryUpper: number;
  /** Shared region [start, end), or [0, 0) when the program has none. */
  sharedStart: number;
  sharedEnd: number;
  controlEphemeral: boolean;
}

export type ApiPhase = 'init' | 'request';
/** A request VM (and the main VM it is forked from), or a program's storage VM (storage.ts). */
export type ApiRole = 'request' | 'storage';

export class GuestApi {
  phase: ApiPhase = 'init';
  /** Handler index → guest function address, as register_func left them. */
  readonly handlers = new Map<number, number>();
  /** Set by sys_make_ephemeral during init; null when the program did not choose. */
  ephemeral: boolean | null = null;
  limits: ApiLimits;
  /** Bytes the request currently holds beyond the snapshot (get_meminfo's reqmem_current). */
  requestMemoryInUse: () => number = () => 0;
  /** Makes sys_fetch's requests (fetch.ts), when whoever runs this VM can: request VMs of a Program. */
  fetcher: Fetcher | null = null;
  /** The request being served is a self-request this deep (0: a client's); set by the host, not the guest. */
  selfDepth = 0;
  role: ApiRole = 'request';
  /** Reaches the program's storage VM (storage.ts), when it has one. */
  storage: StorageLink | null = null;
  /** Storage VM: the functions sys_storage_allow named while it started (none: any may be called). */
  readonly storageAllowed = new Set<number>();
  /** Storage VM: the call or task it is in, and what storage_return gave. */
  storageCall: StorageCallState | null = null;

  // The request being served.
  method = '';
  requestHeaders: string[] = [];
  responseHeaders: string[] = [];
  cache: CachePolicy | null = null;
  response: GuestResponse | null = null;

  constructor(limits: ApiLimits) {
    this.limits = limits;
  }

  register(index: number, fn: number): number {
    if (this.phase !== 'init' || !KNOWN_HANDLERS.has(index)) return -1;
    this.handlers.set(index, fn);
    return 0;
  }

  beginRequest(method: string, headers: string[]): void {
    this.phase = 'request';
    this.method = method;
    this.requestHeaders = headers.slice();
    this.responseHeaders = [];
    this.cache = null;
    this.response = null;
  }

  headerList(where: number): string[] | null {
    return where === 0 ? this.requestHeaders : where === 1 ? this.responseHeaders : null;
  }
}

/** The key of a `Key: value` field, lower-cased; the whole field when it has no colon (an unset). */
export function headerKey(field: string): string {
  const colon = field.indexOf(':');
  return (colon < 0 ? field : field.slice(0, colon)).trim().toLowerCase();
}

/** The index of the field named `key` (case-insensitive), or -1. */
export function findHeader(list: readonly string[], key: string): number {
  const k = key.trim().toLowerCase();
  return list.findIndex((f) => headerKey(f) === k);
}
