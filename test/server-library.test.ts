// The program library of `tskvm serve` (settings, inheritance, errors), routing, and the start/backoff
// logic of a program slot: pure logic, no KVM.
import t, { type Test } from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TskvmError } from '../src/errors.js';
import type { Program } from '../src/runtime/program.js';
import { loadLibrary, parseConfigure, parseLibrary, withoutComments, type LibraryProgram } from '../src/server/library.js';
import { programBytes, ProgramSlot } from '../src/server/program-slot.js';
import { Router } from '../src/server/router.js';

const base = { baseDir: '/lib' };

function libraryError(t: Test, json: unknown, pattern: RegExp, label: string, configure?: Record<string, Record<string, unknown>>): void {
  try {
    parseLibrary(json, { ...base, configure });
    t.fail(`${label}: no error`);
  } catch (e) {
    t.equal((e as TskvmError).code, 'TSKVM_ERR_LIBRARY', `${label}: code`);
    t.match((e as Error).message, pattern, `${label}: ${(e as Error).message}`);
  }
}

t.test('settings: snake_case keys become ProgramOptions; group inheritance; --configure on top', async (t) => {
  const lib = parseLibrary({
    groups: { g: { max_memory: 128, concurrency: 4, environment: ['A=1'], stdout: true } },
    programs: {
      p: {
        filename: 'bin/p', group: 'g', concurrency: 3, max_boot_time: 2.5, max_request_time: 0.5, max_request_memory: 8,
        req_mem_limit_after_reset: 16, ephemeral: false, control_ephemeral: true, shared_memory: 2, main_arguments: ['-x'],
        allowed_paths: ['data', { real: '/etc/hosts', virtual: '/hosts', writable: false }], current_working_directory: '/tmp',
        verbose_syscalls: false, max_queue: 5, queue_timeout: 3, start: true, arg_query: 'a',
      },
      q: { uri: 'file:///opt/q' },
    },
  }, { ...base, configure: { p: { concurrency: 7, environment: ['B=2'] } } });
  const p = lib.programs.get('p')!;
  t.equal(p.path, '/lib/bin/p', 'filename relative to the library');
  t.equal(p.start, true);
  t.equal(p.argQuery, 'a');
  t.same(p.options, {
    name: 'p', group: 'g', maxMemory: 128, concurrency: 7, environment: ['B=2'], stdout: true, maxBootTime: 2.5, maxRequestTime: 0.5,
    maxRequestMemory: 8, reqMemLimitAfterReset: 16, ephemeral: false, controlEphemeral: true, sharedMemory: 2, mainArguments: ['-x'],
    allowedPaths: [{ real: '/lib/data' }, { real: '/etc/hosts', virtual: '/hosts', writable: false }], currentWorkingDirectory: '/tmp',
    verboseSyscalls: false, maxQueue: 5, queueTimeout: 3,
  });
  const q = lib.programs.get('q')!;
  t.equal(q.path, '/opt/q');
  t.equal(q.group, 'test', 'default group, undeclared');
  t.equal(q.start, false);
  t.same(lib.warnings, []);
});

t.test('unknown keys warn, naming program (or group) and key', async (t) => {
  const lib = parseLibrary({
    groups: { g: { colour: 'red', filename: 'x' } },
    programs: { p: { filename: 'p', group: 'g', turbo: true, hugepages: true, address_space: 512, warmup: { url: '/w', colour: 'red' } } },
    extra: 1,
  }, base);
  t.match(lib.warnings, [
    /unknown top-level key "extra"/,
    /group "g": unknown key "colour"/,
    /group "g": "filename" belongs to a program/,
    /program "p": unknown key "turbo"/,
    /program "p": warmup: unknown key "colour" \(ignored\)/,
    /program "p": hugepages are not supported yet/,
  ]);
  t.equal(lib.warnings.length, 6, 'address_space is a setting now: no warning');
});

