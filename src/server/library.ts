/**
 * The program library of `tskvm serve`: which programs the server offers, where their ELFs come
 * from, their settings (docs/GUEST_ABI.md, "Configuration": snake_case keys), and how requests reach
 * them.
 *
 *   {
 *     "groups":   { "small": { "max_memory": 64, "concurrency": 4 } },
 *     "programs": { "hello": { "filename": "bin/hello", "group": "small", "start": true } },
 *     "routes":   { "/greet": "hello", "/api": { "program": "echo", "arg": "v1" } },
 *     "hosts":    { "hello.example": "hello" }
 *   }
 *
 * The VMOD's own format (its compute.json) is read as is: one flat object where an entry with
 * `filename` or `uri` is a program and any other entry is a group, e.g.
 *
 *   { "small": { "max_memory": 64 }, "hello": { "filename": "bin/hello", "group": "small", "key": "k" } }
 *
 * Either format may carry // and /* *\/ comments, as the VMOD's parser allows.
 *
 * A program's settings are its group's, then its own, then `--configure NAME=JSON` from the
 * command line, each replacing whole keys (arrays are replaced, not appended). Units are the
 * table's (MiB, seconds) and so are ProgramOptions', so values pass through unchanged; only the
 * names change. Range checks are resolveProgramOptions's, reported here under the library's key
 * names. Everything a person can get wrong is a TSKVM_ERR_LIBRARY naming the program and the key;
 * keys tskvm does not know are warnings, so that a library written for the VMOD still loads.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { homedir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { TskvmError } from '../errors.js';
import { cachePath, defaultCacheDir, fetchToCache, isHttpUrl, sha256Hex } from './fetch-cache.js';
import { resolveProgramOptions, type ProgramOptions, type RemapOption, type WarmupOptions } from '../runtime/program-options.js';
import type { AllowedPath } from '../syscalls/path-policy.js';

export interface LibraryProgram {
  name: string;
  group: string;
  /** Absolute path of the ELF (for a program from a URL: its copy in the cache). */
  path: string;
  /** The http(s) URL it is fetched from (fetch-cache.ts), when it comes from one. */
  url?: string;
  /** `path` is a file the library named (not a copy in the cache): a live update is written there, so a restart keeps it. */
  ownFile: boolean;
  /** `key`: the secret a POST with `X-LiveUpdate: KEY` must give to replace the program (live-update.ts); none, no live update. */
  liveUpdateKey?: string;
  /** Lower-case hex digest the ELF must have, when given. */
  sha256?: string;
  /** Start at server boot instead of on the first request. */
  start: boolean;
  /** The query parameter whose value becomes the request's `arg`. */
  argQuery?: string;
  /** Checked; `name` and `group` included. */
  options: ProgramOptions;
}

export interface LibraryTarget {
  program: string;
  arg?: string;
}

export interface Library {
  programs: Map<string, LibraryProgram>;
  /** Path prefixes, longest first, so that the first match is the most specific. */
  routes: Array<LibraryTarget & { prefix: string }>;
  /** Lower-case host names, without a port. */
  hosts: Map<string, LibraryTarget>;
  warnings: string[];
}

export interface LibraryParseOptions {
  /** Relative `filename`s and `allowed_paths` resolve against it: the library file's directory. */
  baseDir: string;
  /** For a library fetched from a URL: relative `filename`s resolve against the URL instead. */
  baseUrl?: string;
  /** Where programs from URLs are cached (default: fetch-cache.ts's defaultCacheDir()). */
  cacheDir?: string;
  /** Where the library came from, for messages. */
  source?: string;
  /** `--configure NAME=JSON`: settings merged over each named program's. */
  configure?: Record<string, Record<string, unknown>>;
}

type Kind = 'number' | 'bool' | 'number-or-bool' | 'string' | 'strings' | 'path' | 'paths' | 'warmup' | 'remapping';

