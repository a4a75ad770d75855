/**
 * The main thread's half of sys_fetch (src/syscalls/api/fetch.ts has the guest's): a request a guest
 * asked for, made with undici, or handed to the server when it is a self-request.
 *
 * A full URL goes out only to an origin the program's configuration lists (`fetch_origins`; none by
 * default, "*" for any): a program nobody trusts must not reach the operator's network by default.
 * Redirects are followed here, hop by hop, and each hop is held to the same list: an allowed origin
 * cannot send the request on to one that is not (a metadata service, the host's loopback).
 * A path ("/…") is a self-request, served by the server the program runs in without a socket; it
 * carries its depth, so a program that calls itself in a loop gets an error at MAX_SELF_DEPTH, not a
 * pile of waiting requests.
 */
import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { CURLE, type FetchRequest, type FetchResult } from '../syscalls/api/fetch.js';

/** How deep self-requests may nest: a request of a self-request of a self-request… */
export const MAX_SELF_DEPTH = 4;
const CONNECT_TIMEOUT_MS = 5_000;
const MAX_REDIRECTS = 10;

/** Serves a self-request (its `depth`: 1 for one made by a client's request): given by the server a program runs in. */
export type SelfRequestHandler = (request: FetchRequest) => Promise<FetchResult>;

let agent: Dispatcher | null = null;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

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
  const headers: string[] = [];
  for (const field of request.headers) {
    const colon = field.indexOf(':');
    if (colon <= 0) continue;
    headers.push(field.slice(0, colon).trim(), field.slice(colon + 1).trim());
  }
  agent ??= new Agent({ connectTimeout: CONNECT_TIMEOUT_MS });
  const abort = AbortSignal.timeout(Math.max(1, Math.ceil(request.timeoutMs)));
  let target = request.url;
  let method = request.method;
  let body = request.body ?? undefined;
  try {
    for (let hop = 0; ; hop++) {
      let url: URL;
      try {
        url = new URL(target);
      } catch {
        return fail(CURLE.URL_MALFORMAT, `not a URL: ${target}`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail(CURLE.URL_MALFORMAT, `${url.protocol} is not http or https`);
      if (!origins.includes('*') && !origins.includes(url.origin)) {
        return fail(CURLE.REMOTE_ACCESS_DENIED, `${url.origin} is not in the program's fetch_origins${hop ? ` (a redirect led there)` : ''}`);
      }
      const res = await undiciRequest(url, {
        method, headers, body, dispatcher: agent, signal: abort, headersTimeout: request.timeoutMs, bodyTimeout: request.timeoutMs,
      });
      const location = res.headers.location;
      if (request.followRedirects && REDIRECTS.has(res.statusCode) && typeof location === 'string') {
        await res.body.dump();
        if (hop + 1 > MAX_REDIRECTS) return fail(CURLE.TOO_MANY_REDIRECTS, `more than ${MAX_REDIRECTS} redirects`);
        target = new URL(location, url).href;
        // As curl and browsers do: 303, and 301/302 after a POST, go on as a GET without the body.
        if (res.statusCode === 303 || (method === 'POST' && res.statusCode !== 307 && res.statusCode !== 308)) {
          method = 'GET';
          body = undefined;
        }
        continue;
      }
      return await readResponse(res, request.maxBody);
    }
  } catch (e) {
    return fail(curlCode(e as Error), (e as Error).message);
  }
}

/** A response's body, up to `maxBody`, with its status, content type and header block. */
async function readResponse(res: Dispatcher.ResponseData, maxBody: number): Promise<FetchResult> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBody) {
      res.body.destroy();
      return fail(CURLE.WRITE_ERROR, `the body is larger than the ${maxBody} bytes the guest can take`);
    }
    chunks.push(chunk);
  }
  const type = res.headers['content-type'];
  return { ok: true, status: res.statusCode, contentType: (Array.isArray(type) ? type[0] : type) ?? '', headers: headerBlock(res.statusCode, res.headers), body: ownBytes(chunks, size) };
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
