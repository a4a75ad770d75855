// The program library of `tskvm serve` (settings, inheritance, errors), routing, and the start/backoff
// logic of a program slot: pure logic, no KVM.
import t, { type Test } from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TskvmError } from '../src/errors.js';
import type { Program } from '../src/runtime/program.js';
import { loadLibrary, parseConfigure, parseLibrary, type LibraryProgram } from '../src/server/library.js';
import { ProgramSlot } from '../src/server/program-slot.js';
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
    programs: { p: { filename: 'p', group: 'g', turbo: true, hugepages: true, address_space: 512 } },
    extra: 1,
  }, base);
  t.match(lib.warnings, [
    /unknown top-level key "extra"/,
    /group "g": unknown key "colour"/,
    /group "g": "filename" belongs to a program/,
    /program "p": unknown key "turbo"/,
    /program "p": hugepages are not supported yet/,
    /program "p": an address_space other than max_memory is not supported yet/,
  ]);
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
