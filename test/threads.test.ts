// Threads on the one vCPU: programs that start threads give the output they give natively, hostile
// clone/futex calls the errnos Linux gives, a deadlock is a guest fault, and in request VMs the
// threads main() started serve every request while those a request started are gone after its reset.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { Program } from '../src/index.js';
import { startServer } from '../src/server/server.js';
import { assertSameOutcome, guestPath, kvmAvailable, runNative, runTskvm } from './helpers/differential.js';

const FLAVOURS = ['glibc', 'pie', 'musl'] as const;

t.test('64 pthreads, a barrier, condition variables, TLS, a spinning thread, sleeps: as natively', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const f of FLAVOURS) {
    const bin = guestPath(`threads.${f}`);
    const native = runNative(bin, []);
    t.match(native.stdout.toString(), /64 threads: sum 2016, sum of squares 85344, distinct tids 64/, `${f}: natively`);
    assertSameOutcome(t, runTskvm(bin, [], { timeoutSec: 30 }), native, f);
  }
});

t.test('pthread_cancel (a signal to the thread, which is parked in pause): as natively', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const f of FLAVOURS) {
    const bin = guestPath(`threads.${f}`);
    const native = runNative(bin, ['cancel']);
    t.match(native.stdout.toString(), /cancelled: yes/);
    assertSameOutcome(t, runTskvm(bin, ['cancel'], { timeoutSec: 30 }), native, f);
  }
});

t.test('signals sent to the process go where Linux puts them: a sigwait thread, a thread that does not block them, timers', async (t) => {
  if (!kvmAvailable(t)) return;
  const expected: Record<string, RegExp> = {
    sigwait: /^(sigwait: r=0 sig=10\n){3}done\n$/,
    timer: /^(sigwait: r=0 sig=14\n){2}done\n$/,
    pause: /^pause: r=-1 errno=Interrupted system call handled=12\ndone\n$/,
    alarm: /^pause: r=-1 errno=Interrupted system call handled=14\ndone\n$/,
    spin: /^pause: r=-1 errno=Interrupted system call handled=12\ndone\n$/,
    timeout: /^sigtimedwait alone: r=-1 errno=Resource temporarily unavailable\nsigtimedwait beside a thread: r=-1 errno=Resource temporarily unavailable\npause: r=-1 errno=Interrupted system call handled=12\ndone\n$/,
  };
  for (const f of FLAVOURS) {
    const bin = guestPath(`sigthreads.${f}`);
    for (const [c, pattern] of Object.entries(expected)) {
      const native = runNative(bin, [c], { timeoutMs: 10_000 });
      t.match(native.stdout.toString(), pattern, `${f} ${c}: natively`);
      assertSameOutcome(t, runTskvm(bin, [c], { timeoutSec: 10 }), native, `${f} ${c}`);
    }
  }
});

t.test('main() exits with pthread_exit: the process lives until its last thread ends', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const f of FLAVOURS) {
    const bin = guestPath(`threads.${f}`);
    const native = runNative(bin, ['mainexit']);
    t.match(native.stdout.toString(), /outlived main/);
    assertSameOutcome(t, runTskvm(bin, ['mainexit'], { timeoutSec: 30 }), native, f);
  }
});

t.test('clone3, clone and futex misused: the errnos Linux gives', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const f of FLAVOURS) {
    const bin = guestPath(`clones.${f}`);
    const native = runNative(bin, []);
    t.match(native.stdout.toString(), /futex, timeout +-1 (Connection|Operation) timed out/);
    assertSameOutcome(t, runTskvm(bin, []), native, f);
  }
});

t.test('a thread on an unmapped stack faults and takes the process with it, as natively (SIGSEGV)', async (t) => {
  if (!kvmAvailable(t)) return;
  const bin = guestPath('clones.glibc');
  const native = runNative(bin, ['badstack']);
  t.equal(native.status, 139);
  const run = runTskvm(bin, ['badstack'], { timeoutSec: 30 });
  t.equal(run.status, 139);
  t.match(run.stderr.toString(), /page fault.*at 0x/);
  t.notMatch(run.stdout.toString(), /still here/);
});

