/**
 * Admin and observability endpoints:
 *
 *   GET  /__tskvm/stats?program=REGEX       statistics as JSON
 *   GET  /metrics                           the same in Prometheus text format
 *   POST /__tskvm/invalidate?program=REGEX  unload the programs whose names match; the next request reloads
 *   POST /__tskvm/update/NAME               body: a new ELF for program NAME; it must boot and reach
 *                                           wait_for_requests before it replaces the running one
 *
 * They all need the admin token (`Authorization: Bearer TOKEN`) on TCP: 401 without credentials, 403
 * with wrong ones, and 403 when the server has no token. A Unix socket listener is trusted (its file
 * permissions decide who connects). REGEX is a JavaScript regular expression, unanchored; no
 * parameter means every program.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { prometheusText, statsReport, type GlobalCounters } from './metrics.js';
import type { ProgramSlot } from './program-slot.js';

export interface AdminContext {
  slots: Map<string, ProgramSlot>;
  counters: GlobalCounters;
  adminToken: string | undefined;
  /** Reads the request body within the server's limit; null when it is too large. */
  readBody: () => Promise<Buffer | null>;
}

export interface AdminAnswer {
  status: number;
  headers?: Record<string, string>;
  /** JSON-encoded when it is not a string. */
  body: unknown;
}

export function isAdminPath(path: string): boolean {
  return path === '/metrics' || path.startsWith('/__tskvm/');
}

export async function handleAdmin(ctx: AdminContext, req: IncomingMessage, path: string, query: URLSearchParams, viaUnixSocket: boolean): Promise<AdminAnswer> {
  const denied = authorize(ctx.adminToken, req.headers.authorization, viaUnixSocket);
  if (denied) return denied;
  let filter: RegExp;
  try {
    filter = new RegExp(query.get('program') ?? '');
  } catch (e) {
    return { status: 400, body: { error: `program: not a regular expression: ${(e as Error).message}` } };
  }
  if (path.startsWith(UPDATE_PREFIX)) return req.method === 'POST' ? update(ctx, decodeURIComponent(path.slice(UPDATE_PREFIX.length))) : { status: 405, headers: { allow: 'POST' }, body: { error: `${req.method} is not allowed here` } };
  const matching = [...ctx.slots.values()].filter((s) => filter.test(s.entry.name));
  const endpoint = `${req.method} ${path}`;
  switch (endpoint) {
    case 'GET /__tskvm/stats': return { status: 200, body: statsReport(ctx.counters, matching) };
    case 'GET /metrics': return { status: 200, headers: { 'content-type': 'text/plain; version=0.0.4' }, body: prometheusText(statsReport(ctx.counters, matching)) };
    case 'POST /__tskvm/invalidate': {
      // Answer once they are unloaded, not once their last requests are done: close() waits for those.
      const invalidated = matching.filter((s) => s.state !== 'idle').map((s) => s.entry.name);
      for (const slot of matching) void slot.invalidate().catch(() => undefined);
      return { status: 200, body: { invalidated } };
    }
  }
  const known = ['GET /__tskvm/stats', 'GET /metrics', 'POST /__tskvm/invalidate'];
  const samePath = known.filter((k) => k.endsWith(` ${path}`));
  if (samePath.length) return { status: 405, headers: { allow: samePath.map((k) => k.split(' ')[0]!).join(', ') }, body: { error: `${req.method} is not allowed here` } };
  return { status: 404, body: { error: `no admin endpoint ${path}` } };
}

const UPDATE_PREFIX = '/__tskvm/update/';

async function update(ctx: AdminContext, name: string): Promise<AdminAnswer> {
  const slot = ctx.slots.get(name);
  if (!slot) return { status: 404, body: { error: `no program ${name}` } };
  const file = await ctx.readBody();
  if (!file) return { status: 413, body: { error: 'the new program is larger than the request body limit' } };
  if (file.length === 0) return { status: 400, body: { error: 'the body must be the new ELF' } };
  try {
    await slot.update(file);
    return { status: 200, body: { updated: name, bytes: file.length } };
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return { status: 422, body: { error: `program ${name} was not updated: the new one failed to start [${err.code ?? 'error'}]: ${err.message}` } };
  }
}

function authorize(token: string | undefined, authorization: string | undefined, viaUnixSocket: boolean): AdminAnswer | null {
  if (viaUnixSocket) return null;
  if (token === undefined) return { status: 403, body: { error: 'admin endpoints are only served on the Unix socket when the server has no --admin-token' } };
  const given = /^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1];
  if (given === undefined) {
    return { status: 401, headers: { 'www-authenticate': 'Bearer realm="tskvm"' }, body: { error: 'admin endpoints need Authorization: Bearer <admin token>' } };
  }
  if (!sameSecret(given, token)) return { status: 403, body: { error: 'wrong admin token' } };
  return null;
}

/** Compares a secret a client gave with the one configured, in time that does not depend on where they differ. */
export function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
