// Programs that serve requests: boot, freeze, and one request per copy-on-write
// fork, through the embedding API (Program) on worker threads. Each program in
// test/guests/requests/ documents the output format these tests read.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { Program, type ProgramOptions } from '../src/index.js';
import { OUTPUT_LIMIT } from '../src/runtime/program-options.js';
import { cliPath, guestPath, kvmAvailable, runNative } from './helpers/differential.js';

const quiet: ProgramOptions = { maxMemory: 64, onLog: () => {} };

async function withProgram<T>(name: string, options: ProgramOptions, body: (p: Program) => Promise<T>): Promise<T> {
  const program = await Program.load(guestPath(name), { ...quiet, ...options });
  try {
    return await body(program);
  } finally {
    await program.close();
  }
}

t.test('hello: GET, the same bytes as the program natively (glibc and musl)', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const bin of ['req-hello', 'req-hello.musl']) {
    const native = runNative(guestPath(bin), ['/']);
    await withProgram(bin, {}, async (p) => {
      for (let i = 0; i < 5; i++) {
        const res = await p.request({ method: 'GET', url: '/' });
        t.equal(res.status, 200, `${bin}: status`);
        t.equal(res.contentType, 'text/plain');
        t.equal(res.body.toString(), native.stdout.toString(), `${bin} request ${i}: body equals native stdout`);
        t.equal(res.error, undefined);
      }
      const stats = p.stats();
      t.equal(stats.totals.invocations, 5);
      t.equal(stats.totals.status_2xx, 5);
      t.equal(stats.program.binary_type, 'static');
      t.ok(stats.program.boot_time > 0);
    });
  }
});

t.test('echo: method, url, arg, headers and body reach the guest; headers come back', async (t) => {
  if (!kvmAvailable(t)) return;
  const body = Buffer.from('line one\nbinary \x00\x01\xff end');
  const native = runNative(guestPath('req-echo'), ['/post/path'], { input: body });
  await withProgram('req-echo', {}, async (p) => {
    const plain = await p.request({ method: 'POST', url: '/post/path', body, contentType: 'application/octet-stream' });
    t.same(plain.body, native.stdout, 'no headers: equals the native output');
    const res = await p.request({
      method: 'PUT', url: '/x?y=1', arg: 'the-arg', body: 'hello', headers: { 'Content-Type': 'text/x-test', 'X-Test': 'ping', 'X-Multi': ['a', 'b'] },
    });
    t.equal(res.status, 200);
    t.equal(res.body.toString(), [
      'method=PUT', 'url=/x?y=1', 'arg=the-arg', 'content_type=text/x-test', 'headers:',
      'Content-Type: text/x-test', 'X-Test: ping', 'X-Multi: a', 'X-Multi: b', 'body_len=5', 'hello',
    ].join('\n'));
    t.equal(res.headers['x-echo'], 'yes', 'header from BackendResponseExtra');
    t.equal(res.headers['x-test-echo'], 'ping', 'sys_http_find on the request, sys_http_append on the response');
    const big = Buffer.alloc(3 << 20, 7);
    const large = await p.request({ method: 'POST', url: '/big', body: big });
    t.ok(large.body.toString().includes(`body_len=${big.length}\n`), '3 MiB body');
    t.equal(large.body.length - large.body.indexOf(`body_len=${big.length}\n`) - `body_len=${big.length}\n`.length, big.length, 'the whole body came back');
  });
});

t.test('paused style: resumes after wait_for_requests_paused; ephemeral or not', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram('req-paused', { concurrency: 1 }, async (p) => {
    for (let i = 0; i < 3; i++) t.equal((await p.request({ url: `/e${i}` })).body.toString(), `paused:GET /e${i} 1`, 'ephemeral: the counter starts over');
  });
  await withProgram('req-paused', { concurrency: 1, ephemeral: false }, async (p) => {
    for (let i = 1; i <= 3; i++) t.equal((await p.request({ method: 'DELETE', url: '/k' })).body.toString(), `paused:DELETE /k ${i}`, 'non-ephemeral: it counts');
  });
});

