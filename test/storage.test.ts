// The storage VM (storage: true): req-storage's calls from request VMs into its storage VM, with the
// results its header documents; calls that fail leave the storage VM serving with its state; one
// caller at a time under concurrent load; tasks and timers; the allow list.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { Program, type ProgramOptions } from '../src/runtime/program.js';
import { startServer } from '../src/server/server.js';
import { STORAGE_LIMITS } from '../src/syscalls/api/storage.js';
import { guestPath, kvmAvailable } from './helpers/differential.js';
import { okBody, withProgram as withStorageProgram } from './helpers/programs.js';

async function withProgram(options: ProgramOptions, body: (p: Program) => Promise<void>): Promise<void> {
  // A state file of its own: one left by an earlier run would start the counter elsewhere.
  const stateFile = join(mkdtempSync(join(tmpdir(), 'tskvm-storage-')), 'state');
  await withStorageProgram('req-storage', { storage: true, concurrency: 2, sharedMemory: 2, maxStorageTime: 0.5, stateFile, ...options }, body);
}
const get = okBody;

t.test('calls into the storage VM: inputs copied in, results copied back, as req-storage documents', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram({}, async (p) => {
    t.equal(await get(p, '/whoami'), 'request=0,request storage=1,storage rc=9', 'sys_is_storage() and KVM_TYPE: 0/request in a request VM, 1/storage in the storage VM');
    t.equal(await get(p, '/add?5'), 'counter=5 rc=8', 'storage_call: the input reached the function, its result came back');
    t.equal(await get(p, '/add?2'), 'counter=7 rc=8', 'the storage VM keeps its state from one call to the next (the request VMs are reset)');
    t.equal(await get(p, '/concat'), 'concat=abcdef|n=3|reslen=64 rc=20', 'storage_callv: three buffers in order, n and the result room as arguments');
    t.equal(await get(p, '/cut'), 'cut=abcdefghij rc=10 null_rc=26', 'a result longer than dst is cut to dstlen; with dst NULL the length storage gave');
    t.equal(await get(p, '/noreturn'), 'noreturn=nr rc=2', 'storage_noreturn gives the result');
    t.equal(await get(p, '/cleanup'), 'cleanup=ok rc=2', 'storage_return gives the result');
    t.equal(await get(p, '/get'), 'counter=7 cleanups=1 after_noreturn=0 ticks=0 rc=8', 'after storage_return the function ran on to its end; after storage_noreturn it did not');
    t.equal(await get(p, '/nested'), 'nested=-1 rc=8', 'a storage function calling storage gets -1 (it would wait for itself)');
    const big = STORAGE_LIMITS.inputBytes;
    t.equal(await get(p, `/big?${big}`), `big rc=${big} same=1`, `${big} bytes (the input limit) there and back, intact`);
    t.equal(await get(p, `/big?${big + 1}`), 'big rc=-1 same=0', 'one byte more: -1, and the function is not called');
  });
});

t.test('a call that fails gets -1 and leaves the storage VM serving, its state as it was', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram({}, async (p) => {
    await get(p, '/add?3');
    const started = performance.now();
    t.equal(await get(p, '/spin'), 'rc=-1', 'a function that never ends: -1 after max_storage_time');
    const took = performance.now() - started;
    t.ok(took >= 450 && took < 3000, `stopped after max_storage_time (0.5 s): ${took.toFixed(0)} ms`);
    t.equal(await get(p, '/crash'), 'rc=-1', 'a function that faults: -1');
    t.equal(await get(p, '/noresult'), 'rc=-1', 'a function that returns without storage_return: -1');
    const crashed = await p.request({ url: '/add-then-crash' });
    t.equal(crashed.error?.code, 'TSKVM_ERR_GUEST_FAULT', 'a request that faults after its storage call fails');
    t.equal(await get(p, '/get'), 'counter=4 cleanups=0 after_noreturn=0 ticks=0 rc=8', 'the storage VM still serves; the completed call of the failed request counted, the failed calls changed nothing');
    const s = p.stats().storage!;
    t.match(s, { timeouts: 1, exceptions: 2 }, 'the storage VM counts the timeout and the two failures');
  });
});