/** Settings a group may hold and a program may override, and the ProgramOptions key each becomes. */
const SETTINGS: Record<string, { kind: Kind; option?: keyof ProgramOptions }> = {
  concurrency: { kind: 'number', option: 'concurrency' },
  max_boot_time: { kind: 'number', option: 'maxBootTime' },
  max_request_time: { kind: 'number', option: 'maxRequestTime' },
  max_memory: { kind: 'number', option: 'maxMemory' },
  max_request_memory: { kind: 'number', option: 'maxRequestMemory' },
  max_request_write: { kind: 'number', option: 'maxRequestWrite' },
  address_space: { kind: 'number', option: 'addressSpace' },
  req_mem_limit_after_reset: { kind: 'number', option: 'reqMemLimitAfterReset' },
  ephemeral: { kind: 'bool', option: 'ephemeral' },
  control_ephemeral: { kind: 'bool', option: 'controlEphemeral' },
  executable_heap: { kind: 'bool', option: 'executableHeap' },
  shared_memory: { kind: 'number', option: 'sharedMemory' },
  hugepages: { kind: 'bool' },
  // [address, MiB] or [address, end address], hex strings; several under one key as an array of them.
  remapping: { kind: 'remapping', option: 'remappings' },
  executable_remapping: { kind: 'remapping', option: 'remappings' },
  // The VMOD's value is the size of a hugepage arena in MiB; older libraries say true or false.
  request_hugepages: { kind: 'number-or-bool' },
  main_arguments: { kind: 'strings', option: 'mainArguments' },
  environment: { kind: 'strings', option: 'environment' },
  allowed_paths: { kind: 'paths', option: 'allowedPaths' },
  current_working_directory: { kind: 'string', option: 'currentWorkingDirectory' },
  stdout: { kind: 'bool', option: 'stdout' },
  verbose_syscalls: { kind: 'bool', option: 'verboseSyscalls' },
  storage: { kind: 'bool', option: 'storage' },
  filename_storage: { kind: 'path', option: 'storageFilename' },
  max_storage_time: { kind: 'number', option: 'maxStorageTime' },
  warmup: { kind: 'warmup', option: 'warmup' },
  // Not in the VMOD's table (docs/GUEST_ABI.md, "Configuration"): the request queue of the embedding
  // API, and the server's own.
  max_queue: { kind: 'number', option: 'maxQueue' },
  fetch_origins: { kind: 'strings', option: 'fetchOrigins' },
  queue_timeout: { kind: 'number', option: 'queueTimeout' },
  start: { kind: 'bool' },
  arg_query: { kind: 'string' },
  // The VMOD's: ephemeral, with the fork's private pages kept between requests, which tskvm's forks
  // always do (req_mem_limit_after_reset bounds them); true sets ephemeral.
  ephemeral_keep_working_memory: { kind: 'bool' },
};

/**
 * The VMOD's keys that tskvm reads and does not act on, each with the reason the warning gives: a
 * library written for the VMOD loads, and says what it will not get.
 */
export const VMOD_IGNORED: Readonly<Record<string, string>> = {
  hugepage_arena_size: 'hugepages are not supported yet; guest memory uses ordinary pages',
  request_hugepage_arena_size: 'hugepages are not supported yet; guest memory uses ordinary pages',
  split_hugepages: 'hugepages are not supported yet; guest memory uses ordinary pages',
  transparent_hugepages: 'hugepages are not supported yet; guest memory uses ordinary pages',
  smp: 'a VM has one vCPU (multiprocess is not supported yet)',
  allow_debug: 'no debugger attaches to a tskvm VM',
  remote_debug_on_exception: 'no debugger attaches to a tskvm VM',
  experimental_keep_working_memory: 'a fork always keeps its private pages between requests (req_mem_limit_after_reset bounds them)',
  relocate_fixed_mmap: 'a MAP_FIXED mapping is made where the program asks, as on Linux',
  blackout_area: 'memory a program may not reach is memory it does not map: blackout areas are not supported',
  verbose: 'use verbose_syscalls, or tskvm run --trace',
  verbose_pagetables: 'tskvm builds its page tables once (see `tskvm platform`)',
  server: 'tskvm serve is the server; a program does not listen on its own socket',
  websocket_server: 'tskvm serve is the server; a program does not listen on its own socket',
  md5: 'only sha256 pins a program\'s bytes',
};