t.test('api: a program using every implemented call', async (t) => {
  if (!kvmAvailable(t)) return;
  const log: string[] = [];
  await withProgram('req-api', { maxMemory: 128, maxRequestMemory: 32, sharedMemory: 2, onLog: (l) => log.push(l) }, async (p) => {
    const res = await p.request({ method: 'GET', url: '/x', arg: 'a1', headers: { Host: 'example.org' } });
    t.equal(res.status, 200, res.body.toString());
    const lines = Object.fromEntries(res.body.toString().trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    t.equal(lines.is_debug, '0');
    const [maxMem, maxReq] = lines.meminfo!.split(',').map(Number);
    t.equal(maxMem, 128 << 20, 'get_meminfo: max_memory');
    t.equal(maxReq, 32 << 20, 'get_meminfo: max_reqmem');
    t.match(lines.shm, /^0x8000000,0x8200000$/, 'shared_memory_area: the 2 MiB above the program');
    t.equal(lines.method, 'GET');
    t.equal(lines.url, '/x');
    t.equal(lines.arg, 'a1');
    t.equal(lines.find_host, 'Host: example.org');
    t.equal(lines.req_find, 'X-Api-Req: added');
    t.equal(lines.resp_find, 'X-Api-Set: two');
    t.equal(res.headers['x-api-append'], '1');
    t.equal(res.headers['x-api-set'], 'two', 'sys_http_set replaced, not appended');
    t.notOk('x-api-gone' in res.headers, 'a field without a colon unsets');
    t.equal(res.headers['x-api-extra2'], '2');
    t.same(res.cache, { cached: true, ttlMs: 10_000, graceMs: 2_000, keepMs: 3_000 }, 'cache hints from the response extra');
    t.ok(log.some((l) => l.includes('GET /x')), 'sys_log reaches the program log');
    const post = await p.request({ method: 'POST', url: '/p', body: 'data', contentType: 'text/plain' });
    t.match(post.body.toString(), /body_len=4/, 'the POST handler when there is a body');
    const crash = await p.request({ url: '/crash' });
    t.equal(crash.status, 503, 'on_error answered');
    t.match(crash.body.toString(), /api on_error: url=\/crash .*exception=.*page fault/);
    t.equal(crash.error?.code, 'TSKVM_ERR_GUEST_FAULT', 'and the failure is still reported');
  });
});

t.test('api: the VMOD calls a program without storage makes answer as documented, never fall through', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram('req-api', { concurrency: 3 }, async (p) => {
    const res = await p.request({ url: '/x' });
    t.equal(res.status, 200, res.body.toString());
    const lines = Object.fromEntries(res.body.toString().trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    t.equal(lines.is_storage, '0', 'sys_is_storage: 0 in a request VM (never an errno, which C reads as true)');
    t.equal(lines.storage, '-1,-1,0,-1', 'storage_call, storage_task: -1, stop_storage_task: 0 (no such task), sys_storage_allow: -1 (not the storage VM)');
    t.equal(lines.breakpoint, 'ok', 'sys_breakpoint returns');
    t.match(lines.vcpu, /^0,[0-2]$/, 'vcpuid() is 0 and vcpureqid() a fork number, read through GS without faulting');
    // Three requests at once on three idle forks: each runs in a different one.
    const ids = await Promise.all([0, 1, 2].map(() => p.request({ url: '/x' })));
    const reqids = ids.map((r) => /vcpu=0,(\d+)/.exec(r.body.toString())?.[1]).sort();
    t.same(reqids, ['0', '1', '2'], 'vcpureqid(): 0, 1 and 2 for the three request VMs of a program of concurrency 3');
    for (const [url, call] of [['/storage_return', 'storage_return'], ['/storage_noreturn', 'storage_noreturn']]) {
      const r = await p.request({ url });
      t.equal(r.error?.code, 'TSKVM_ERR_BAD_RESPONSE', `${url}: the request fails`);
      t.match(r.error?.message, `${call} outside a storage call`, `${url}: naming ${call}`);
      t.notMatch(r.body.toString(), /fell through/, `${url}: the guest never ran past the call`);
    }
    const stream = await p.request({ url: '/stream' });
    t.equal(stream.error?.code, 'TSKVM_ERR_BAD_RESPONSE', '/stream: a streamed response of unknown length (0) and no callback is refused');
    t.match(stream.error?.message, /streamed response of 0 bytes/);
    t.notMatch(stream.body.toString(), /fell through/, '/stream: the guest never ran past the call');
    const after = await p.request({ url: '/x' });
    t.equal(after.status, 200, 'and the program serves the next request');
  });
});

t.test('counter in shared memory: every fork sees one region', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram('req-counter', { concurrency: 2, sharedMemory: 2 }, async (p) => {
    const values = await Promise.all(Array.from({ length: 40 }, () => p.request({ url: '/' }).then((r) => Number(r.body.toString()))));
    t.same(values.slice().sort((a, b) => a - b), Array.from({ length: 40 }, (_, i) => i + 1), 'forks on both workers count 1..40, none twice');
    t.equal(p.stats().vms.filter((v) => v.invocations > 0).length, 2, 'both forks served');
  });
  await withProgram('req-counter', {}, async (p) => {
    const res = await p.request({ url: '/' });
    t.equal(res.status, 500);
    t.equal(res.body.toString(), 'no shared memory');
  });
});