t.test("the VMOD's own compute.json loads as is: flat groups and programs, comments, $HOME, every key it knows", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-vmodlib-'));
  // Every key of the VMOD's configuration, as its documentation and parser name them.
  const everyKey = {
    max_boot_time: 4.0, max_request_time: 2.0, max_storage_time: 5.0, max_memory: 64, address_space: 64, max_request_memory: 16,
    req_mem_limit_after_reset: 32, shared_memory: 2, concurrency: 2, storage: true, filename_storage: 'storage/hello.storage', hugepages: false, hugepage_arena_size: 4,
    request_hugepages: 2, request_hugepage_arena_size: 2, split_hugepages: false, transparent_hugepages: true, stdout: false,
    smp: 2, allow_debug: false, remote_debug_on_exception: false, control_ephemeral: true, ephemeral: true,
    ephemeral_keep_working_memory: true, experimental_keep_working_memory: true, relocate_fixed_mmap: true,
    main_arguments: ['--serve'], environment: ['MODE=vmod'], remapping: ['0xC000000000', 4], executable_remapping: ['0xD000000000', 4],
    blackout_area: ['0xE000000000', 4], executable_heap: false, allowed_paths: ['$PWD/data', { real: '${HOME}/models', virtual: '/models', prefix: true }],
    verbose: false, verbose_syscalls: false, verbose_pagetables: false, server: { port: 8081 }, websocket_server: { port: 8082 },
    warmup: { num_requests: 5, url: '/warm' },
  };
  const text = `{
    // groups: entries without a filename or uri
    "small": { "max_memory": 64, "concurrency": 2 },
    /* programs */
    "hello": ${JSON.stringify({ filename: '$HOME/bin/hello', group: 'small', key: 'secret', ...everyKey })},
    "cached": { "uri": "https://example.com/cached.elf", "filename": "cache/cached.elf", "group": "small" },
    "plain": { "filename": "bin/plain" } // group "test", built in
  }`;
  writeFileSync(join(dir, 'compute.json'), text);
  const lib = await loadLibrary(join(dir, 'compute.json'), undefined, join(dir, 'cache-dir'));
  t.same([...lib.programs.keys()].sort(), ['cached', 'hello', 'plain'], 'three programs; "small" is a group');
  const hello = lib.programs.get('hello')!;
  t.equal(hello.path, join(process.env.HOME!, 'bin/hello'), '$HOME in filename');
  t.equal(hello.group, 'small');
  t.match(hello.options, {
    maxMemory: 64, maxBootTime: 4, maxRequestTime: 2, maxRequestMemory: 16, reqMemLimitAfterReset: 32, sharedMemory: 2, concurrency: 2,
    controlEphemeral: true, ephemeral: true, storage: true, maxStorageTime: 5, storageFilename: join(dir, 'storage/hello.storage'), mainArguments: ['--serve'], environment: ['MODE=vmod'], executableHeap: false,
    allowedPaths: [{ real: join(process.cwd(), 'data'), prefix: false }, { real: join(process.env.HOME!, 'models'), virtual: '/models', prefix: true }],
    warmup: { numRequests: 5, url: '/warm' },
    remappings: [{ address: 0xc000000000, sizeMiB: 4, executable: false }, { address: 0xd000000000, sizeMiB: 4, executable: true }],
  }, 'the keys tskvm implements take effect ($PWD and ${HOME} in allowed_paths)');
  const cached = lib.programs.get('cached')!;
  t.equal(cached.url, 'https://example.com/cached.elf', 'uri with filename: fetched from the uri');
  t.equal(cached.path, join(dir, 'cache/cached.elf'), 'into the filename, relative to the library');
  t.equal(lib.programs.get('plain')!.group, 'test');
  t.same(lib.warnings.filter((w) => /unknown key/.test(w)), [], 'no key of the VMOD is unknown');
  t.equal(hello.liveUpdateKey, 'secret', 'key: the live-update secret');
  const ignored = ['hugepage_arena_size', 'request_hugepage_arena_size', 'split_hugepages',
    'transparent_hugepages', 'smp', 'allow_debug', 'remote_debug_on_exception', 'experimental_keep_working_memory',
    'relocate_fixed_mmap', 'blackout_area', 'verbose', 'verbose_pagetables', 'server',
    'websocket_server'];
  for (const key of ignored) t.ok(lib.warnings.some((w) => w.includes(`program "hello": "${key}" is ignored: `)), `${key}: a warning names it and says why`);
  t.ok(lib.warnings.some((w) => /program "hello": hugepages are not supported yet/.test(w)), 'request_hugepages as MiB: accepted, with a warning');
  libraryError(t, { web: { group: 'small' }, small: {} }, /program "web": it names a group but has neither "filename" nor "uri"/, 'a program without a source');
  t.same([...parseLibrary({}, base).programs.keys()], [], 'an empty library: no programs');
  t.same(JSON.parse(withoutComments('{"u": "http://x/*y*/", "q": "a\\"//b", /* c */ "v": 1 // end\n}')), { u: 'http://x/*y*/', q: 'a"//b', v: 1 },
    'comments go, strings that look like them stay');
});