/** Keys of a program that say where it is and which group it is in; a group cannot hold them. */
const PROGRAM_ONLY = new Set(['filename', 'uri', 'sha256', 'group', 'key']);

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** How far a library from a URL is trusted (the command line's say). */
export interface LibraryTrust {
  /** The digest the library's bytes must have (lower-case hex). */
  sha256?: string;
  /** Let a library from plain http:// grant writable paths without a digest. */
  httpMayGrantWrites?: boolean;
}

/**
 * Reads and parses a library file, or fetches it from an http(s) URL. A library is configuration:
 * it decides which host paths programs may write. One from plain http:// can be changed by anyone
 * on the network path, so unless it is pinned by `trust.sha256` (or `httpMayGrantWrites`), a
 * library from there that grants a writable path is refused (TSKVM_ERR_LIBRARY_UNTRUSTED).
 */
export async function loadLibrary(location: string, configure?: LibraryParseOptions['configure'], cacheDir = defaultCacheDir(), trust: LibraryTrust = {}): Promise<Library> {
  if (isHttpUrl(location)) {
    let bytes: Buffer;
    try {
      bytes = await fetchToCache(location, cachePath(cacheDir, location));
    } catch (e) {
      throw new TskvmError('TSKVM_ERR_LIBRARY', `cannot fetch library ${location}: ${(e as Error).message}`);
    }
    if (trust.sha256) {
      const digest = sha256Hex(bytes);
      if (digest !== trust.sha256.toLowerCase()) {
        throw new TskvmError('TSKVM_ERR_LIBRARY_CHECKSUM', `library ${location} has sha256 ${digest}, not the ${trust.sha256} it is pinned to`);
      }
    }
    const json = parseJson(bytes.toString('utf8'), location);
    const options = { baseDir: process.cwd(), baseUrl: location, source: location, cacheDir };
    if (location.startsWith('http:') && !trust.sha256 && !trust.httpMayGrantWrites) {
      // The library's own grants, before --configure (the command line is trusted).
      for (const program of parseLibrary(json, options).programs.values()) {
        const writable = program.options.allowedPaths?.find((p): p is AllowedPath => typeof p !== 'string' && p.writable === true);
        if (writable) {
          throw new TskvmError('TSKVM_ERR_LIBRARY_UNTRUSTED',
            `library ${location} grants program ${program.name} write access to ${writable.real}, but it came over plain http, where anyone on the way can change it: ` +
            'pin it with --library-sha256, serve it over https, or allow this with --trust-http-library');
        }
      }
    }
    return parseLibrary(json, { ...options, configure });
  }
  const path = location.startsWith('file://') ? fileURLToPath(location) : resolvePath(location);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new TskvmError('TSKVM_ERR_LIBRARY', `cannot read library ${path}: ${(e as Error).message}`);
  }
  return parseLibrary(parseJson(text, path), { baseDir: dirname(path), source: path, configure, cacheDir });
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(withoutComments(text));
  } catch (e) {
    throw new TskvmError('TSKVM_ERR_LIBRARY', `library ${source} is not valid JSON: ${(e as Error).message}`);
  }
}