const FRESH = { global: '', heap: 'init', heap2: 'null', stack: '', mmap: 'null', mmapfresh: 'zero', brk: 'init', brkfresh: 'zero', fd: 'closed' };
const parse = (body: Buffer): Record<string, string> =>
  Object.fromEntries(body.toString().trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

t.test('isolation: a secret written in one request is not seen by the next', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram('req-isolation', { concurrency: 2 }, async (p) => {
    for (let i = 0; i < 20; i++) {
      t.equal((await p.request({ url: `/write?s3cret${i}` })).body.toString(), 'written');
      t.same(parse((await p.request({ url: '/read' })).body), FRESH, `ephemeral, round ${i}: the frozen state in every place`);
    }
  });
  await withProgram('req-isolation', { concurrency: 1, ephemeral: false }, async (p) => {
    await p.request({ url: '/write?kept1' });
    const kept = parse((await p.request({ url: '/read' })).body);
    t.equal(kept.global, 'kept1', 'non-ephemeral: globals kept');
    t.equal(kept.heap, 'kept1', 'heap kept');
    t.equal(kept.heap2, 'kept1', 'a new malloc kept');
    t.equal(kept.mmap, 'kept1', 'a new mmap kept');
    t.equal(kept.brk, 'kept1', 'the brk area kept');
    t.equal(kept.fd, 'open', 'the fd table kept');
    t.equal(kept.mmapfresh, 'zero', 'new memory is still zero');
    const crash = await p.request({ url: '/crash' });
    t.equal(crash.error?.code, 'TSKVM_ERR_GUEST_FAULT');
    t.same(parse((await p.request({ url: '/read' })).body), FRESH, 'a faulting request forces a reset');
  });
  // Two programs of one binary: nothing crosses from one to the other.
  const [a, b] = await Promise.all([Program.load(guestPath('req-isolation'), { ...quiet, ephemeral: false, name: 'a' }), Program.load(guestPath('req-isolation'), { ...quiet, name: 'b' })]);
  try {
    await a.request({ url: '/write?only-a' });
    t.same(parse((await b.request({ url: '/read' })).body), FRESH, 'program b never sees program a');
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

t.test('isolation: vector registers and MXCSR do not carry over either', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram('req-vecregs', { concurrency: 1 }, async (p) => {
    const fresh = (await p.request({ url: '/read' })).body.toString();
    t.match(fresh, /^xmm15=0{32} mxcsr=00001f80$/, 'the frozen program\'s registers');
    for (let i = 0; i < 5; i++) {
      t.equal((await p.request({ url: `/write?secret-${i}` })).body.toString(), 'written');
      t.equal((await p.request({ url: '/read' })).body.toString(), fresh, `round ${i}: the next request starts from the frozen registers`);
    }
  });
  await withProgram('req-vecregs', { concurrency: 1, ephemeral: false }, async (p) => {
    await p.request({ url: '/write?kept' });
    t.match((await p.request({ url: '/read' })).body.toString(), /^xmm15=6b6570740{24} mxcsr=00007f80$/, 'non-ephemeral: they are kept (so the test can fail)');
  });
});

t.test('failures: each has its error, and the next request on the same fork succeeds', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram('req-faults', { concurrency: 1, maxRequestTime: 1, maxRequestMemory: 16 }, async (p) => {
    const cases: Array<[url: string, code: string, status: number, text: RegExp]> = [
      ['/crash', 'TSKVM_ERR_GUEST_FAULT', 503, /on_error:.*page fault/],
      ['/loop', 'TSKVM_ERR_GUEST_TIMEOUT', 503, /on_error:timeout/],
      ['/bomb', 'TSKVM_ERR_REQUEST_MEMORY', 503, /on_error:out of request memory/],
      ['/status99', 'TSKVM_ERR_BAD_RESPONSE', 503, /status 99/],
      ['/status600', 'TSKVM_ERR_BAD_RESPONSE', 503, /status 600/],
      ['/bigheader', 'TSKVM_ERR_BAD_RESPONSE', 503, /header field of \d+ bytes/],
      ['/ctype-crlf', 'TSKVM_ERR_BAD_RESPONSE', 503, /content type contains a control character/],
      ['/ctype-ctl', 'TSKVM_ERR_BAD_RESPONSE', 503, /content type contains a control character/],
      ['/204-body', 'TSKVM_ERR_BAD_RESPONSE', 503, /status 204 with a body of 1 bytes/],
      ['/304-body', 'TSKVM_ERR_BAD_RESPONSE', 503, /status 304 with a body of 1 bytes/],
      ['/noresponse', 'TSKVM_ERR_NO_RESPONSE', 503, /without a response/],
      ['/abort', 'TSKVM_ERR_GUEST_FAULT', 503, /SIGABRT/],
      ['/crash-onerror', 'TSKVM_ERR_GUEST_FAULT', 500, /page fault[\s\S]*on_error failed too: guest fault/],
    ];
    for (const [url, code, status, text] of cases) {
      const res = await p.request({ url });
      t.equal(res.error?.code, code, `${url}: ${code}`);
      t.equal(res.status, status, `${url}: status ${status}`);
      t.match(res.body.toString(), text, `${url}: says why`);
      const ok = await p.request({ url: '/ok' });
      t.equal(`${ok.status} ${ok.body}`, '200 ok', `after ${url}: the fork was reset and serves again`);
    }
    const tooBig = await p.request({ method: 'POST', url: '/ok', body: Buffer.alloc(17 << 20) });
    t.equal(tooBig.error?.code, 'TSKVM_ERR_REQUEST_TOO_LARGE', 'a body larger than max_request_memory');
    t.equal(tooBig.status, 413);
    t.equal((await p.request({ url: '/ok' })).status, 200);
    const s = p.stats().totals;
    t.equal(s.timeouts, 1, 'stats: timeouts');
    t.equal(s.exception_mem, 1, 'stats: exception_mem');
    t.ok(s.exceptions >= 8, 'stats: exceptions');
    t.equal(s.vm_bank_capacity, 16 << 20, 'stats: vm_bank_capacity is max_request_memory');
    t.equal(s.vm_main_memory, 64 << 20, 'stats: vm_main_memory is max_memory (64 MiB here)');
    t.ok(s.vm_address_space >= s.vm_main_memory, 'stats: vm_address_space');
    t.ok(s.vm_bank_highest > 15 << 20 && s.vm_bank_highest <= (16 << 20) + (1 << 20), `stats: vm_bank_highest, the memory bomb's ${s.vm_bank_highest} bytes`);
    t.equal(s.vm_bank_current, s.dirty_pages * 4096, 'stats: vm_bank_current, the pages the fork holds');
    const entries = p.stats().program.entry_points;
    t.same(Object.keys(entries).sort(), ['backend_get', 'on_error'], 'stats: entry_points by name');
    t.ok(Object.values(entries).every((a) => /^0x[0-9a-f]+$/.test(a)), 'as guest addresses');
  });
});

t.test('an output flood: 64 MiB of newlines in one write reach the main thread cut and batched', async (t) => {
  if (!kvmAvailable(t)) return;
  let lines = 0;
  // The time limit is for emulated KVM (the svm lane), where writing 64 MiB takes more than the default 8 s.
  await withProgram('req-faults', { concurrency: 1, maxRequestMemory: 128, maxMemory: 512, maxRequestTime: 60, onLog: () => { lines++; } }, async (p) => {
    // The main thread's own heap: the process's RSS also holds the guest's 64 MiB and the worker's.
    const before = process.memoryUsage().heapUsed;
    const res = await p.request({ url: '/flood' });
    t.equal(`${res.status} ${res.body}`, '200 flooded', 'the request completes');
    await new Promise((r) => setTimeout(r, 100)); // the last batch's message
    const grown = (process.memoryUsage().heapUsed - before) / 2 ** 20;
    t.ok(grown < 32, `the main thread's heap grew ${grown.toFixed(1)} MiB (64 MiB of lines written)`);
    t.ok(lines > 0 && lines <= OUTPUT_LIMIT + 1, `${lines} lines reached onLog: at most the per-request limit and a marker`);
    t.equal((await p.request({ url: '/ok' })).body.toString(), 'ok');
    t.equal(p.stats().totals.output_cut, 1, 'stats: output_cut counts the request that was cut');
  });
});

t.test('warnings a guest causes in a loop are rate-limited: 5 000 invalid regexes, 20 warnings and a note', async (t) => {
  if (!kvmAvailable(t)) return;
  const run = spawnSync(process.execPath, [cliPath, 'run', '--request', 'GET', '/warn-flood', guestPath('req-faults')], { encoding: 'utf8' });
  t.equal(run.stdout, 'warned', 'the request completes');
  const warnings = run.stderr.split('\n').filter((l) => l.startsWith('tskvm: sys_regex_compile: "("'));
  t.equal(warnings.length, 20, 'the first 20 warnings');
  t.match(run.stderr, /more than 20 warnings: the rest of these 10 s are counted, not shown/, 'then one note');
});

t.test('hostile API calls: bad pointers and arguments get error codes, and the host stays up', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram('req-hostile', { concurrency: 1 }, async (p) => {
    for (let i = 0; i < 3; i++) {
      const res = await p.request({ url: '/h', headers: { Host: 'x' } });
      t.equal(res.status, 200);
      t.same(parse(res.body), {
        null_ctype: '-14', wild_body: '-14', wild_field: '-14', bad_where: '-22', find_wild_out: '-14', method_wild_out: '-14',
        meminfo_null: '-14', meminfo_wild: '-14', register_late: '-1', log_wild: '-14',
        fetch_wild_url: '-14', fetch_wild_op: '-14', fetch_wild_fields: '-14',
      }, `round ${i}: EFAULT for every bad pointer, EINVAL for a bad "where", EPERM for register_func after init`);
    }
  });
});