t.test('fork, vfork, execve and a clone that is not a thread: ENOSYS (one process per sandbox)', async (t) => {
  if (!kvmAvailable(t)) return;
  const run = runTskvm(guestPath('clones.musl'), ['forks']);
  t.equal(run.status, 0);
  const lines = run.stdout.toString().trim().split('\n');
  t.equal(lines.length, 5);
  for (const line of lines) t.match(line, /-1 Function not implemented$/, line);
});

t.test('threads without end: clone fails with EAGAIN at the limit, the host stays up', async (t) => {
  if (!kvmAvailable(t)) return;
  const run = runTskvm(guestPath('clones.glibc'), ['many'], { timeoutSec: 60 });
  t.equal(run.status, 0);
  t.equal(run.stdout.toString(), 'made 511 threads, then Resource temporarily unavailable\n', '512 threads with main()');
});

t.test('a deadlock is a guest fault with a diagnosis, not a hang', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const f of FLAVOURS) {
    const started = Date.now();
    const run = runTskvm(guestPath(`threads.${f}`), ['deadlock'], { timeoutSec: 30 });
    t.equal(run.status, 134, `${f}: ended as by SIGABRT`);
    t.match(run.stderr.toString(), /deadlock: all 2 threads wait on a futex and nobody can wake them/);
    t.ok(Date.now() - started < 25_000, `${f}: at once, not at the timeout`);
  }
});

t.test('a request program: main()\'s helper thread serves every fork; a request\'s threads end at its reset', async (t) => {
  if (!kvmAvailable(t)) return;
  const bin = guestPath('req-threads');
  const urls = ['/sum?1000', '/sum?99999', '/sum?7'];
  const native = runNative(bin, urls);
  t.equal(native.stdout.toString(), 'threads 4 sum 500500 helper 500500\nthreads 4 sum 4999950000 helper 4999950000\nthreads 4 sum 28 helper 28\n');
  const program = await Program.load(bin, { maxMemory: 64, onLog: () => {} });
  try {
    const bodies: string[] = [];
    for (const url of urls) {
      const r = await program.request({ method: 'GET', url });
      t.equal(r.status, 200);
      bodies.push(r.body.toString());
    }
    t.equal(bodies.join(''), native.stdout.toString(), 'the same answers as natively');

    const first = (await program.request({ method: 'GET', url: '/linger' })).body.toString();
    t.match(first, /^linger \d+ alive\n$/, 'a request\'s thread is alive in its request');
    const tid = first.split(' ')[1]!;
    const second = (await program.request({ method: 'GET', url: '/linger' })).body.toString();
    t.equal(second, first, 'the next request starts from the same thread table: its thread gets the same tid');
    const probe = (await program.request({ method: 'GET', url: `/probe?${tid}` })).body.toString();
    t.equal(probe, `${tid} gone\n`, 'after the reset the lingering thread is gone');

    const many = await Promise.all(Array.from({ length: 24 }, () => program.request({ method: 'GET', url: '/sum?5000' })));
    t.same(new Set(many.map((r) => `${r.status} ${r.body}`)), new Set(['200 threads 4 sum 12502500 helper 12502500\n']), '24 concurrent requests, each right');
  } finally {
    await program.close();
  }
});

t.test('the threaded request program served over HTTP', async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-threads-'));
  const library = join(dir, 'library.json');
  writeFileSync(library, JSON.stringify({ programs: { threads: { filename: guestPath('req-threads'), max_memory: 64, concurrency: 2, max_request_time: 5 } }, hosts: { 'threads.test': 'threads' } }));
  const server = await startServer({ library, listen: '127.0.0.1:0', warn: () => {}, accessLog: () => {} });
  try {
    for (let i = 0; i < 3; i++) {
      const res = await request(`${server.url}/sum?100`, { headers: { host: 'threads.test' } });
      t.equal(res.statusCode, 200);
      t.equal(await res.body.text(), 'threads 4 sum 5050 helper 5050\n');
    }
  } finally {
    await server.close();
  }
});