/** JSON with // and /* *\/ comments (which the VMOD's parser accepts) made plain JSON; strings are kept as they are. */
export function withoutComments(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      // An unclosed comment is left for JSON.parse to report.
      if (end < 0) return out + text.slice(i);
      out += ' ';
      i = end + 2;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** `NAME=JSON` from the command line, JSON being an object of settings. */
export function parseConfigure(flag: string): [string, Record<string, unknown>] {
  const eq = flag.indexOf('=');
  const name = flag.slice(0, eq);
  if (eq <= 0) throw new TskvmError('TSKVM_ERR_LIBRARY', `--configure needs NAME=JSON, not ${JSON.stringify(flag)}`);
  let settings: unknown;
  try {
    settings = JSON.parse(flag.slice(eq + 1));
  } catch (e) {
    throw new TskvmError('TSKVM_ERR_LIBRARY', `--configure ${name}: the value is not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(settings)) throw new TskvmError('TSKVM_ERR_LIBRARY', `--configure ${name}: expected a JSON object of settings`);
  return [name, settings];
}

export function parseLibrary(json: unknown, opts: LibraryParseOptions): Library {
  const where = `library${opts.source ? ` ${opts.source}` : ''}`;
  const fail = (what: string, reason: string): never => {
    throw new TskvmError('TSKVM_ERR_LIBRARY', `${where}: ${what}: ${reason}`);
  };
  const warnings: string[] = [];
  if (!isObject(json)) fail('top level', 'expected a JSON object: { "programs": ... } or the VMOD\'s flat object of groups and programs');
  const top = isVmodFormat(json as Record<string, unknown>) ? fromVmodFormat(json as Record<string, unknown>, fail) : json as Record<string, unknown>;
  for (const key of Object.keys(top)) {
    if (!['groups', 'programs', 'routes', 'hosts'].includes(key)) warnings.push(`${where}: unknown top-level key "${key}" (ignored)`);
  }
  const section = (key: string): Record<string, unknown> => {
    const value = top[key] ?? {};
    if (!isObject(value)) fail(`"${key}"`, 'expected an object');
    return value as Record<string, unknown>;
  };

  const groups = new Map<string, Record<string, unknown>>();
  for (const [name, settings] of Object.entries(section('groups'))) {
    const what = `group "${name}"`;
    if (!isObject(settings)) fail(what, 'expected an object of settings');
    const kept: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(settings as Record<string, unknown>)) {
      if (PROGRAM_ONLY.has(key)) warnings.push(`${where}: ${what}: "${key}" belongs to a program, not a group (ignored)`);
      else if (key in VMOD_IGNORED) warnings.push(`${where}: ${what}: "${key}" is ignored: ${VMOD_IGNORED[key]}`);
      else if (!(key in SETTINGS)) warnings.push(`${where}: ${what}: unknown key "${key}" (ignored)`);
      else kept[key] = value;
    }
    groups.set(name, kept);
  }

  const declared = section('programs');
  for (const name of Object.keys(opts.configure ?? {})) {
    if (!(name in declared)) fail(`--configure ${name}`, 'the library has no program of that name');
  }
  const programs = new Map<string, LibraryProgram>();
  for (const [name, own] of Object.entries(declared)) {
    const what = `program "${name}"`;
    if (!NAME.test(name)) fail(what, 'a program name is letters, digits, ".", "_" and "-", starting with a letter or digit (it is a URL path segment)');
    if (!isObject(own)) fail(what, 'expected an object of settings');
    const groupName = (own as Record<string, unknown>).group ?? 'test';
    if (typeof groupName !== 'string') fail(what, `group: expected a group name, not ${JSON.stringify(groupName)}`);
    const group = groups.get(groupName as string);
    // "test" is the default group; it may go undeclared.
    if (!group && groupName !== 'test') fail(what, `group: ${JSON.stringify(groupName)} is not in "groups"`);
    const settings = { ...group, ...(own as Record<string, unknown>), ...opts.configure?.[name] };
    programs.set(name, parseProgram(name, groupName as string, settings, opts, (key, reason) => fail(`${what}: ${key}`, reason), (m) => warnings.push(`${where}: ${what}: ${m}`)));
  }

  const target = (what: string, value: unknown): LibraryTarget => {
    const t = typeof value === 'string' ? { program: value } : value;
    if (!isObject(t) || typeof t.program !== 'string') fail(what, 'expected a program name, or { "program": NAME, "arg": STRING }');
    const { program, arg, ...rest } = t as LibraryTarget & Record<string, unknown>;
    if (!programs.has(program)) fail(what, `program ${JSON.stringify(program)} is not in "programs"`);
    if (arg !== undefined && typeof arg !== 'string') fail(what, `arg: expected a string, not ${JSON.stringify(arg)}`);
    for (const key of Object.keys(rest)) warnings.push(`${where}: ${what}: unknown key "${key}" (ignored)`);
    return arg === undefined ? { program } : { program, arg };
  };
  const routes = Object.entries(section('routes')).map(([prefix, value]) => {
    if (!prefix.startsWith('/')) fail(`route "${prefix}"`, 'a route is a path prefix starting with "/"');
    return { prefix: prefix.length > 1 ? prefix.replace(/\/+$/, '') : prefix, ...target(`route "${prefix}"`, value) };
  }).sort((a, b) => b.prefix.length - a.prefix.length);
  const hosts = new Map(Object.entries(section('hosts')).map(([host, value]) => [host.toLowerCase(), target(`host "${host}"`, value)]));
  return { programs, routes, hosts, warnings };
}

function parseProgram(
  name: string, group: string, settings: Record<string, unknown>, opts: LibraryParseOptions,
  fail: (key: string, reason: string) => never, warn: (message: string) => void,
): LibraryProgram {
  const options: ProgramOptions = { name, group };
  const program: LibraryProgram = { name, group, path: '', ownFile: false, start: false, options };
  for (const [key, value] of Object.entries(settings)) {
    if (key === 'group') continue;
    if (key === 'filename' || key === 'uri') {
      if (typeof value !== 'string' || value === '') fail(key, `expected a ${key === 'uri' ? 'URI' : 'path'}, not ${JSON.stringify(value)}`);
      continue;
    }
    if (key === 'key') {
      if (typeof value !== 'string') fail(key, 'expected a string (the live-update secret)');
      // An empty key is the VMOD's "no live update".
      if (value !== '') program.liveUpdateKey = value as string;
      continue;
    }
    if (key === 'sha256') {
      if (typeof value !== 'string' || !/^[0-9a-f]{64}$/i.test(value)) fail(key, 'expected 64 hex digits');
      program.sha256 = (value as string).toLowerCase();
      continue;
    }
    const setting = SETTINGS[key];
    if (!setting) {
      warn(key in VMOD_IGNORED ? `"${key}" is ignored: ${VMOD_IGNORED[key]}` : `unknown key "${key}" (ignored)`);
      continue;
    }
    const checked = checkKind(setting.kind, value, opts.baseDir);
    if (typeof checked === 'string') fail(key, `${JSON.stringify(value)} is invalid: ${checked}`);
    for (const inner of checked.ignored ?? []) warn(`${key}: unknown key "${inner}" (ignored)`);
    if (setting.kind === 'remapping') {
      const executable = key === 'executable_remapping';
      options.remappings = [...(options.remappings ?? []), ...(checked.value as RemapOption[]).map((r) => ({ ...r, executable }))];
    } else if (setting.option) {
      (options as Record<string, unknown>)[setting.option] = checked.value;
    }
  }
  const source = programSource(settings, opts, fail);
  program.path = source.path;
  program.ownFile = source.ownFile;
  if (source.url) program.url = source.url;
  program.start = settings.start === true;
  if (typeof settings.arg_query === 'string') program.argQuery = settings.arg_query;
  if (settings.ephemeral_keep_working_memory === true) options.ephemeral = true;
  if (settings.hugepages === true || (settings.request_hugepages !== undefined && settings.request_hugepages !== false && settings.request_hugepages !== 0)) {
    warn('hugepages are not supported yet; guest memory uses ordinary pages');
  }
  try {
    resolveProgramOptions(program.path, options);
  } catch (e) {
    if (!(e instanceof TskvmError)) throw e;
    // resolveProgramOptions names its camelCase option; say the key as the library spells it.
    const option = e.details.key;
    const key = Object.keys(SETTINGS).find((k) => SETTINGS[k]!.option === option) ?? String(option).replace('warmup.numRequests', 'warmup.num_requests');
    fail(key, e.message.startsWith(`${String(option)}: `) ? e.message.slice(String(option).length + 2) : e.message);
  }
  return program;
}

/** Where the ELF is: a local path, or a URL and the path of its cached copy. */
function programSource(settings: Record<string, unknown>, opts: LibraryParseOptions, fail: (key: string, reason: string) => never): { path: string; url?: string; ownFile: boolean } {
  const { filename, uri } = settings as { filename?: string; uri?: string };
  const fromUrl = (url: string): { path: string; url: string; ownFile: boolean } => ({ url, path: cachePath(opts.cacheDir ?? defaultCacheDir(), url), ownFile: false });
  if (filename !== undefined && uri !== undefined) {
    // The VMOD's caching idiom: the program is downloaded from `uri` into the local `filename`, which
    // is revalidated against the origin (If-Modified-Since) at each start, and kept when it fails.
    if (!isHttpUrl(uri)) fail('uri', `${uri}: with "filename", "uri" must be http:// or https://`);
    return { url: uri, path: resolvePath(opts.baseDir, expandVars(filename)), ownFile: true };
  }
  if (filename !== undefined) return opts.baseUrl ? fromUrl(new URL(filename, opts.baseUrl).href) : { path: resolvePath(opts.baseDir, expandVars(filename)), ownFile: true };
  if (uri === undefined) fail('filename', 'a program needs "filename" (a path) or "uri"');
  if (isHttpUrl(uri!)) return fromUrl(uri!);
  if (!uri!.startsWith('file://')) fail('uri', `${uri}: expected a file://, http:// or https:// URI`);
  try {
    return { path: fileURLToPath(uri!), ownFile: false };
  } catch (e) {
    return fail('uri', `${uri}: ${(e as Error).message}`);
  }
}

/**
 * One VMOD remapping: ["0xC000000000", 256] (an address and MiB) or ["0xC000000000", "0xD000000000"]
 * (an address and the end), addresses in hex; a third element "storage" (the VMOD's storage VM only)
 * is refused rather than given to every VM.
 */
function remapping(entry: unknown): RemapOption | string {
  const hex = (v: unknown): number => (typeof v === 'string' && /^(0x)?[0-9a-f]+$/i.test(v) ? Number.parseInt(v.replace(/^0x/i, ''), 16) : NaN);
  if (!Array.isArray(entry) || entry.length < 2 || entry.length > 3) return 'expected ["address", MiB] or ["address", "end address"]';
  if (entry.length === 3) return entry[2] === 'storage' ? 'remappings for the storage VM only are not supported' : `unknown kind ${JSON.stringify(entry[2])}`;
  const address = hex(entry[0]);
  const sizeMiB = typeof entry[1] === 'number' ? entry[1] : (hex(entry[1]) - address) / 2 ** 20;
  if (!Number.isSafeInteger(address) || !(sizeMiB > 0)) return `${JSON.stringify(entry)}: expected a hex address and a size in MiB, or an end address above it`;
  return { address, sizeMiB };
}

/** The value, checked for its type (ranges are resolveProgramOptions's job), or why it is wrong; `ignored`: keys inside it tskvm does not know. */
function checkKind(kind: Kind, value: unknown, baseDir: string): { value: unknown; ignored?: string[] } | string {
  switch (kind) {
    case 'number': return typeof value === 'number' && Number.isFinite(value) ? { value } : 'expected a number';
    case 'bool': return typeof value === 'boolean' ? { value } : 'expected true or false';
    case 'number-or-bool': return typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value)) ? { value } : 'expected a number (MiB) or true or false';
    case 'string': return typeof value === 'string' ? { value } : 'expected a string';
    case 'strings': return Array.isArray(value) && value.every((v) => typeof v === 'string') ? { value } : 'expected an array of strings';
    case 'path': return typeof value === 'string' && value !== '' ? { value: hostPath(value, baseDir) } : 'expected a path';
    case 'paths': {
      if (!Array.isArray(value)) return 'expected an array of paths or { "real", "virtual", "prefix", "writable", "symlink" } objects';
      const paths: AllowedPath[] = [];
      for (const entry of value) {
        const p = typeof entry === 'string' ? { real: entry } : entry;
        if (!isObject(p) || typeof p.real !== 'string') return `${JSON.stringify(entry)}: expected a path or an object with "real"`;
        const { real, virtual, prefix, writable, symlink, ...rest } = p as AllowedPath & Record<string, unknown>;
        if (virtual !== undefined && typeof virtual !== 'string') return `${JSON.stringify(entry)}: "virtual" must be a string`;
        if ([prefix, writable, symlink].some((flag) => flag !== undefined && typeof flag !== 'boolean')) {
          return `${JSON.stringify(entry)}: "prefix", "writable" and "symlink" must be true or false`;
        }
        if (Object.keys(rest).length) return `${JSON.stringify(entry)}: unknown key "${Object.keys(rest)[0]}"`;
        // A symlink's `real` is its text, a path in the guest's view: not a host path to resolve.
        const resolved: AllowedPath = { real: symlink ? real : hostPath(real, baseDir) };
        if (virtual !== undefined) resolved.virtual = virtual;
        if (prefix !== undefined) resolved.prefix = prefix;
        if (writable !== undefined) resolved.writable = writable;
        if (symlink !== undefined) resolved.symlink = symlink;
        paths.push(resolved);
      }
      return { value: paths };
    }
    case 'remapping': {
      const entries = Array.isArray(value) && Array.isArray(value[0]) ? value as unknown[] : [value];
      const remaps: RemapOption[] = [];
      for (const entry of entries) {
        const parsed = remapping(entry);
        if (typeof parsed === 'string') return parsed;
        remaps.push(parsed);
      }
      return { value: remaps };
    }
    case 'warmup': {
      if (!isObject(value)) return 'expected an object: { "num_requests", "url", "method", "headers" }';
      const { num_requests: numRequests, url, method, headers, ...rest } = value;
      if (numRequests !== undefined && (typeof numRequests !== 'number' || !Number.isFinite(numRequests))) return '"num_requests" must be a number';
      if ((url !== undefined && typeof url !== 'string') || (method !== undefined && typeof method !== 'string')) return '"url" and "method" must be strings';
      if (headers !== undefined && (!Array.isArray(headers) || headers.some((h) => typeof h !== 'string'))) return '"headers" must be an array of "Key: value" strings';
      const warmup: WarmupOptions = {};
      if (numRequests !== undefined) warmup.numRequests = numRequests as number;
      if (url !== undefined) warmup.url = url as string;
      if (method !== undefined) warmup.method = method as string;
      if (headers !== undefined) warmup.headers = headers as string[];
      return { value: warmup, ignored: Object.keys(rest) };
    }
  }
}

