/**
 * Options of a program that serves requests, with the defaults and units of
 * docs/GUEST_ABI.md, "Configuration" (camelCase here, snake_case in library
 * files), checked once and turned into what the boot and the forks need.
 */
import type { RemapOption } from '../hypervisor/memory-plan.js';
import { basename, posix, resolve as resolvePath } from 'node:path';
import { TskvmError } from '../errors.js';
import { MAX_ADDRESS_SPACE } from '../paging/layout.js';
import type { AllowedPath } from '../syscalls/path-policy.js';
import type { SelfRequestHandler } from './guest-fetch.js';
import { requestProblem } from './request-data.js';
import { HEADER_LIMITS } from '../syscalls/api/guest-api.js';

/** What the guest opens to reach its state file (the value of KVM_STATE). */
const STATE_FILE = 'state';

/** Bytes of output lines (stdout, stderr, sys_log) one request, or the boot, may send before the rest is cut. */
export const OUTPUT_LIMIT = 1 << 20;

export type { RemapOption };

export interface ProgramOptions {
  /** Name the program sees as KVM_NAME and statistics use; default: the file's base name. */
  name?: string;
  group?: string;
  /** Request VMs (forks), 1–255. Default 2. */
  concurrency?: number;
  /** Seconds for main() to reach wait_for_requests. Default 16. */
  maxBootTime?: number;
  /** Seconds per request. Default 8. */
  maxRequestTime?: number;
  /** MiB of guest memory. Default 256. */
  maxMemory?: number;
  /**
   * MiB of address space, when larger than maxMemory (up to 65536): sparse, the program may map
   * anywhere in it and hold maxMemory of mappings. Default: maxMemory.
   */
  addressSpace?: number;
  /**
   * Memory at fixed high addresses, the program's own (the VMOD's `remapping`): Go's heap wants
   * 0xc000000000 first. Default none.
   */
  remappings?: RemapOption[];
  /** MiB a request may allocate beyond the frozen program. Default 64. */
  maxRequestMemory?: number;
  /** MiB a request may write into writable allowed paths (then ENOSPC). Default 64. */
  maxRequestWrite?: number;
  /** MiB a fork may keep written after a request before it is fully reset. Default 0: unlimited. */
  reqMemLimitAfterReset?: number;
  /** Reset after every request. Default true. */
  ephemeral?: boolean;
  controlEphemeral?: boolean;
  /** Every page of user memory executable, for programs that generate code (JITs). Default false. */
  executableHeap?: boolean;
  /** MiB shared by all forks, above the program's memory. Default 0. */
  sharedMemory?: number;
  mainArguments?: string[];
  /** Extra `KEY=value` entries. */
  environment?: string[];
  allowedPaths?: Array<string | AllowedPath>;
  currentWorkingDirectory?: string;
  /** Echo the program's stdout/stderr and logs to this process's stderr. */
  stdout?: boolean;
  /** strace-style trace of the program's syscalls on stderr. */
  verboseSyscalls?: boolean;
  /** Requests that may wait for a free fork; more are refused at once. Default 64 × concurrency. */
  maxQueue?: number;
  /** Seconds a request may wait for a fork. Default 10. */
  queueTimeout?: number;
  /** Origins (`https://host[:port]`) the program's sys_fetch may reach; "*" for any. Default: none. */
  fetchOrigins?: string[];
  /** A storage VM: one long-lived VM, never reset, that request VMs call into (storage_callv). Default false. */
  storage?: boolean;
  /** The storage VM's ELF (the VMOD's filename_storage); default: the program's own. */
  storageFilename?: string;
  /** Seconds a storage call or task may run. Default 5. */
  maxStorageTime?: number;
  /**
   * With storage: the host file the program sees as `state` in its working directory (KVM_STATE), so
   * that what storage keeps survives a restart: every VM may read it, only the storage VM write it
   * (a request VM that could would carry data from one request into the next). Created empty when
   * missing. Default: the ELF's path with `.state` added.
   */
  stateFile?: string;
  /**
   * Warm-up requests (the VMOD's `warmup`): run in the main VM once main() waits for requests and
   * before any request VM is forked, so what they leave is the state every request starts from
   * (warmup.ts). Default: none.
   */
  warmup?: WarmupOptions;
  /** Called with each line the program logs (stdout, stderr, sys_log). */
  onLog?: (line: string) => void;
  /** Serves the program's self-requests (sys_fetch of a path): the server it runs in sets it. */
  selfRequest?: SelfRequestHandler;
  /** Hears of each sys_fetch done (outbound or self-request), with its time: the server's fetch_time. */
  onFetch?: (ms: number) => void;
}