t.test('malformed libraries: each error names the program and the key', async (t) => {
  const prog = (settings: Record<string, unknown>) => ({ programs: { web: { filename: 'w', ...settings } } });
  libraryError(t, prog({ concurrency: 0 }), /program "web": concurrency: 0 is invalid: expected 1–255/, 'range, from resolveProgramOptions');
  libraryError(t, prog({ concurrency: 1.5 }), /program "web": concurrency: .*whole number/, 'integer');
  libraryError(t, prog({ max_memory: '64' }), /program "web": max_memory: "64" is invalid: expected a number/, 'type');
  libraryError(t, prog({ max_request_time: 0 }), /program "web": max_request_time: /, 'time');
  libraryError(t, prog({ ephemeral: 'yes' }), /program "web": ephemeral: .*true or false/, 'bool');
  libraryError(t, prog({ environment: ['NOEQUALS'] }), /program "web": environment: .*KEY=value/, 'environment entry');
  libraryError(t, prog({ main_arguments: [1] }), /program "web": main_arguments: .*array of strings/, 'strings');
  libraryError(t, prog({ allowed_paths: [{ virtual: '/x' }] }), /program "web": allowed_paths: .*"real"/, 'allowed path');
  libraryError(t, prog({ sha256: 'abc' }), /program "web": sha256: expected 64 hex digits/, 'sha256');
  libraryError(t, prog({ remapping: ['0xC000000000'] }), /program "web": remapping: .*expected \["address", MiB\]/, 'a remapping without a size');
  libraryError(t, prog({ remapping: ['C0000', '0x10'] }), /program "web": remapping: .*an end address above it/, 'a remapping that ends before it starts');
  libraryError(t, prog({ remapping: ['0xC000000000', 4, 'storage'] }), /program "web": remapping: .*storage VM only are not supported/, 'a storage remapping');
  t.match(parseLibrary(prog({ remapping: [['0xC000000000', '0xC010000000'], ['e0000000000', 2]] }), base).programs.get('web')!.options.remappings,
    [{ address: 0xc000000000, sizeMiB: 256, executable: false }, { address: 0xe0000000000, sizeMiB: 2, executable: false }], 'an end address; several remappings under one key');
  libraryError(t, prog({ warmup: 20 }), /program "web": warmup: 20 is invalid: expected an object/, 'warmup: an object, as the VMOD requires');
  libraryError(t, prog({ warmup: { num_requests: 70000 } }), /program "web": warmup\.num_requests: 70000 is invalid: expected 0–65535/, 'warmup: the count, in the library\'s name');
  libraryError(t, prog({ warmup: { headers: 'X-A: 1' } }), /program "web": warmup: .*"headers" must be an array/, 'warmup: headers');
  libraryError(t, prog({ warmup: { headers: ['X-A'] } }), /program "web": warmup: .*invalid header field "X-A"/, 'warmup: a field without a colon');
  libraryError(t, prog({ warmup: { method: '' } }), /program "web": warmup\.method: "" is invalid: expected a non-empty string/, 'warmup: an empty method');
  libraryError(t, prog({ group: 'nope' }), /program "web": group: "nope" is not in "groups"/, 'group');
  libraryError(t, { programs: { web: {} } }, /program "web": filename: a program needs "filename"/, 'no source');
  libraryError(t, { programs: { web: { uri: 'ftp://x/w' } } }, /program "web": uri: .*file:\/\//, 'scheme');
  libraryError(t, { programs: { 'a b': { filename: 'x' } } }, /program "a b": a program name is/, 'name');
  libraryError(t, { programs: { web: 5 } }, /program "web": expected an object/, 'not an object');
  libraryError(t, { programs: [] }, /"programs": expected an object/, 'programs is an array');
  libraryError(t, { ...prog({}), routes: { '/x': 'other' } }, /route "\/x": program "other" is not in "programs"/, 'route to nothing');
  libraryError(t, { ...prog({}), routes: { x: 'web' } }, /route "x": .*starting with "\/"/, 'route prefix');
  libraryError(t, { ...prog({}), hosts: { 'h.test': { program: 'web', arg: 3 } } }, /host "h.test": arg: expected a string/, 'host arg');
  libraryError(t, prog({}), /--configure other: the library has no program/, 'configure names no program', { other: {} });
  libraryError(t, prog({}), /program "web": concurrency: 300 is invalid/, 'configure value checked', { web: { concurrency: 300 } });
});

t.test('a library from plain http:// may not grant writable paths unless pinned by sha256 or trusted by a flag', async (t) => {
  const { createServer } = await import('node:http');
  const { createHash } = await import('node:crypto');
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-lib-'));
  const libraries: Record<string, string> = {
    '/writes.json': JSON.stringify({ programs: { w: { filename: 'bin/w', allowed_paths: [{ real: dir, writable: true }] } } }),
    '/reads.json': JSON.stringify({ programs: { r: { filename: 'bin/r', allowed_paths: [dir] } } }),
  };
  const origin = createServer((req, res) => {
    const body = libraries[req.url ?? ''];
    res.statusCode = body ? 200 : 404;
    res.end(body);
  });
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  const url = (path: string): string => `http://127.0.0.1:${(origin.address() as { port: number }).port}${path}`;
  const digest = createHash('sha256').update(libraries['/writes.json']!).digest('hex');
  try {
    await t.rejects(loadLibrary(url('/writes.json'), undefined, dir), { code: 'TSKVM_ERR_LIBRARY_UNTRUSTED', message: /program w write access to .*--library-sha256/ });
    t.equal((await loadLibrary(url('/writes.json'), undefined, dir, { sha256: digest })).programs.size, 1, 'pinned by its sha256');
    await t.rejects(loadLibrary(url('/writes.json'), undefined, dir, { sha256: '0'.repeat(64) }), { code: 'TSKVM_ERR_LIBRARY_CHECKSUM', message: new RegExp(`has sha256 ${digest}`) });
    t.equal((await loadLibrary(url('/writes.json'), undefined, dir, { httpMayGrantWrites: true })).programs.size, 1, '--trust-http-library');
    t.equal((await loadLibrary(url('/reads.json'), undefined, dir)).programs.size, 1, 'read-only paths need no pin');
    const configured = await loadLibrary(url('/reads.json'), { r: { allowed_paths: [{ real: dir, writable: true }] } }, dir);
    t.equal(configured.programs.get('r')!.options.allowedPaths?.length, 1, 'the command line (--configure) may grant writes');
  } finally {
    origin.close();
  }
});

t.test('uri with filename: the download goes to filename, revalidated by its mtime; a pinned copy is not downloaded again', async (t) => {
  const { createServer } = await import('node:http');
  const { createHash } = await import('node:crypto');
  const { readFileSync, utimesSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-fetch-'));
  const elf = { v1: Buffer.from('program version 1'), v2: Buffer.from('program version 2') };
  let current = elf.v1;
  const modified = new Date('2026-01-01T00:00:00Z');
  const seen: Array<{ ims?: string }> = [];
  const origin = createServer((req, res) => {
    const ims = req.headers['if-modified-since'];
    seen.push({ ims });
    if (ims && new Date(ims) >= modified && current === elf.v1) {
      res.statusCode = 304;
      res.end();
      return;
    }
    res.setHeader('last-modified', modified.toUTCString());
    res.end(current);
  });
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  const url = `http://127.0.0.1:${(origin.address() as { port: number }).port}/p.elf`;
  const path = join(dir, 'p.elf');
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  try {
    t.same(await programBytes({ name: 'p', path, url }), elf.v1, 'fetched');
    t.same(readFileSync(path), elf.v1, 'into filename');
    t.equal(seen.at(-1)!.ims, undefined, 'nothing to revalidate the first time');
    // As the VMOD leaves it: a file with no record beside it, only its mtime.
    const { rmSync } = await import('node:fs');
    rmSync(`${path}.json`);
    utimesSync(path, modified, modified);
    t.same(await programBytes({ name: 'p', path, url }), elf.v1, '304: the copy is used');
    t.equal(seen.at(-1)!.ims, modified.toUTCString(), 'If-Modified-Since from the file\'s mtime');
    const requests = seen.length;
    t.same(await programBytes({ name: 'p', path, url, sha256: sha(elf.v1) }), elf.v1, 'pinned and already there');
    t.equal(seen.length, requests, 'no request made');
    current = elf.v2;
    t.same(await programBytes({ name: 'p', path, url, sha256: sha(elf.v2) }), elf.v2, 'pinned to another digest: downloaded');
    t.equal(seen.length, requests + 1);
    await t.rejects(programBytes({ name: 'p', path, url, sha256: sha(elf.v1) }), { code: 'TSKVM_ERR_PROGRAM_CHECKSUM' }, 'the origin serves other bytes than pinned');
  } finally {
    origin.close();
  }
});

t.test('library files and --configure flags', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-lib-'));
  writeFileSync(join(dir, 'good.json'), JSON.stringify({ programs: { a: { filename: 'bin/a' } } }));
  writeFileSync(join(dir, 'bad.json'), '{ "programs": ');
  const lib = await loadLibrary(join(dir, 'good.json'), { a: { concurrency: 3 } });
  t.equal(lib.programs.get('a')!.path, join(dir, 'bin/a'));
  t.equal(lib.programs.get('a')!.options.concurrency, 3);
  await t.rejects(loadLibrary(join(dir, 'bad.json')), { code: 'TSKVM_ERR_LIBRARY', message: /not valid JSON/ });
  await t.rejects(loadLibrary(join(dir, 'none.json')), { code: 'TSKVM_ERR_LIBRARY', message: /cannot read library/ });
  await t.rejects(loadLibrary('http://127.0.0.1:1/lib.json', undefined, dir), { code: 'TSKVM_ERR_LIBRARY', message: /cannot fetch library http:\/\/127.0.0.1:1\/lib.json/ });
  t.same(parseConfigure('web={"concurrency":4}'), ['web', { concurrency: 4 }]);
  t.throws(() => parseConfigure('web'), { code: 'TSKVM_ERR_LIBRARY' });
  t.throws(() => parseConfigure('web={'), { message: /--configure web: .*not valid JSON/ });
  t.throws(() => parseConfigure('web=[1]'), { message: /expected a JSON object/ });
});

t.test('routing: Host, then the longest prefix on a segment boundary, then /<program>/', async (t) => {
  const router = new Router(parseLibrary({
    programs: { a: { filename: 'a' }, b: { filename: 'b', arg_query: 'k' }, c: { filename: 'c' } },
    routes: { '/x': 'a', '/x/y/': { program: 'b', arg: 'deep' } },
    hosts: { 'C.Example': 'c' },
  }, base));
  t.same(router.resolve('/a/anything?q=1', undefined), { program: 'a', arg: '' });
  t.same(router.resolve('/x', 'localhost'), { program: 'a', arg: '' });
  t.same(router.resolve('/x?q', 'localhost'), { program: 'a', arg: '' });
  t.same(router.resolve('/x/z', 'localhost'), { program: 'a', arg: '' });
  t.same(router.resolve('/x/y/z', undefined), { program: 'b', arg: 'deep' }, 'longest prefix');
  t.same(router.resolve('/x/y/z?k=from%20query', undefined), { program: 'b', arg: 'from query' }, 'arg_query wins over the route arg');
  t.same(router.resolve('/b/z?j=1', undefined), { program: 'b', arg: '' });
  t.equal(router.resolve('/xa', undefined), null, 'not a segment boundary');
  t.equal(router.resolve('/', undefined), null);
  t.same(router.resolve('/a/1', 'c.example:8080'), { program: 'c', arg: '' }, 'host first, port and case ignored');
});

t.test('program slot: one start for concurrent requests, backoff after a failure, invalidate', async (t) => {
  const entry = { name: 'p' } as LibraryProgram;
  let loads = 0;
  let fail = true;
  let closed = 0;
  const fake = { close: async () => { closed++; } } as unknown as Program;
  const reported: string[] = [];
  const slot = new ProgramSlot(entry, {
    load: async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 20));
      if (fail) throw new TskvmError('TSKVM_ERR_PROGRAM_INIT', 'main() exited with status 1');
      return fake;
    },
    onStartFailure: (e) => reported.push(e.message),
  });
  t.equal(slot.state, 'idle');
  const first = await Promise.allSettled([slot.acquire(), slot.acquire(), slot.acquire()]);
  t.equal(loads, 1, 'one start for three requests');
  for (const r of first) t.match((r as PromiseRejectedResult).reason, { code: 'TSKVM_ERR_PROGRAM_START', message: /failed to start \[TSKVM_ERR_PROGRAM_INIT\]: main\(\) exited/, details: { retryAfter: 1 } });
  t.equal(slot.state, 'failed');
  await t.rejects(slot.acquire(), { code: 'TSKVM_ERR_PROGRAM_START' }, 'during the backoff');
  t.equal(loads, 1, 'no new attempt during the backoff');
  t.equal(reported.length, 1, 'the failure reported once');
  await new Promise((r) => setTimeout(r, 1050));
  t.match(await slot.acquire().then(() => 'resolved', (e: unknown) => e), { details: { retryAfter: 2 } }, 'second failure: 2 s');
  t.equal(loads, 2);
  await slot.invalidate();
  fail = false;
  t.equal(await slot.acquire(), fake, 'invalidate clears the backoff');
  t.equal(slot.state, 'running');
  t.equal(await slot.acquire(), fake);
  t.equal(loads, 3);
  await slot.invalidate();
  t.equal(closed, 1);
  t.equal(slot.state, 'idle');
  await slot.close();
  t.equal(slot.state, 'closed');
  await t.rejects(slot.acquire(), { code: 'TSKVM_ERR_CLOSED' });
});