/** A host path from a library: variables expanded, and relative to the library, so that a library and its data move together. */
function hostPath(path: string, baseDir: string): string {
  const expanded = expandVars(path);
  return isAbsolute(expanded) ? expanded : resolvePath(baseDir, expanded);
}

/** `$HOME` and `$PWD` (also as `${HOME}`, `${PWD}`) in a host path, as the VMOD expands them. */
function expandVars(path: string): string {
  return path.replace(/\$(?:\{(HOME|PWD)\}|(HOME|PWD)\b)/g, (_, a: string | undefined, b: string | undefined) => ((a ?? b) === 'HOME' ? process.env.HOME ?? homedir() : process.cwd()));
}

/** tskvm's own format has a "programs" object of program entries; anything else is the VMOD's flat object. */
function isVmodFormat(top: Record<string, unknown>): boolean {
  return !('programs' in top) || isProgramEntry(top.programs);
}

function isProgramEntry(entry: unknown): boolean {
  return isObject(entry) && ('filename' in entry || 'uri' in entry);
}

/** The VMOD's flat object as tskvm's { groups, programs }: an entry with `filename` or `uri` is a program, any other a group. */
function fromVmodFormat(top: Record<string, unknown>, fail: (what: string, reason: string) => never): Record<string, unknown> {
  const groups: Record<string, unknown> = {};
  const programs: Record<string, unknown> = {};
  for (const [name, entry] of Object.entries(top)) {
    if (isProgramEntry(entry)) programs[name] = vmodPaths(entry as Record<string, unknown>);
    else if (isObject(entry) && 'group' in entry) fail(`program "${name}"`, 'it names a group but has neither "filename" nor "uri": nothing to run');
    else groups[name] = isObject(entry) ? vmodPaths(entry) : entry;
  }
  return { groups, programs };
}

/**
 * The VMOD's allowed_paths: an entry is that file or directory only, unless it says `prefix` — stricter
 * than tskvm's own format, where a directory covers what is below it. So a library written for the
 * VMOD grants here exactly what it granted there.
 */
function vmodPaths(settings: Record<string, unknown>): Record<string, unknown> {
  const paths = settings.allowed_paths;
  if (!Array.isArray(paths)) return settings;
  const exact = paths.map((p) => (typeof p === 'string' ? { real: p, prefix: false }
    : isObject(p) && p.prefix === undefined && p.symlink !== true ? { ...p, prefix: false } : p));
  return { ...settings, allowed_paths: exact };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
