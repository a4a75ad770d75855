/**
 * sys_fetch (0x20000): an HTTP request the host makes for the guest, the VMOD's way
 * (docs/GUEST_ABI.md, "sys_fetch"):
 *
 *   long sys_fetch(const char *url, size_t url_len, struct curl_op *op,
 *                  const struct curl_fields *fields, const struct curl_options *opts)
 *
 * The guest's structures are read and written here; the request itself is made by whoever runs the
 * VM (GuestApi.fetcher): a worker thread asks the main thread and waits, bounded by the request's
 * deadline. A URL that starts with "/" is a self-request, served by the same server. The result is
 * 0 with the response in `op`, or a negative number, the VMOD's (libcurl's) error codes: programs
 * written for it test for them.
 */
import type { Process } from '../process.js';
import { passedDeadline, waitLimit } from '../deadline.js';
import { PROT_READ, PROT_WRITE } from '../address-space.js';
import { pageAlignUp } from '../../paging/layout.js';

/** struct curl_op (176 bytes), struct curl_fields (120), struct curl_options (24). */
export const CURL_OP = { status: 0, postLength: 4, postBuffer: 8, headers: 16, headersLength: 24, content: 32, contentLength: 40, ctypeLength: 44, ctype: 48, size: 176 } as const;
const FIELDS = { count: 12, lengths: 96, size: 120 } as const;
const OPTIONS = { followLocation: 16, dummyFetch: 17, size: 24 } as const;
const CTYPE_MAX = 128;
const URL_MAX = 1024;
/** The response header block is read only when the guest offers at least this much room (or asks the host to allocate it). */
const HEADERS_MIN = 64;
/** What the VMOD gives a fetch at most: 5 s to connect, 8 s in all. */
export const FETCH_TIMEOUT_MS = 8_000;
/** Largest body a fetch brings into the guest when the host allocates it. */
const CONTENT_MAX = 256 << 20;

/** libcurl's error numbers that sys_fetch returns negated (the VMOD passes them through). */
export const CURLE = {
  URL_MALFORMAT: 3,
  COULDNT_RESOLVE_HOST: 6,
  COULDNT_CONNECT: 7,
  REMOTE_ACCESS_DENIED: 9,
  WRITE_ERROR: 23,
  OUT_OF_MEMORY: 27,
  OPERATION_TIMEDOUT: 28,
  TOO_MANY_REDIRECTS: 47,
  GOT_NOTHING: 52,
  RECV_ERROR: 56,
} as const;

export interface FetchRequest {
  /** An absolute http(s) URL, or a path (a self-request). */
  url: string;
  method: 'GET' | 'POST' | 'HEAD';
  /** "Key: value" fields. */
  headers: string[];
  body: Uint8Array | null;
  followRedirects: boolean;
  /** Largest body the guest can take. */
  maxBody: number;
  /** How long the fetch may take: the VMOD's 8 s, cut at the request's deadline. */
  timeoutMs: number;
  /** How deep the request making it is in self-requests: 0 for one from a client (GuestApi.selfDepth). */
  depth: number;
}

export type FetchResult =
  | { ok: true; status: number; contentType: string; /** The header block, "Key: value\r\n" each. */ headers: string; body: Uint8Array }
  | { ok: false; /** A CURLE number. */ code: number; message: string };

/** Makes the request and waits for it (the calling thread blocks): set by whoever runs the VM. */
export type Fetcher = (request: FetchRequest) => FetchResult;

