// The storage VM (storage: true): req-storage's calls from request VMs into its storage VM, with the
// results its header documents; calls that fail leave the storage VM serving with its state; one
// caller at a time under concurrent load; tasks and timers; the allow list.
import t from 'tap';
import { Program, type ProgramOptions } from '../src/runtime/program.js';
import { STORAGE_LIMITS } from '../src/syscalls/api/storage.js';
import { kvmAvailable } from './helpers/differential.js';
import { okBody, withProgram as withStorageProgram } from './helpers/programs.js';

const withProgram = (options: ProgramOptions, body: (p: Program) => Promise<void>): Promise<void> =>
  withStorageProgram('req-storage', { storage: true, concurrency: 2, sharedMemory: 2, maxStorageTime: 0.5, ...options }, body);
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
    t.equal(p.stats().storage!.tasks_scheduled, STORAGE_LIMITS.timers);
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