t.test('a program that does not reach wait_for_requests fails to load, with its log', async (t) => {
  if (!kvmAvailable(t)) return;
  await t.rejects(Program.load(guestPath('hello.glibc'), quiet), { code: 'TSKVM_ERR_PROGRAM_INIT', message: /exited with status 0 before calling wait_for_requests[\s\S]*hello, world/ });
  await t.rejects(Program.load(guestPath('crash.glibc'), { ...quiet, mainArguments: ['segv'] }), { code: 'TSKVM_ERR_PROGRAM_INIT', message: /crashed while starting: guest fault: page fault/ });
  await t.rejects(Program.load(guestPath('loop.glibc'), { ...quiet, maxBootTime: 0.5 }), { code: 'TSKVM_ERR_PROGRAM_BOOT_TIMEOUT', message: /max_boot_time \(0.5 s\)/ });
  await t.rejects(Program.load('/nonexistent/prog', quiet), { code: 'TSKVM_ERR_PROGRAM_NOT_FOUND' });
  await t.rejects(Program.load(guestPath('req-hello'), { ...quiet, concurrency: 0 }), { code: 'TSKVM_ERR_CONFIG', message: /concurrency/ });
});

t.test('at most `concurrency` requests run; the queue is bounded and times out', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram('req-faults', { concurrency: 1, maxRequestTime: 1, maxQueue: 1, queueTimeout: 0.2 }, async (p) => {
    const looping = p.request({ url: '/loop' });
    const queued = p.request({ url: '/ok' });
    await t.rejects(p.request({ url: '/ok' }), { code: 'TSKVM_ERR_QUEUE_FULL' }, 'a full queue refuses at once');
    await t.rejects(queued, { code: 'TSKVM_ERR_QUEUE_TIMEOUT' }, 'a queued request gives up after queueTimeout');
    t.equal((await looping).error?.code, 'TSKVM_ERR_GUEST_TIMEOUT');
    const again = p.request({ url: '/loop' });
    const gone = new AbortController();
    const cancelled = p.request({ url: '/ok' }, { signal: gone.signal });
    gone.abort();
    await t.rejects(cancelled, { code: 'TSKVM_ERR_ABORTED' }, 'a cancelled request leaves the queue');
    t.equal(p.stats().queued, 0);
    await again;
    t.equal((await p.request({ url: '/ok' })).status, 200);
    t.equal(p.stats().totals.reservation_timeouts, 1);
  });
  const p = await Program.load(guestPath('req-hello'), quiet);
  await p.close();
  await t.rejects(p.request({ url: '/' }), { code: 'TSKVM_ERR_CLOSED' }, 'a closed program refuses');
});