t.test('the allow list: a function not on it is never called, and the request that asked fails', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram({}, async (p) => {
    const r = await p.request({ url: '/forbidden' });
    t.equal(r.status, 500);
    t.equal(r.error?.code, 'TSKVM_ERR_BAD_RESPONSE');
    t.match(r.error?.message, /not on the storage VM's allow list \(sys_storage_allow\)/);
    t.equal(await get(p, '/get'), 'counter=0 cleanups=0 after_noreturn=0 ticks=0 rc=8', 'the forbidden function did not run (it would set the counter to 1000000)');
    t.equal(p.stats().storage!.calls_refused, 1);
  });
});

t.test('one caller at a time: concurrent requests each see a different count, in storage and in shared memory', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram({ concurrency: 4, maxQueue: 1000 }, async (p) => {
    const n = 200;
    const [storage, shared] = await Promise.all([
      Promise.all(Array.from({ length: n }, () => get(p, '/add?1'))),
      Promise.all(Array.from({ length: n }, () => get(p, '/shm'))),
    ]);
    const counts = (bodies: string[], re: RegExp): number[] => bodies.map((b) => Number(re.exec(b)?.[1])).sort((a, b) => a - b);
    const expected = Array.from({ length: n }, (_, i) => i + 1);
    t.same(counts(storage, /^counter=(\d+) rc=8$/), expected, `storage: ${n} calls, each saw its own count 1…${n}`);
    t.same(counts(shared, /^shm=(\d+)$/), expected, `shared memory: ${n} atomic increments, 1…${n}`);
    t.equal(await get(p, '/get'), `counter=${n} cleanups=0 after_noreturn=0 ticks=0 rc=8`);
  });
});

t.test('tasks: queued now, on a timer, periodic until stopped; at most 15 timers', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram({}, async (p) => {
    t.equal(await get(p, '/task?10'), 'rc=0', 'storage_task: 0, queued');
    // The task runs after the call that queued it; a call queued after it sees its effect.
    t.match(await get(p, '/get'), /^counter=10 /, 'the task ran in the storage VM');
    const id = /^id=(\d+)$/.exec(await get(p, '/schedule?20'))?.[1];
    t.ok(id && Number(id) > 0, `schedule_storage_task: a timer id (${id})`);
    await new Promise((r) => setTimeout(r, 400));
    const ticks = Number(/ticks=(\d+)/.exec(await get(p, '/get'))?.[1]);
    t.ok(ticks >= 3, `the periodic task ran again and again (${ticks} times in 0.4 s, every 20 ms)`);
    t.equal(await get(p, `/stop?${id}`), 'rc=1', 'stop_storage_task: 1, stopped');
    t.equal(await get(p, `/stop?${id}`), 'rc=0', 'again: 0, no such timer');
    const stopped = Number(/ticks=(\d+)/.exec(await get(p, '/get'))?.[1]);
    await new Promise((r) => setTimeout(r, 200));
    t.equal(Number(/ticks=(\d+)/.exec(await get(p, '/get'))?.[1]), stopped, 'no tick after the stop');
    const ids = [];
    for (let i = 0; i < STORAGE_LIMITS.timers + 1; i++) ids.push(/^id=(-?\d+)$/.exec(await get(p, '/schedule?60000'))?.[1]);
    t.equal(ids.filter((x) => Number(x) > 0).length, STORAGE_LIMITS.timers, `${STORAGE_LIMITS.timers} timers at once`);
    t.equal(ids.at(-1), '-1', 'the next one: -1');
    t.equal(p.stats().storage!.tasks_inschedule, STORAGE_LIMITS.timers);
    t.ok(p.stats().storage!.tasks_run >= 4);
  });
});

