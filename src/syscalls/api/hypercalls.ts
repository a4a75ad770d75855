/**
 * The guest API's hypercalls (docs/GUEST_ABI.md, "Hypercalls"): `mov $NR, %eax; out %eax, $0`
 * with C-convention arguments (rdi, rsi, rdx, rcx, r8, r9), result in rax.
 *
 * Calls that end or pause a run (wait_for_requests*, sys_backend_response, a
 * handler returning, a broken rule) set `p.pause`; the run loop then hands
 * control back to whoever runs the VM (the freezer, a request VM). Numbers the
 * spec reserves for later are absent from the table: the dispatcher answers
 * -ENOSYS and reports each once.
 */
import { E } from '../../host/errno.js';
import type { Process } from '../process.js';
import type { SyscallDef } from '../syscall.js';
import { sysFetch } from './fetch.js';
import { regexCompile, regexCopyto, regexFree, regexMatch, regexSubst } from './regex.js';
import { stopStorageTask, storageAllow, storageCallv, storageReturn, storageTask } from './storage.js';
import { findHeader, headerKey, HEADER_LIMITS, type CachePolicy } from './guest-api.js';

export const HYPERCALL = {
  REGISTER_FUNC: 0x10000,
  WAIT_FOR_REQUESTS: 0x10001,
  WAIT_FOR_REQUESTS_PAUSED: 0x10002,
  SET_CACHEABLE: 0x10005,
  BACKEND_RESPONSE: 0x10010,
  HTTP_APPEND: 0x10020,
  HTTP_SET: 0x10021,
  HTTP_FIND: 0x10022,
  HTTP_METHOD: 0x10023,
  REGEX_COMPILE: 0x10030,
  REGEX_FREE: 0x10031,
  REGEX_MATCH: 0x10032,
  REGEX_SUBST: 0x10033,
  REGEX_COPYTO: 0x10035,
  STORAGE_RETURN: 0x10011,
  BEGIN_STREAMING_RESPONSE: 0x10012,
  STORAGE_NORETURN: 0x10013,
  SHARED_MEMORY_AREA: 0x10700,
  MAKE_EPHEMERAL: 0x10703,
  SYS_IS_STORAGE: 0x10706,
  STORAGE_ALLOW: 0x10707,
  STORAGE_CALLV: 0x10708,
  STORAGE_TASK: 0x10709,
  STOP_STORAGE_TASK: 0x1070a,
  GET_MEMINFO: 0x10a00,
  SYS_FETCH: 0x20000,
  SYS_LOG: 0x7f000,
  SYS_BREAKPOINT: 0x7f7f7,
  SYS_IS_DEBUG: 0x7fdeb,
  /** tskvm's own: the return address of every handler call traps here (stubs.ts HANDLER_RETURN). */
  HANDLER_RETURNED: 0x7ffff,
} as const;

/** Bytes of a content type, and of a response body, the host accepts. */
const CONTENT_TYPE_MAX = 1024;
const RESPONSE_BODY_MAX = 256 << 20;
/** Largest streamed body: it never sits in host memory whole, so only what a content length may say. */
const STREAM_MAX = 2 ** 48;
const LOG_LINE_MAX = 64 * 1024;
/** struct BackendResponseExtra / struct ResponseHeader offsets (docs/GUEST_ABI.md, "Structures"). */
const EXTRA = { headers: 0, numHeaders: 8, cached: 10, ttl: 12, grace: 16, keep: 20, size: 56 } as const;
const RESPONSE_HEADER_SIZE = 16;

/** Guest bytes [addr, addr+len); a zero length may come with any pointer (NULL included). */
const guestBytes = (p: Process, addr: number, len: number): Uint8Array => (len === 0 ? new Uint8Array(0) : p.mem.read(addr, len));
const latin1 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');

/** What an HTTP field value may not hold (RFC 9110: visible characters, space, tab, obs-text). */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

function fail(p: Process, reason: string): number {
  p.pause = { kind: 'failed', reason };
  return -E.EINVAL;
}

/** A header field from the guest, or a failure of the request when it breaks the limits. */
function readField(p: Process, addr: number, len: number): string | null {
  if (len > HEADER_LIMITS.fieldBytes) {
    fail(p, `header field of ${len} bytes (the limit is ${HEADER_LIMITS.fieldBytes})`);
    return null;
  }
  const field = latin1(guestBytes(p, addr, Math.max(0, len)));
  if (CONTROL.test(field)) {
    fail(p, 'header field contains a control character (CR, LF, NUL…)');
    return null;
  }
  return field;
}

