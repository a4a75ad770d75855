// Programs from other languages' toolchains (test/langs: C++, Rust, Go, all static), each compared
// with its native run: stdout, stderr and exit status. A thread id in a message is the only thing
// allowed to differ (natively it is the host's).
import t from 'tap';
import { join } from 'node:path';
import { Program } from '../src/index.js';
import { assertSameOutcome, kvmAvailable, repoRoot, runNative, runTskvm, type RunOutcome } from './helpers/differential.js';

const lang = (name: string): string => join(repoRoot, 'test', 'langs', 'bin', name);

/** The outcome with thread ids in Rust's "thread 'name' (TID)" messages replaced. */
function withoutTids(run: RunOutcome): RunOutcome {
  return { ...run, stderr: Buffer.from(run.stderr.toString().replace(/(thread '[^']*') \(\d+\)/g, '$1 (TID)')) };
}

t.test('C++: a std::thread pool with futures and condition variables, std::async', async (t) => {
  if (!kvmAvailable(t)) return;
  const native = runNative(lang('pool'), []);
  t.match(native.stdout.toString(), /^pool total 15149905, async 42, deferred 8\n$/);
  assertSameOutcome(t, runTskvm(lang('pool'), [], { timeoutSec: 60 }), native, 'pool');
});

t.test('Rust: threads with channels and a Mutex, thread::scope, a panic caught at join', async (t) => {
  if (!kvmAvailable(t)) return;
  const native = runNative(lang('threads-rs'), []);
  t.match(native.stdout.toString(), /channel sum 140 counter 8000\nscoped \[10, 20, 30, 40, 50, 60\]\ncaught panic: true\n/);
  t.match(native.stderr.toString(), /thread 'worker' \(\d+\) panicked at .*boom in a thread/s);
  assertSameOutcome(t, withoutTids(runTskvm(lang('threads-rs'), [], { timeoutSec: 60 })), withoutTids(native), 'rust');
});

t.test('Go: goroutines, channels, a WaitGroup, time.Sleep, encoding/json, crypto/sha256, a recovered panic', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const procs of ['1', '4']) {
    const env = { GOMAXPROCS: procs };
    const native = runNative(lang('goroutines'), [], { env });
    t.match(native.stdout.toString(), new RegExp(`^GOMAXPROCS ${procs}\\nsum of squares 328350\\n`));
    assertSameOutcome(t, runTskvm(lang('goroutines'), [], { env, timeoutSec: 60 }), native, `GOMAXPROCS=${procs}`);
  }
});

t.test("Go: with a remapping at 0xc000000000, Go's heap is where it is natively", async (t) => {
  if (!kvmAvailable(t)) return;
  const env = { GOMAXPROCS: '4', SHOW_HEAP: '1' };
  const native = runNative(lang('goroutines'), [], { env });
  t.match(native.stdout.toString(), /\nheap at 0xc\.\., sum 67172\n/, 'natively: 300 MiB of heap from 0xc000000000 on');
  const remap = ['--remap', 'c000000000:1024'];
  assertSameOutcome(t, runTskvm(lang('goroutines'), [], { env, maxMemoryMiB: 2048, extraFlags: remap, timeoutSec: 60 }), native, 'remapped');
  const elsewhere = runTskvm(lang('goroutines'), [], { env, maxMemoryMiB: 2048, timeoutSec: 60 });
  t.match(elsewhere.stdout.toString(), /\nheap at 0x0\.\., sum 67172\n/, 'without it, Go takes what the kernel gives, below 64 GiB, and works');
  // Sparse too: a 32 GiB address space, 1 GiB of it the program's, and the remapping's own.
  assertSameOutcome(t, runTskvm(lang('goroutines'), [], { env, maxMemoryMiB: 1024, extraFlags: [...remap, '--address-space', '32768'], timeoutSec: 60 }), native, 'sparse');
});

t.test('Rust: a stack overflow is caught on the alternate stack and reported as natively', async (t) => {
  if (!kvmAvailable(t)) return;
  const native = runNative(lang('threads-rs'), ['overflow']);
  t.equal(native.status, 134);
  t.match(native.stderr.toString(), /thread 'main' \(\d+\) has overflowed its stack\nfatal runtime error: stack overflow, aborting/);
  assertSameOutcome(t, withoutTids(runTskvm(lang('threads-rs'), ['overflow'], { timeoutSec: 60 })), withoutTids(native), 'overflow');
});

t.test('Go serving requests through the guest API (paused style, no cgo): the answers it gives natively', async (t) => {
  if (!kvmAvailable(t)) return;
  const urls = ['/sum?1000', '/x', '/sum?100000', '/sum?7'];
  const native = runNative(lang('goserve'), urls);
  t.equal(native.stdout.toString(), 'goroutines 4 sum 500500\nhello from Go: GET /x\ngoroutines 4 sum 5000050000\ngoroutines 4 sum 28\n');
  // Go's runtime reserves address space for its heap's bookkeeping at start: it needs more than 256 MiB.
  const program = await Program.load(lang('goserve'), { maxMemory: 1024, concurrency: 2, onLog: () => {} });
  try {
    const bodies: string[] = [];
    for (const url of urls) {
      const r = await program.request({ method: 'GET', url });
      t.equal(r.status, 200, url);
      bodies.push(r.body.toString());
    }
    t.equal(bodies.join(''), native.stdout.toString(), 'each request as natively, in the forks of one frozen Go program');
    const many = await Promise.all(Array.from({ length: 16 }, () => program.request({ method: 'GET', url: '/sum?2000' })));
    t.same(new Set(many.map((r) => `${r.status} ${r.body}`)), new Set(['200 goroutines 4 sum 2001000\n']), '16 concurrent requests, each right');
  } finally {
    await program.close();
  }
});