t.test('a program without storage: no storage VM, storage calls -1', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram({ storage: false }, async (p) => {
    t.equal(await get(p, '/whoami'), 'request=0,request storage= rc=-1');
    t.equal(await get(p, '/task?1'), 'rc=-1');
    t.equal(p.stats().storage, undefined);
  });
});

t.test('the state file: written by the storage VM only, read by all, kept across a restart', async (t) => {
  if (!kvmAvailable(t)) return;
  const stateFile = join(mkdtempSync(join(tmpdir(), 'tskvm-state-')), 'counter.state');
  await withProgram({ stateFile }, async (p) => {
    t.equal(await get(p, '/get'), 'counter=0 cleanups=0 after_noreturn=0 ticks=0 rc=8', 'an empty state file (created at start): the counter starts at 0');
    await get(p, '/add?41');
    t.equal(await get(p, '/save'), 'saved=3 rc=8', 'the storage VM wrote "41\\n" to state');
    t.equal(readFileSync(stateFile, 'utf8'), '41\n', 'into the host file');
    t.equal(await get(p, '/state'), 'state=41\n', 'a request VM reads it');
    t.equal(await get(p, '/write-state'), 'write=Read-only file system', 'a request VM cannot write it (EROFS)');
  });
  t.equal(readFileSync(stateFile, 'utf8'), '41\n', 'the failed write from a request VM did not truncate it');
  await withProgram({ stateFile }, async (p) => {
    t.equal(await get(p, '/get'), 'counter=41 cleanups=0 after_noreturn=0 ticks=0 rc=8', 'a new start of the program: the storage VM read its state back');
  });
});

t.test('live update: on_live_update in the old storage VM hands the state to on_live_restore in the new one', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram({}, async (old) => {
    await get(old, '/add?7');
    await withProgram({}, async (next) => {
      t.equal(await old.handStorageTo(next), 'counter=7'.length, 'the bytes handed over');
      t.equal(await get(next, '/get'), 'counter=7 cleanups=0 after_noreturn=0 ticks=0 rc=8', 'the new storage VM took the state in (it ran on after storage_return to parse it)');
    });
    await withProgram({ environment: ['LIVE_RESTORE=crash'] }, async (next) => {
      await t.rejects(old.handStorageTo(next), { code: 'TSKVM_ERR_LIVE_UPDATE', message: /on_live_restore failed in the new program's storage VM: .*page fault/ });
    });
    await withProgram({ storage: false }, async (next) => {
      t.equal(await old.handStorageTo(next), null, 'a new program without storage: nothing to hand over');
    });
    t.equal(await get(old, '/get'), 'counter=7 cleanups=0 after_noreturn=0 ticks=0 rc=8', 'the old storage VM is unchanged and serving');
  });
});

t.test("live update over HTTP (X-LiveUpdate): the new program starts with the old one's storage state", async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-storage-live-'));
  writeFileSync(join(dir, 'counter.elf'), readFileSync(guestPath('req-storage')));
  const library = join(dir, 'library.json');
  writeFileSync(library, JSON.stringify({ programs: { counter: { filename: 'counter.elf', key: 'k', storage: true, max_storage_time: 1 } }, routes: { '/': 'counter' } }));
  const s = await startServer({ library, listen: '127.0.0.1:0', warn: () => {} });
  try {
    const text = async (path: string, init: Parameters<typeof request>[1] = {}): Promise<string> => (await (await request(`${s.url}${path}`, init)).body.text());
    t.equal(await text('/add?12'), 'counter=12 rc=8');
    const posted = await request(`${s.url}/`, { method: 'POST', headers: { 'x-liveupdate': 'k' }, body: readFileSync(guestPath('req-storage')) });
    t.equal(posted.statusCode, 201);
    t.equal(await posted.body.text(), 'Update successful (stored)\n');
    t.equal(await text('/get'), 'counter=12 cleanups=0 after_noreturn=0 ticks=0 rc=8', 'the updated program has the counter');
    t.equal(await text('/add?1'), 'counter=13 rc=8');
  } finally {
    await s.close();
  }
});