export function sysFetch(p: Process, a: Float64Array): number {
  const [urlAt, urlLength, op, fieldsAt, optionsAt] = [a[0]!, a[1]!, a[2]!, a[3]!, a[4]!];
  const mem = p.mem;
  if (urlLength <= 0 || urlLength > URL_MAX) return -CURLE.URL_MALFORMAT;
  const url = Buffer.from(mem.read(urlAt, urlLength)).toString('latin1');
  mem.check(op, CURL_OP.size);
  const fetcher = p.api.fetcher;
  if (!fetcher) {
    p.warn('sys_fetch: this VM has no way out (fetch works in request VMs of Program and tskvm serve)');
    return -CURLE.COULDNT_CONNECT;
  }
  const headers: string[] = [];
  if (fieldsAt !== 0) {
    mem.check(fieldsAt, FIELDS.size);
    for (let i = 0; i < FIELDS.count; i++) {
      const at = mem.u64(fieldsAt + 8 * i);
      const len = mem.u16(fieldsAt + FIELDS.lengths + 2 * i);
      // The VMOD stops at the first empty field.
      if (at === 0 || len === 0) break;
      headers.push(Buffer.from(mem.read(at, len)).toString('latin1'));
    }
  }
  const postLength = mem.u32(op + CURL_OP.postLength);
  const postAt = mem.u64(op + CURL_OP.postBuffer);
  const body = postAt !== 0 && postLength !== 0 ? Uint8Array.from(mem.read(postAt, postLength)) : null;
  const ctypeLength = mem.u32(op + CURL_OP.ctypeLength);
  if (body && fieldsAt !== 0 && ctypeLength > 0 && ctypeLength < CTYPE_MAX) {
    headers.push(`Content-Type: ${Buffer.from(mem.read(op + CURL_OP.ctype, ctypeLength)).toString('latin1')}`);
  }
  let followRedirects = true;
  let dummy = false;
  if (optionsAt !== 0) {
    mem.check(optionsAt, OPTIONS.size);
    followRedirects = mem.u8(optionsAt + OPTIONS.followLocation) !== 0;
    dummy = mem.u8(optionsAt + OPTIONS.dummyFetch) !== 0;
  }
  const contentAt = mem.u64(op + CURL_OP.content);
  const contentRoom = mem.u32(op + CURL_OP.contentLength);
  const headersAt = mem.u64(op + CURL_OP.headers);
  const headersRoom = mem.u32(op + CURL_OP.headersLength);
  if (contentAt !== 0) mem.check(contentAt, contentRoom);
  if (headersAt !== 0) mem.check(headersAt, headersRoom);
  const limit = waitLimit(FETCH_TIMEOUT_MS);

  const result = fetcher({
    url, method: body ? 'POST' : dummy ? 'HEAD' : 'GET', headers, body, followRedirects,
    maxBody: contentAt !== 0 ? contentRoom : CONTENT_MAX, timeoutMs: limit < 0 ? FETCH_TIMEOUT_MS : limit, depth: p.api.selfDepth,
  });
  if (!result.ok) {
    // A fetch that ran into the request's deadline ends the request as a timeout, as any wait does.
    passedDeadline();
    return -result.code;
  }

  // The body: into the guest's buffer, or into memory the host maps for it (the guest's to free).
  let bodyAt = contentAt;
  if (contentAt === 0 && result.body.length > 0) {
    bodyAt = p.mm.map(0, pageAlignUp(result.body.length), PROT_READ | PROT_WRITE, 'any', 'sys_fetch');
    if (bodyAt < 0) return -CURLE.OUT_OF_MEMORY;
  } else if (result.body.length > contentRoom && contentAt !== 0) {
    return -CURLE.WRITE_ERROR;
  }
  if (result.body.length > 0) mem.put(bodyAt, result.body);
  mem.setU64(op + CURL_OP.content, bodyAt);
  mem.setU32(op + CURL_OP.contentLength, result.body.length);

  if (headersRoom >= HEADERS_MIN && result.headers.length > 0) {
    // With a NUL after the block; the length does not count it.
    const block = Buffer.from(`${result.headers}\0`, 'latin1');
    if (headersAt === 0) {
      const at = p.mm.map(0, pageAlignUp(block.length), PROT_READ | PROT_WRITE, 'any', 'sys_fetch headers');
      if (at < 0) return -CURLE.OUT_OF_MEMORY;
      mem.put(at, block);
      mem.setU64(op + CURL_OP.headers, at);
      mem.setU32(op + CURL_OP.headersLength, block.length - 1);
    } else {
      const n = Math.min(block.length, headersRoom);
      mem.put(headersAt, block.subarray(0, n));
      mem.put(headersAt + n - 1, new Uint8Array(1));
      mem.setU32(op + CURL_OP.headersLength, n - 1);
    }
  }
  mem.setU32(op + CURL_OP.status, result.status);
  // Content-Type with its NUL, the length counting it (as the VMOD does), cut at 128 bytes.
  const ctype = Buffer.from(`${result.contentType}\0`, 'latin1').subarray(0, CTYPE_MAX);
  if (result.contentType) {
    mem.put(op + CURL_OP.ctype, ctype);
    mem.setU32(op + CURL_OP.ctypeLength, ctype.length);
  } else {
    mem.setU32(op + CURL_OP.ctypeLength, 0);
  }
  return 0;
}