t.test('control_ephemeral: the program chooses with sys_make_ephemeral during init', async (t) => {
  if (!kvmAvailable(t)) return;
  const line = (body: Buffer): string | undefined => /make_ephemeral=(.*)/.exec(body.toString())?.[1];
  await withProgram('req-api', { mainArguments: ['0'], concurrency: 1 }, async (p) => {
    t.equal(line((await p.request({ url: '/' })).body), String(-1), 'refused (EPERM) without controlEphemeral');
    await p.request({ url: '/' });
    t.equal(p.stats().totals.resets, 1, 'and the fork stays ephemeral');
  });
  await withProgram('req-api', { mainArguments: ['0'], concurrency: 1, controlEphemeral: true }, async (p) => {
    t.equal(line((await p.request({ url: '/' })).body), '0', 'accepted with controlEphemeral');
    await p.request({ url: '/' });
    t.equal(p.stats().totals.resets, 0, 'the program chose not to be reset');
  });
});

t.test('tskvm run --request: one request from the terminal', async (t) => {
  if (!kvmAvailable(t)) return;
  const run = (args: string[], input?: string) => spawnSync(process.execPath, [cliPath, 'run', ...args], { input, encoding: 'utf8' });
  const hello = run(['--request', 'GET', '/x', guestPath('req-hello')]);
  t.equal(hello.stdout, 'Hello World!\n', 'the body on stdout');
  t.match(hello.stderr, /^HTTP 200\ncontent-type: text\/plain\n/, 'status and headers on stderr');
  t.equal(hello.status, 0);
  const echo = run(['--request', 'POST', '/e', '--header', 'X-Test: 7', '--arg', 'A', '--body', '-', guestPath('req-echo')], 'from stdin');
  t.match(echo.stdout, /method=POST\nurl=\/e\narg=A\n[\s\S]*X-Test: 7\nbody_len=10\nfrom stdin$/);
  t.match(echo.stderr, /X-Test-Echo: 7/);
  const crash = run(['--request', 'GET', '/crash-onerror', guestPath('req-faults')]);
  t.equal(crash.status, 1, 'a failed request exits 1');
  t.match(crash.stderr, /HTTP 500[\s\S]*request failed \[TSKVM_ERR_GUEST_FAULT\]/);
  // The fork resumes behind the pausing call: on hardware KVM the `out` is completed only at the
  // next KVM_RUN, so a snapshot taken without completing it made every fork run it once more.
  const paused = run(['--trace', '--request', 'GET', '/p', guestPath('req-paused')]);
  t.equal(paused.stdout, 'paused:GET /p 1');
  t.match(paused.stderr, /wait_for_requests_paused\([^\n]*\) = 0\nsys_backend_response\(200,/, 'the response is the next call after the pause');
  t.notMatch(paused.stderr, /unsupported hypercall/);
  const plain = run(['--env', 'KVM_NAME=hello', guestPath('req-hello')]);
  t.equal(plain.status, 0);
  t.match(plain.stderr, /waiting for requests.*--request/, 'without --request: says how to send one');
});