t.test('hostile storage calls: bad pointers, sizes and functions get an error; the storage VM keeps serving with its state', async (t) => {
  if (!kvmAvailable(t)) return;
  const symbols = new Map(spawnSync('nm', [guestPath('req-storage')], { encoding: 'utf8' }).stdout.split('\n')
    .map((l) => l.trim().split(/\s+/)).filter((f) => f.length === 3).map(([addr, , name]) => [name!, BigInt(`0x${addr}`)]));
  const counterAt = symbols.get('counter');
  t.ok(counterAt, 'the storage counter\'s address, from the ELF');
  await withProgram({ environment: ['NO_ALLOW=1'] }, async (p) => {
    await get(p, '/add?5');
    const cases: Array<[string, string, string]> = [
      ['/bad-bufs', 'rc=-14', 'a virtbuffer array outside guest memory: EFAULT, nothing called'],
      ['/bad-data', 'rc=-14', 'a buffer pointing outside guest memory: EFAULT'],
      ['/many-bufs', 'rc=-1', '65 buffers: refused'],
      ['/huge-len', 'rc=-1', 'a buffer of 2^40 bytes: refused before anything is read'],
      ['/bad-dst', 'rc=-14', 'a result for a dst outside guest memory: EFAULT'],
      ['/bad-result', 'rc=-1', 'storage_return of a pointer outside the storage VM\'s memory: no result, -1'],
      ['/cleanup-spin', 'rc=-1', 'a function that never ends after storage_return: -1 after the cleanup second'],
      ['/wild?0', 'rc=-1', 'a NULL function'],
      [`/wild?${0x1000}`, 'rc=-1', 'a function in the hypervisor\'s pages'],
      [`/wild?${0xf100}`, 'rc=-1', 'a function in the vvar page'],
      [`/wild?${counterAt}`, 'rc=-1', 'a function in data (no-execute)'],
      [`/wild?${2 ** 47 - 4096}`, 'rc=-1', 'a function at an unmapped address'],
      [`/wild?${2n ** 64n - 2n ** 31n}`, 'rc=-1', 'a function at a kernel address'],
    ];
    for (const [url, expected, what] of cases) {
      t.equal(await get(p, url), expected, what);
      t.equal(await get(p, '/get'), 'counter=5 cleanups=0 after_noreturn=0 ticks=0 rc=8', `after ${url}: the storage VM serves, its state as it was`);
    }
  });
  await withProgram({}, async (p) => {
    const r = await p.request({ url: '/wild?0' });
    t.equal(r.error?.code, 'TSKVM_ERR_BAD_RESPONSE', 'with an allow list, a wild function is refused and the request fails');
  });
});

t.test('a call whose request stopped waiting is dropped before it runs', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram({ concurrency: 1, maxRequestTime: 0.3, maxStorageTime: 1.5 }, async (p) => {
    // A task that spins holds the storage VM for max_storage_time (1.5 s); the adds behind it wait past their 0.3 s.
    t.equal(await get(p, '/spin-task'), 'rc=0');
    const adds = await Promise.all([p.request({ url: '/add?1' }), p.request({ url: '/add?1' })]);
    for (const r of adds) t.equal(r.error?.code, 'TSKVM_ERR_GUEST_TIMEOUT', 'a request whose storage call waited past its deadline times out');
    await new Promise((r) => setTimeout(r, 1200));
    t.equal(p.stats().storage!.calls_abandoned, 2, 'both queued calls were dropped, never run');
    t.match(await get(p, '/get'), /^counter=0 /, 'so the counter never moved');
    t.match(p.stats().storage!, { timeouts: 1, tasks_failed: 1 }, 'the spinning task was stopped and counted');
  });
});
