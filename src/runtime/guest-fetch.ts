/**
 * The main thread's half of sys_fetch (src/syscalls/api/fetch.ts has the guest's): a request a guest
 * asked for, made with undici, or handed to the server when it is a self-request.
 *
 * A full URL goes out only to an origin the program's configuration lists (`fetch_origins`; none by
 * default, "*" for any): a program nobody trusts must not reach the operator's network by default.
 * A path ("/…") is a self-request, served by the server the program runs in without a socket; it
 * carries its depth, so a program that calls itself in a loop gets an error at MAX_SELF_DEPTH, not a
 * pile of waiting requests.
 */
import { Agent, interceptors, request as undiciRequest, type Dispatcher } from 'undici';
import { CURLE, type FetchRequest, type FetchResult } from '../syscalls/api/fetch.js';

/** How deep self-requests may nest: a request of a self-request of a self-request… */
export const MAX_SELF_DEPTH = 4;
const CONNECT_TIMEOUT_MS = 5_000;
const MAX_REDIRECTS = 10;

/** Serves a self-request (its `depth`: 1 for one made by a client's request): given by the server a program runs in. */
export type SelfRequestHandler = (request: FetchRequest) => Promise<FetchResult>;

let followingAgent: Dispatcher | null = null;
let plainAgent: Dispatcher | null = null;

/**
 * Makes `request` for a guest: a self-request (through `selfRequest`, the server's) or an outbound one
 * to an allowed origin. Never throws: every failure is a FetchResult with a CURLE code.
 */
export async function guestFetch(request: FetchRequest, origins: readonly string[], selfRequest?: SelfRequestHandler): Promise<FetchResult> {
  if (request.url.startsWith('/')) {
    if (!selfRequest) return fail(CURLE.COULDNT_CONNECT, 'a self-request needs a server (tskvm serve); this program runs without one');
    if (request.depth >= MAX_SELF_DEPTH) return fail(CURLE.COULDNT_CONNECT, `self-requests nest ${MAX_SELF_DEPTH} deep at most`);
    return selfRequest({ ...request, depth: request.depth + 1 }).catch((e: Error) => fail(CURLE.RECV_ERROR, e.message));
  }
  let url: URL;
  try {
    url = new URL(request.url);
  } catch {
    return fail(CURLE.URL_MALFORMAT, `not a URL: ${request.url}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail(CURLE.URL_MALFORMAT, `${url.protocol} is not http or https`);
  if (!origins.includes('*') && !origins.includes(url.origin)) {
    return fail(CURLE.REMOTE_ACCESS_DENIED, `${url.origin} is not in the program's fetch_origins`);
  }
  const headers: string[] = [];
  for (const field of request.headers) {
    const colon = field.indexOf(':');
    if (colon <= 0) continue;
    headers.push(field.slice(0, colon).trim(), field.slice(colon + 1).trim());
  }
  const dispatcher = request.followRedirects
    ? (followingAgent ??= new Agent({ connectTimeout: CONNECT_TIMEOUT_MS }).compose(interceptors.redirect({ maxRedirections: MAX_REDIRECTS })))
    : (plainAgent ??= new Agent({ connectTimeout: CONNECT_TIMEOUT_MS }));
  const abort = AbortSignal.timeout(Math.max(1, Math.ceil(request.timeoutMs)));
  try {
    const res = await undiciRequest(url, {
      method: request.method, headers, body: request.body ?? undefined, dispatcher, signal: abort,
      headersTimeout: request.timeoutMs, bodyTimeout: request.timeoutMs,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > request.maxBody) {
        res.body.destroy();
        return fail(CURLE.WRITE_ERROR, `the body is larger than the ${request.maxBody} bytes the guest can take`);
      }
      chunks.push(chunk);
    }
    const type = res.headers['content-type'];
    return { ok: true, status: res.statusCode, contentType: (Array.isArray(type) ? type[0] : type) ?? '', headers: headerBlock(res.statusCode, res.headers), body: ownBytes(chunks, size) };
  } catch (e) {
    return fail(curlCode(e as Error), (e as Error).message);
  }
}

/** The response's header block as curl hands it over: the status line, then `Key: value` lines, then an empty one. */
export function headerBlock(status: number, headers: Record<string, string | string[] | undefined>): string {
  let block = `HTTP/1.1 ${status}\r\n`;
  for (const [key, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) block += `${key}: ${v}\r\n`;
  }
  return `${block}\r\n`;
}

/** The chunks in an ArrayBuffer of their own: it moves to the worker thread (Buffer.concat may use Node's shared pool). */
export function ownBytes(chunks: readonly Uint8Array[], size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

function fail(code: number, message: string): FetchResult {
  return { ok: false, code, message };
}

/** libcurl's number for what undici (or the system) reported. */
function curlCode(e: Error): number {
  const code = (e as { code?: string }).code ?? (e.cause as { code?: string } | undefined)?.code ?? '';
  if (e.name === 'TimeoutError' || e.name === 'AbortError' || /TIMEOUT/.test(code)) return CURLE.OPERATION_TIMEDOUT;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return CURLE.COULDNT_RESOLVE_HOST;
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return CURLE.COULDNT_CONNECT;
  if (code === 'UND_ERR_REDIRECT' || /redirect/i.test(e.message)) return CURLE.TOO_MANY_REDIRECTS;
  if (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET') return CURLE.GOT_NOTHING;
  return CURLE.RECV_ERROR;
}