function addField(p: Process, list: string[], field: string): number {
  if (list.length >= HEADER_LIMITS.count) return fail(p, `more than ${HEADER_LIMITS.count} header fields`);
  list.push(field);
  return 0;
}

/** Copies `text` and a NUL into the guest's [out, out+outlen): its length, or 0 when it does not fit. */
function copyOut(p: Process, text: string, out: number, outlen: number): number {
  const bytes = Buffer.from(text, 'latin1');
  if (out === 0) return bytes.length;
  if (outlen < bytes.length + 1) return 0;
  const into = p.mem.write(out, bytes.length + 1);
  into.set(bytes);
  into[bytes.length] = 0;
  return bytes.length;
}

/** The status and content type of a response (both kinds), or null when they broke a rule (p.pause says which). */
function responseHead(p: Process, rawStatus: number, ctAt: number, ctLen: number): { status: number; contentType: string } | null {
  const status = (rawStatus << 16) >> 16; // int16_t
  if (status < 200 || status > 599) return fail(p, `the program responded with status ${status} (must be 200–599)`), null;
  if (ctLen < 0 || ctLen > CONTENT_TYPE_MAX) return fail(p, `content type of ${ctLen} bytes (the limit is ${CONTENT_TYPE_MAX})`), null;
  const contentType = latin1(guestBytes(p, ctAt, ctLen)).replace(/\0+$/, '');
  if (CONTROL.test(contentType)) return fail(p, 'content type contains a control character (CR, LF, NUL…)'), null;
  return { status, contentType };
}

/**
 * begin_streaming_response(status, ctype, ctlen, content_length, callback, arg): the head of the
 * response now, the body pulled from `callback` afterwards. Like the VMOD, the length must be known
 * (no chunked body) and the callback real; the call never returns.
 */
function beginStreaming(p: Process, a: Float64Array): number {
  const head = responseHead(p, a[0]!, a[1]!, a[2]!);
  if (!head) return -E.EINVAL;
  const [length, callback, arg] = [a[3]!, a[4]!, a[5]!];
  if (length <= 0 || length > STREAM_MAX) return fail(p, `a streamed response of ${length} bytes (it must be 1 to ${STREAM_MAX})`);
  if (head.status === 204 || head.status === 304) return fail(p, `status ${head.status} with a body (it has none in HTTP)`);
  p.mem.check(callback, 1);
  p.api.response = { ...head, headers: p.api.responseHeaders.slice(), body: Buffer.alloc(0), cache: p.api.cache, stream: { callback, arg, length } };
  p.pause = { kind: 'response' };
  return 0;
}

function collectResponse(p: Process, a: Float64Array): number {
  const head = responseHead(p, a[0]!, a[1]!, a[2]!);
  if (!head) return -E.EINVAL;
  const { status, contentType } = head;
  const bodyLen = a[4]!;
  if (bodyLen < 0 || bodyLen > RESPONSE_BODY_MAX) return fail(p, `response body of ${bodyLen} bytes (the limit is ${RESPONSE_BODY_MAX})`);
  if ((status === 204 || status === 304) && bodyLen > 0) return fail(p, `status ${status} with a body of ${bodyLen} bytes (it has none in HTTP)`);
  const body = Buffer.from(guestBytes(p, a[3]!, bodyLen));
  const api = p.api;
  let cache: CachePolicy | null = api.cache;
  const extra = a[5]!;
  if (extra !== 0) {
    p.mem.check(extra, EXTRA.size);
    const headers = p.mem.u64(extra + EXTRA.headers);
    const count = p.mem.u16(extra + EXTRA.numHeaders);
    for (let i = 0; i < count; i++) {
      const at = headers + i * RESPONSE_HEADER_SIZE;
      const field = readField(p, p.mem.u64(at), p.mem.u64(at + 8));
      if (field === null || addField(p, api.responseHeaders, field) < 0) return -E.EINVAL;
    }
    if (p.mem.u8(extra + EXTRA.cached)) {
      const seconds = (off: number): number => Math.max(0, p.mem.f32(extra + off)) * 1000;
      cache = { cached: true, ttlMs: seconds(EXTRA.ttl), graceMs: seconds(EXTRA.grace), keepMs: seconds(EXTRA.keep) };
    }
  }
  api.response = { status, contentType, headers: api.responseHeaders.slice(), body, cache };
  p.pause = { kind: 'response' };
  return 0;
}