/** The warm-up request, the VMOD's defaults in parentheses. */
export interface WarmupOptions {
  /** How many, 0–65535 (20). */
  numRequests?: number;
  /** ("/") */
  url?: string;
  /** ("GET") */
  method?: string;
  /** `Key: value` fields, added to "User-Agent: tinykvm", which is always there. */
  headers?: string[];
}

/** A warm-up, checked: `requests` times this request (without a body), each with bit 0 of info_flags set. */
export interface ResolvedWarmup {
  requests: number;
  method: string;
  url: string;
  headers: string[];
}

/** The field every warm-up request carries, as the VMOD's does. */
export const WARMUP_USER_AGENT = 'User-Agent: tinykvm';

/** The checked options, as plain data (they cross to worker threads). */
export interface ResolvedProgramOptions {
  name: string;
  group: string;
  concurrency: number;
  maxBootTime: number;
  maxRequestTime: number;
  maxMemory: number;
  /** Equal to maxMemory unless the address space is sparse. */
  addressSpace: number;
  remappings: RemapOption[];
  maxRequestMemory: number;
  maxRequestWrite: number;
  reqMemLimitAfterReset: number;
  ephemeral: boolean;
  controlEphemeral: boolean;
  executableHeap: boolean;
  sharedMemory: number;
  argv: string[];
  env: string[];
  allowed: AllowedPath[];
  cwd: string;
  echo: boolean;
  trace: boolean;
  maxQueue: number;
  queueTimeout: number;
  /** Normalised origins (URL.origin), or "*". */
  fetchOrigins: string[];
  storage: boolean;
  /** A path, or null for the program's own ELF. */
  storageFilename: string | null;
  maxStorageTime: number;
  /** The host file behind the guest's `state` (its entry in `allowed`, read-only there), or null without storage. */
  stateFile: string | null;
  /** null: no warm-up. */
  warmup: ResolvedWarmup | null;
}

function bad(key: string, value: unknown, why: string): never {
  throw new TskvmError('TSKVM_ERR_CONFIG', `${key}: ${JSON.stringify(value)} is invalid: ${why}`, { key, value });
}

function num(key: string, value: unknown, fallback: number, min: number, max: number, integer = false): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value)) bad(key, value, 'expected a number');
  if (integer && !Number.isInteger(value)) bad(key, value, 'expected a whole number');
  if (value < min || value > max) bad(key, value, `expected ${min}–${max}`);
  return value;
}

function bool(key: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') bad(key, value, 'expected true or false');
  return value;
}

function strings(key: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) bad(key, value, 'expected an array of strings');
  return value as string[];
}

function warmup(value: unknown): ResolvedWarmup | null {
  if (value === undefined) return null;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('warmup', value, 'expected an object: { numRequests, url, method, headers }');
  const w = value as WarmupOptions;
  const text = (key: 'url' | 'method', fallback: string): string => {
    const v = w[key] ?? fallback;
    if (typeof v !== 'string' || v === '') bad(`warmup.${key}`, v, 'expected a non-empty string');
    return v;
  };
  const resolved = {
    requests: num('warmup.numRequests', w.numRequests, 20, 0, 0xffff, true),
    method: text('method', 'GET'),
    url: text('url', '/'),
    headers: [...new Set([WARMUP_USER_AGENT, ...strings('warmup.headers', w.headers)])],
  };
  const problem = requestProblem(resolved.method, resolved.url, '', resolved.headers);
  if (problem) bad('warmup', value, problem);
  if (resolved.headers.length > HEADER_LIMITS.count) bad('warmup.headers', w.headers, `more than ${HEADER_LIMITS.count} fields`);
  return resolved.requests > 0 ? resolved : null;
}

