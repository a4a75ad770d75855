/**
 * The benchmark's cases file (guest/examples/bench.json): which requests `tskvm bench` sends to
 * which programs of a library, and where the native builds of those programs are.
 *
 *   {
 *     "library": "library.json",          the programs, with their settings (relative paths: to this file)
 *     "loop_dir": "bin/loop",             PROGRAM linked with guest/bench/loop-host.c, per program name
 *     "spawn_loop": "bin/spawn-loop",     guest/bench/spawn-loop.c
 *     "requests": 200, "warmup": 5,       defaults for every case
 *     "cases": [{
 *       "name": "zstd 1 MiB", "program": "zstd",
 *       "method": "POST", "path": "/zstd/", "arg": "compress", "body": "bin/inputs/prose-1m.txt",
 *       "headers": ["K: v"], "content_type": "…",
 *       "native_args": ["compress"],       argv[1..] of the native program (run in this file's directory)
 *       "requests": 100,                   this case's own count
 *       "check": { "http": "status" },     per mode (or "all"): compare the whole body (default) or the status
 *       "reference": { "label": "lua5.4 process", "command": ["lua5.4", "-"] }   another process to time
 *       "origin": true                     the run starts a local HTTP origin (origin.ts): "{origin}" in
 *                                          the body becomes its URL, and the program may fetch from it
 *     }]
 *   }
 *
 * Every request of every mode is the same: one method, URL, arg and body. The URL the programs see is
 * `path`, plus `?<arg_query>=<arg>` when the case has an arg and the library names an arg_query, since
 * that is how the arg reaches the program over HTTP.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve as resolvePath } from 'node:path';
import { TskvmError } from '../errors.js';
import { loadLibrary, type Library, type LibraryProgram } from '../server/library.js';

/** The ways one request is served, in the order they run and are reported. */
export const MODES = ['native-loop', 'native-spawn', 'reference', 'tskvm-ephemeral', 'tskvm-persistent', 'tskvm-http'] as const;
export type Mode = (typeof MODES)[number];

export const MODE_LABELS: Record<Mode, string> = {
  'native-loop': 'native loop',
  'native-spawn': 'process per request',
  reference: 'reference process',
  'tskvm-ephemeral': 'tskvm ephemeral',
  'tskvm-persistent': 'tskvm persistent',
  'tskvm-http': 'tskvm serve (HTTP)',
};

export type Check = 'body' | 'status';

export interface BenchCase {
  name: string;
  program: LibraryProgram;
  method: string;
  /** What the program sees as the URL (path and query). */
  url: string;
  arg: string;
  headers: string[];
  contentType: string;
  /** The body's file, or null for none. */
  bodyFile: string | null;
  body: Buffer | null;
  nativeArgs: string[];
  requests: number;
  warmup: number;
  check: Partial<Record<Mode | 'all', Check>>;
  reference: { label: string; command: string[] } | null;
  /** Native build of the program's handler with the loop host. */
  loopBinary: string;
  /** The case fetches from the run's local origin (withOrigin). */
  origin: boolean;
}

export interface BenchSuite {
  file: string;
  /** Where native programs run and relative paths resolve: the cases file's directory. */
  dir: string;
  library: Library;
  libraryFile: string;
  spawnLoop: string;
  cases: BenchCase[];
}

export interface SuiteOverrides {
  /** Only these cases (by case name or program name). */
  only?: string[];
  requests?: number;
  warmup?: number;
}

/**
 * The case as it runs against the origin at `url`: "{origin}" in its body replaced (the body file the
 * native modes read is written again, into `dir`), and the origin added to the program's fetch_origins.
 */
export function withOrigin(c: BenchCase, url: string, dir: string): BenchCase {
  if (!c.origin) return c;
  const body = c.body ? Buffer.from(c.body.toString('latin1').replaceAll('{origin}', url), 'latin1') : null;
  const bodyFile = body ? join(dir, `${basename(c.loopBinary)}.body`) : null;
  if (body) writeFileSync(bodyFile!, body);
  const options = { ...c.program.options, fetchOrigins: [...(c.program.options.fetchOrigins ?? []), url] };
  return { ...c, body, bodyFile, program: { ...c.program, options } };
}

export function checkFor(c: BenchCase, mode: Mode): Check {
  return c.check[mode] ?? c.check.all ?? 'body';
}