const definitions: SyscallDef[] = [
  {
    nr: HYPERCALL.REGISTER_FUNC, name: 'register_func', args: ['int', 'hex'],
    handler: (p, a) => {
      if (p.api.phase !== 'init') return -E.EPERM;
      p.mem.check(a[1]!, 1);
      return p.api.register(a[0]! | 0, a[1]!) < 0 ? -E.EINVAL : 0;
    },
  },
  {
    nr: HYPERCALL.WAIT_FOR_REQUESTS, name: 'wait_for_requests', args: [],
    handler: (p) => {
      if (p.api.phase !== 'init') return fail(p, 'wait_for_requests called while serving a request');
      p.pause = { kind: 'freeze', paused: false, requestAddress: 0 };
      return 0;
    },
  },
  {
    nr: HYPERCALL.WAIT_FOR_REQUESTS_PAUSED, name: 'wait_for_requests_paused', args: ['ptr'],
    handler: (p, a) => {
      // 104 bytes: struct kvm_request, which the host fills for every request.
      p.mem.check(a[0]!, 104);
      p.pause = { kind: 'freeze', paused: true, requestAddress: a[0]! };
      return 0;
    },
  },
  {
    nr: HYPERCALL.SET_CACHEABLE, name: 'sys_set_cacheable', args: ['int', 'int', 'int', 'int'],
    handler: (p, a) => {
      const ms = (v: number): number => Math.max(0, v);
      p.api.cache = { cached: (a[0]! & 0xff) !== 0, ttlMs: ms(a[1]!), graceMs: ms(a[2]!), keepMs: ms(a[3]!) };
      return 0;
    },
  },
  {
    nr: HYPERCALL.BACKEND_RESPONSE, name: 'sys_backend_response', args: ['int', 'ptr', 'size', 'ptr', 'size', 'ptr'],
    handler: (p, a) => (p.api.phase === 'request' ? collectResponse(p, a) : fail(p, 'sys_backend_response called outside a request')),
  },
  {
    nr: HYPERCALL.HTTP_APPEND, name: 'sys_http_append', args: ['int', 'inbuf', 'size'],
    handler: (p, a) => {
      const list = p.api.headerList(a[0]! | 0);
      if (!list) return -E.EINVAL;
      const field = readField(p, a[1]!, a[2]!);
      return field === null ? -E.EINVAL : addField(p, list, field);
    },
  },
  {
    nr: HYPERCALL.HTTP_SET, name: 'sys_http_set', args: ['int', 'inbuf', 'size'],
    handler: (p, a) => {
      const list = p.api.headerList(a[0]! | 0);
      if (!list) return -E.EINVAL;
      const field = readField(p, a[1]!, a[2]!);
      if (field === null) return -E.EINVAL;
      const at = findHeader(list, headerKey(field));
      if (!field.includes(':')) {
        if (at >= 0) list.splice(at, 1);
        return 0;
      }
      if (at < 0) return addField(p, list, field);
      list[at] = field;
      return 0;
    },
  },
  {
    nr: HYPERCALL.HTTP_FIND, name: 'sys_http_find', args: ['int', 'inbuf', 'size', 'ptr', 'size'],
    handler: (p, a) => {
      const list = p.api.headerList(a[0]! | 0);
      if (!list || a[2]! < 0 || a[2]! > HEADER_LIMITS.fieldBytes) return 0;
      const at = findHeader(list, latin1(p.mem.read(a[1]!, a[2]!)));
      return at < 0 ? 0 : copyOut(p, list[at]!, a[3]!, a[4]!);
    },
  },
  {
    nr: HYPERCALL.HTTP_METHOD, name: 'sys_http_method', args: ['ptr', 'size'],
    handler: (p, a) => copyOut(p, p.api.method, a[0]!, a[1]!),
  },
  {
    nr: HYPERCALL.SHARED_MEMORY_AREA, name: 'shared_memory_area', args: [], ret: 'hex',
    handler: (p) => {
      // A 16-byte struct {ptr, end} comes back in rax:rdx (SysV).
      p.cpu?.setRdx(p.api.limits.sharedEnd);
      return p.api.limits.sharedStart;
    },
  },
  {
    nr: HYPERCALL.MAKE_EPHEMERAL, name: 'sys_make_ephemeral', args: ['int'],
    handler: (p, a) => {
      if (p.api.phase !== 'init' || !p.api.limits.controlEphemeral) return -E.EPERM;
      p.api.ephemeral = (a[0]! | 0) !== 0;
      return 0;
    },
  },
  {
    nr: HYPERCALL.GET_MEMINFO, name: 'get_meminfo', args: ['ptr'],
    handler: (p, a) => {
      const { limits } = p.api;
      const at = a[0]!;
      p.mem.check(at, 32);
      p.mem.setU64(at, limits.maxMemory);
      p.mem.setU64(at + 8, limits.maxRequestMemory);
      p.mem.setU64(at + 16, limits.requestMemoryUpper);
      p.mem.setU64(at + 24, p.api.requestMemoryInUse());
      return 0;
    },
  },
  {
    nr: HYPERCALL.SYS_LOG, name: 'sys_log', args: ['inbuf', 'size'],
    handler: (p, a) => {
      const bytes = p.mem.read(a[0]!, Math.min(Math.max(0, a[1]!), LOG_LINE_MAX));
      p.log(Buffer.from(bytes).toString('utf8').replace(/\n$/, ''));
      return 0;
    },
  },
  { nr: HYPERCALL.SYS_IS_DEBUG, name: 'sys_is_debug', args: [], handler: () => 0 },
  // No debugger can attach to a tskvm VM: a breakpoint does nothing, as the VMOD's does without one.
  { nr: HYPERCALL.SYS_BREAKPOINT, name: 'sys_breakpoint', args: [], handler: () => 0 },
  {
    nr: HYPERCALL.BEGIN_STREAMING_RESPONSE, name: 'begin_streaming_response', args: ['int', 'ptr', 'size', 'size', 'hex', 'hex'],
    handler: (p, a) => {
      if (p.api.phase !== 'request') return fail(p, 'begin_streaming_response outside a request');
      return beginStreaming(p, a);
    },
  },
  { nr: HYPERCALL.SYS_IS_STORAGE, name: 'sys_is_storage', args: [], handler: (p) => (p.api.role === 'storage' ? 1 : 0) },
  { nr: HYPERCALL.STORAGE_RETURN, name: 'storage_return', args: ['ptr', 'size'], handler: (p, a) => storageReturn(p, a, false) },
  { nr: HYPERCALL.STORAGE_NORETURN, name: 'storage_noreturn', args: ['ptr', 'size'], handler: (p, a) => storageReturn(p, a, true) },
  { nr: HYPERCALL.STORAGE_ALLOW, name: 'sys_storage_allow', args: ['hex'], handler: storageAllow },
  { nr: HYPERCALL.STORAGE_CALLV, name: 'storage_callv', args: ['hex', 'size', 'ptr', 'ptr', 'size'], handler: storageCallv },
  { nr: HYPERCALL.STORAGE_TASK, name: 'sys_storage_task', args: ['hex', 'ptr', 'size', 'int', 'int'], handler: storageTask },
  { nr: HYPERCALL.STOP_STORAGE_TASK, name: 'stop_storage_task', args: ['int'], handler: stopStorageTask },
  { nr: HYPERCALL.REGEX_COMPILE, name: 'sys_regex_compile', args: ['inbuf', 'size'], handler: regexCompile },
  { nr: HYPERCALL.REGEX_FREE, name: 'sys_regex_free', args: ['int'], handler: regexFree },
  { nr: HYPERCALL.REGEX_MATCH, name: 'sys_regex_match', args: ['int', 'inbuf', 'size'], ret: 'pcre', handler: regexMatch },
  { nr: HYPERCALL.REGEX_SUBST, name: 'sys_regex_subst', args: ['int', 'str', 'str', 'outbuf', 'size', 'hex'], ret: 'pcre', handler: regexSubst },
  { nr: HYPERCALL.REGEX_COPYTO, name: 'sys_regex_copyto', args: ['int', 'int', 'int'], ret: 'pcre', handler: regexCopyto },
  { nr: HYPERCALL.SYS_FETCH, name: 'sys_fetch', args: ['inbuf', 'size', 'ptr', 'ptr', 'ptr'], handler: sysFetch },
  {
    nr: HYPERCALL.HANDLER_RETURNED, name: 'handler_returned', args: [],
    handler: (p) => {
      p.pause = { kind: 'returned' };
      return 0;
    },
  },
];

export const hypercallTable = new Map<number, SyscallDef>(definitions.map((d) => [d.nr, d]));