/** An origin as URL.origin spells it (scheme, host, port if not the default), or "*". */
function fetchOrigin(origin: string): string {
  if (origin === '*') return origin;
  let url: URL | null = null;
  try {
    url = new URL(origin);
  } catch {
    // reported below
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search || url.hash || url.username) {
    bad('fetchOrigins', origin, 'expected an origin such as https://api.example.com[:port], or "*"');
  }
  return url!.origin;
}

export function resolveProgramOptions(path: string, o: ProgramOptions): ResolvedProgramOptions {
  const name = o.name ?? basename(path);
  const group = o.group ?? 'test';
  const concurrency = num('concurrency', o.concurrency, 2, 1, 255, true);
  const environment = strings('environment', o.environment);
  for (const e of environment) if (!e.includes('=')) bad('environment', e, 'expected KEY=value');
  const allowed = (o.allowedPaths ?? []).map((a) => (typeof a === 'string' ? { real: a } : a));
  const cwd = o.currentWorkingDirectory ?? '/';
  const storage = bool('storage', o.storage, false);
  const stateFile = storage ? resolvePath(o.stateFile ?? `${path}.state`) : null;
  if (stateFile) allowed.push({ real: stateFile, virtual: posix.join(cwd, STATE_FILE) });
  const maxMemory = num('maxMemory', o.maxMemory, 256, 16, MAX_ADDRESS_SPACE / 2 ** 20);
  return {
    name,
    group,
    concurrency,
    maxBootTime: num('maxBootTime', o.maxBootTime, 16, 0.001, 3600),
    maxRequestTime: num('maxRequestTime', o.maxRequestTime, 8, 0.001, 3600),
    maxMemory,
    addressSpace: num('addressSpace', o.addressSpace, maxMemory, maxMemory, MAX_ADDRESS_SPACE / 2 ** 20),
    remappings: (o.remappings ?? []).map((r) => ({ ...r })),
    maxRequestMemory: num('maxRequestMemory', o.maxRequestMemory, 64, 1, 64 * 1024),
    maxRequestWrite: num('maxRequestWrite', o.maxRequestWrite, 64, 0, 1024 * 1024),
    reqMemLimitAfterReset: num('reqMemLimitAfterReset', o.reqMemLimitAfterReset, 0, 0, 64 * 1024),
    ephemeral: bool('ephemeral', o.ephemeral, true),
    controlEphemeral: bool('controlEphemeral', o.controlEphemeral, false),
    executableHeap: bool('executableHeap', o.executableHeap, false),
    sharedMemory: num('sharedMemory', o.sharedMemory, 0, 0, 64 * 1024),
    argv: [name, ...strings('mainArguments', o.mainArguments)],
    // docs/GUEST_ABI.md, "Environment the program sees", in this order.
    env: ['LC_TYPE=C', 'LC_ALL=C', 'USER=root', ...environment, `KVM_NAME=${name}`, `KVM_GROUP=${group}`, 'KVM_TYPE=request', `KVM_STATE=${STATE_FILE}`, 'KVM_DEBUG=0'],
    allowed,
    cwd,
    echo: bool('stdout', o.stdout, false),
    trace: bool('verboseSyscalls', o.verboseSyscalls, false),
    maxQueue: num('maxQueue', o.maxQueue, 64 * concurrency, 0, 1_000_000, true),
    queueTimeout: num('queueTimeout', o.queueTimeout, 10, 0.001, 3600),
    fetchOrigins: strings('fetchOrigins', o.fetchOrigins).map((origin) => fetchOrigin(origin)),
    storage,
    storageFilename: o.storageFilename ?? null,
    maxStorageTime: num('maxStorageTime', o.maxStorageTime, 5, 0.001, 3600),
    stateFile,
    warmup: warmup(o.warmup),
  };
}

/** The options the storage VM starts with: the program's, but KVM_TYPE=storage (docs/GUEST_ABI.md, "Environment the program sees"). */
export function storageVmOptions(o: ResolvedProgramOptions): ResolvedProgramOptions {
  return {
    ...o,
    env: o.env.map((e) => (e === 'KVM_TYPE=request' ? 'KVM_TYPE=storage' : e)),
    // The state file: writable here only.
    allowed: o.allowed.map((a) => (a.real === o.stateFile ? { ...a, writable: true } : a)),
  };
}
