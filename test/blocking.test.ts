// Every syscall that can block forever ends at the deadline: `tskvm run --timeout` exits 124 as
// `timeout(1)` makes the native program exit, and a request ends with a timeout (504) at
// max_request_time, after which the same fork serves the next request. The guest blocks in each
// call the way a single-threaded program can never be woken (test/guests/block.h).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Program } from '../src/index.js';
import { BUSYBOX } from './helpers/busybox.js';
import { guestPath, kvmAvailable, runNative, runTskvm } from './helpers/differential.js';

const CALLS = ['nanosleep', 'clock_nanosleep', 'clock_nanosleep_abs', 'pause', 'read', 'readv', 'write', 'writev',
  'poll', 'ppoll', 'select', 'pselect6', 'futex'];

t.test('tskvm run --timeout ends each blocking call with exit 124, as timeout(1) does natively', async (t) => {
  if (!kvmAvailable(t)) return;
  // glibc makes select a pselect6; musl makes the select syscall.
  for (const flavour of ['glibc', 'musl']) {
    const bin = guestPath(`block.${flavour}`);
    for (const call of CALLS) {
      const native = runNative('/usr/bin/timeout', ['0.5', bin, call]);
      const started = Date.now();
      const vm = runTskvm(bin, [call], { timeoutSec: 0.5, timeoutMs: 30_000 });
      const elapsed = Date.now() - started;
      t.equal(native.status, 124, `${flavour} ${call}: blocks natively until timeout(1) ends it`);
      t.equal(vm.status, 124, `${flavour} ${call}: exit status 124`);
      t.equal(vm.stdout.toString(), native.stdout.toString(), `${flavour} ${call}: the same output`);
      t.match(vm.stderr.toString(), /timeout: the program ran longer than 0.5 s and was stopped while it waited in \w+ at rip 0x[0-9a-f]+/,
        `${flavour} ${call}: says where it waited`);
      t.ok(elapsed < 10_000, `${flavour} ${call}: stopped in ${elapsed} ms`);
    }
    const wait4 = runTskvm(bin, ['wait4']);
    t.equal(`${wait4.status} ${wait4.stdout}`, `${runNative(bin, ['wait4']).status} blocking in wait4\nwait4 returned -10\n`,
      `${flavour}: wait4 with no child is ECHILD at once, as natively`);
  }
});

t.test('opening a FIFO with nobody at the other end waits as natively, and --timeout ends it', async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-fifo-'));
  const fifo = join(dir, 'f');
  execFileSync('mkfifo', [fifo]);
  const cases: Array<[what: string, allow: 'allow' | 'allowWrite', args: string[]]> = [
    ['reading', 'allow', ['cat', fifo]],
    ['writing', 'allowWrite', ['sh', '-c', `echo x > ${fifo}`]],
  ];
  for (const [what, allow, args] of cases) {
    const native = runNative('/usr/bin/timeout', ['0.5', BUSYBOX, ...args]);
    const vm = runTskvm(BUSYBOX, args, { [allow]: [dir], timeoutSec: 0.5, timeoutMs: 30_000 });
    t.equal(native.status, 124, `${what}: natively open(2) waits until timeout(1) ends it`);
    t.equal(vm.status, 124, `${what}: exit status 124`);
    t.match(vm.stderr.toString(), /stopped while it waited in openat/, `${what}: in openat`);
  }
});

t.test('a request blocked in any of them ends with a timeout at max_request_time, and the fork serves again', async (t) => {
  if (!kvmAvailable(t)) return;
  const program = await Program.load(guestPath('req-blocking'), { maxMemory: 64, concurrency: 1, maxRequestTime: 0.3, onLog: () => {} });
  try {
    for (const call of CALLS) {
      const started = performance.now();
      const res = await program.request({ url: `/${call}` });
      const elapsed = performance.now() - started;
      t.equal(res.status, 504, `${call}: 504`);
      t.equal(res.error?.code, 'TSKVM_ERR_GUEST_TIMEOUT', `${call}: TSKVM_ERR_GUEST_TIMEOUT`);
      t.match(res.error?.message, /waited in \w+/, `${call}: says where it waited`);
      t.ok(elapsed >= 290 && elapsed < 5_000, `${call}: ended after ${elapsed.toFixed(0)} ms (max_request_time 300 ms)`);
      t.equal(`${(await program.request({ url: '/ok' })).body}`, 'ok', `after ${call}: the fork serves the next request`);
    }
    t.equal(program.stats().totals.timeouts, CALLS.length, 'each counted as a timeout');
  } finally {
    await program.close();
  }
});

t.test('a request queued behind another program\'s slow request on the same worker ends at its own deadline', async (t) => {
  if (!kvmAvailable(t)) return;
  // On the two-worker pool, each program boots on the first worker and puts its one fork on the
  // second (the least loaded): both forks share a worker thread.
  const options = { maxMemory: 64, concurrency: 1, onLog: () => {} };
  const slow = await Program.load(guestPath('req-blocking'), { ...options, maxRequestTime: 3 });
  const quick = await Program.load(guestPath('req-hello'), { ...options, maxRequestTime: 0.5 });
  try {
    const sleeping = slow.request({ url: '/nanosleep' });
    await new Promise((r) => setTimeout(r, 200));
    const started = performance.now();
    await t.rejects(quick.request({ url: '/' }), { code: 'TSKVM_ERR_WORKER_BUSY', message: /busy with other requests for all of 0.5 s/ });
    const waited = performance.now() - started;
    t.ok(waited >= 500 && waited < 1500, `the queued request gave up after ${waited.toFixed(0)} ms (its max_request_time: 500 ms; the other's: 3 s)`);
    t.equal((await sleeping).error?.code, 'TSKVM_ERR_GUEST_TIMEOUT', 'the slow request ends at its own deadline');
    t.equal((await quick.request({ url: '/' })).status, 200, 'then the quick program is served again');
  } finally {
    await Promise.all([slow.close(), quick.close()]);
  }
});
