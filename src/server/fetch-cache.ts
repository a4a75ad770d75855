/**
 * Programs and libraries from http(s) URLs, fetched with undici into a local cache.
 *
 *   <cache>/<sha256 of the URL>        the bytes last fetched
 *   <cache>/<sha256 of the URL>.json   { url, lastModified, etag } for revalidation
 *
 * A program entry with both `filename` and `uri` (the VMOD's idiom) keeps its copy at `filename`
 * instead, with the same record beside it.
 *
 * Each fetch revalidates (If-Modified-Since / If-None-Match): a 304 keeps the cached copy, a 200
 * replaces it (written to a temporary name, then renamed, so a reader never sees half a file).
 * When the origin cannot be reached but a copy is cached, the copy is used and a warning says so.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { TskvmError } from '../errors.js';

/** Largest program or library we download. */
const MAX_DOWNLOAD = 512 * 1024 * 1024;
const TIMEOUT_MS = 30_000;

export function isHttpUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

/** TSKVM_CACHE, else $XDG_CACHE_HOME/tskvm, else ~/.cache/tskvm. */
export function defaultCacheDir(): string {
  return process.env.TSKVM_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'tskvm');
}

/** Lower-case hex SHA-256: the digests libraries and programs are pinned with, and cache names. */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Where the copy of `url` lives in `cacheDir`. */
export function cachePath(cacheDir: string, url: string): string {
  return join(cacheDir, sha256Hex(url));
}

interface Meta {
  url: string;
  lastModified?: string;
  etag?: string;
}

/** Brings the cached copy of `url` at `path` up to date; returns its bytes. */
export async function fetchToCache(url: string, path: string, warn: (m: string) => void = () => {}): Promise<Buffer> {
  const metaPath = `${path}.json`;
  const info = await stat(path).catch(() => null);
  const cached = info !== null;
  const meta: Meta = cached ? await readFile(metaPath, 'utf8').then((t) => JSON.parse(t) as Meta, () => ({ url })) : { url };
  const headers: Record<string, string> = {};
  // A file put there by hand (or by the VMOD: a library's `filename` with `uri`) has no record: its mtime stands in.
  if (cached) headers['if-modified-since'] = meta.lastModified ?? info.mtime.toUTCString();
  if (cached && meta.etag) headers['if-none-match'] = meta.etag;
  let res;
  try {
    res = await request(url, { headers, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
  } catch (e) {
    if (cached) {
      warn(`${url}: ${(e as Error).message}; using the cached copy`);
      return readFile(path);
    }
    throw new TskvmError('TSKVM_ERR_PROGRAM_FETCH', `cannot fetch ${url}: ${(e as Error).message}`);
  }
  if (res.statusCode === 304 && cached) {
    await res.body.dump();
    return readFile(path);
  }
  if (res.statusCode !== 200) {
    await res.body.dump();
    if (cached) {
      warn(`${url}: HTTP ${res.statusCode}; using the cached copy`);
      return readFile(path);
    }
    throw new TskvmError('TSKVM_ERR_PROGRAM_FETCH', `cannot fetch ${url}: HTTP ${res.statusCode}`);
  }
  const declared = Number(res.headers['content-length'] ?? 0);
  if (declared > MAX_DOWNLOAD) {
    await res.body.dump();
    throw new TskvmError('TSKVM_ERR_PROGRAM_FETCH', `${url} is ${declared} bytes, more than ${MAX_DOWNLOAD}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_DOWNLOAD) throw new TskvmError('TSKVM_ERR_PROGRAM_FETCH', `${url} is larger than ${MAX_DOWNLOAD} bytes`);
    chunks.push(chunk);
  }
  const bytes = Buffer.concat(chunks, size);
  const header = (name: string): string | undefined => {
    const v = res.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  mkdirSync(join(path, '..'), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
  await writeFile(metaPath, JSON.stringify({ url, lastModified: header('last-modified'), etag: header('etag') } satisfies Meta));
  return bytes;
}