export async function loadSuite(file: string, overrides: SuiteOverrides = {}): Promise<BenchSuite> {
  const path = resolvePath(file);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new TskvmError('TSKVM_ERR_BENCH', `cannot read the cases file ${path}: ${(e as Error).message}`);
  }
  const dir = dirname(path);
  const at = (p: string): string => resolvePath(dir, p);
  const field = <T>(o: Record<string, unknown>, key: string, type: string, fallback: T, where: string): T => {
    const v = o[key];
    if (v === undefined) return fallback;
    const ok = type === 'string[]' ? Array.isArray(v) && v.every((x) => typeof x === 'string')
      : type === 'count' ? Number.isInteger(v) && (v as number) >= 0 : typeof v === type;
    if (!ok) throw new TskvmError('TSKVM_ERR_BENCH', `${where}: "${key}" must be ${type === 'count' ? 'a whole number ≥ 0' : `a ${type}`}`);
    return v as T;
  };

  const libraryFile = at(field(json, 'library', 'string', 'library.json', path));
  const library = await loadLibrary(libraryFile);
  const loopDir = at(field(json, 'loop_dir', 'string', 'bin/loop', path));
  const requests = overrides.requests ?? field(json, 'requests', 'count', 100, path);
  const warmup = overrides.warmup ?? field(json, 'warmup', 'count', 5, path);
  if (!Array.isArray(json.cases)) throw new TskvmError('TSKVM_ERR_BENCH', `${path}: "cases" must be a list`);

  const cases: BenchCase[] = [];
  for (const [i, raw] of (json.cases as Record<string, unknown>[]).entries()) {
    const where = `${path}: case ${i + 1}`;
    const programName = field(raw, 'program', 'string', '', where);
    const name = field(raw, 'name', 'string', programName, where);
    if (overrides.only && !overrides.only.some((o) => o === name || o === programName)) continue;
    const program = library.programs.get(programName);
    if (!program) throw new TskvmError('TSKVM_ERR_BENCH', `${where} (${name}): no program "${programName}" in ${libraryFile}`);
    const arg = field(raw, 'arg', 'string', '', where);
    const path0 = field(raw, 'path', 'string', `/${programName}/`, where);
    const url = arg && program.argQuery ? `${path0}${path0.includes('?') ? '&' : '?'}${program.argQuery}=${encodeURIComponent(arg)}` : path0;
    const bodyName = field<string | null>(raw, 'body', 'string', null, where);
    const bodyFile = bodyName === null ? null : at(bodyName);
    let body: Buffer | null = null;
    if (bodyFile) {
      try {
        body = readFileSync(bodyFile);
      } catch (e) {
        throw new TskvmError('TSKVM_ERR_BENCH', `${where} (${name}): cannot read the body ${bodyFile}: ${(e as Error).message} (built by make -C guest/examples?)`);
      }
    }
    const check = field<Record<string, unknown>>(raw, 'check', 'object', {}, where);
    for (const [mode, how] of Object.entries(check)) {
      if (!(mode === 'all' || (MODES as readonly string[]).includes(mode)) || (how !== 'body' && how !== 'status')) {
        throw new TskvmError('TSKVM_ERR_BENCH', `${where} (${name}): "check" maps a mode (${MODES.join(', ')}, all) to "body" or "status"`);
      }
    }
    const reference = field<Record<string, unknown> | null>(raw, 'reference', 'object', null, where);
    if (reference && !(typeof reference.label === 'string' && Array.isArray(reference.command) && reference.command.length > 0)) {
      throw new TskvmError('TSKVM_ERR_BENCH', `${where} (${name}): "reference" needs a "label" and a "command" list`);
    }
    const headers = field<string[]>(raw, 'headers', 'string[]', [], where);
    cases.push({
      name,
      program,
      method: field(raw, 'method', 'string', bodyFile ? 'POST' : 'GET', where),
      url,
      arg,
      headers,
      contentType: field(raw, 'content_type', 'string', '', where),
      bodyFile,
      body,
      nativeArgs: field(raw, 'native_args', 'string[]', [], where),
      requests: overrides.requests ?? field(raw, 'requests', 'count', requests, where),
      warmup,
      check: check as BenchCase['check'],
      reference: reference as BenchCase['reference'],
      loopBinary: resolvePath(loopDir, programName),
      origin: field(raw, 'origin', 'boolean', false, where),
    });
  }
  if (overrides.only) {
    const missing = overrides.only.filter((o) => !cases.some((c) => c.name === o || c.program.name === o));
    if (missing.length) throw new TskvmError('TSKVM_ERR_BENCH', `no case or program named ${missing.join(', ')} in ${path}`);
  }
  return { file: path, dir, library, libraryFile, spawnLoop: at(field(json, 'spawn_loop', 'string', 'bin/spawn-loop', path)), cases };
}
