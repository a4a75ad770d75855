// signalfd(2) and signalfd4(2): test/guests/signalfd.c reads signals sent by raise, kill, tgkill, an
// itimer and a POSIX timer through signalfds, blocking and not, polls them (poll, select, epoll), wakes
// threads blocked in a read or a poll of one, and makes every hostile call it can think of; it prints
// what each call returns and what each read finds, never a time, so under tskvm the output must be the
// native run's, byte for byte. A request program (requests/signalfd.c) makes one in main(): every
// request must see it, and the signals pending, as main() left them, whatever the request before did.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { assertSameOutcome, guestPath, kvmAvailable, runNative, runTskvm } from './helpers/differential.js';
import { okBody, withProgram } from './helpers/programs.js';

const PARTS = ['read', 'update', 'errors', 'poll', 'timer', 'threads', 'restart'];

t.test('reads, mask updates, hostile calls, polls, timers and threads: the same output as natively', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const flavour of ['glibc', 'pie', 'musl']) {
    const bin = guestPath(`signalfd.${flavour}`);
    const native = runNative(bin, []);
    t.equal(native.status, 0, `${flavour}: runs natively`);
    t.match(native.stdout.toString(), new RegExp(PARTS.map((p) => `== ${p}\\n`).join('[^]*')), `${flavour}: natively, every part ran`);
    assertSameOutcome(t, runTskvm(bin, [], { timeoutSec: 60 }), native, flavour);
  }
});

t.test('a thread waiting in a read for a timer\'s signal after the main thread exited gets it', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const flavour of ['glibc', 'musl']) {
    const bin = guestPath(`signalfd.${flavour}`);
    const native = runNative(bin, ['orphan']);
    t.match(native.stdout.toString(), /orphan: read = 128\n  signo 14 /, `${flavour}: natively, the read takes SIGALRM`);
    assertSameOutcome(t, runTskvm(bin, ['orphan'], { timeoutSec: 10 }), native, flavour);
  }
});

t.test('--trace shows signalfd4 and signalfd with their masks and flags', async (t) => {
  if (!kvmAvailable(t)) return;
  const trace = runTskvm(guestPath('signalfd.glibc'), ['read', 'update'], { trace: true }).stderr.toString();
  for (const line of [
    /signalfd4\(-1, \[USR1 USR2\], 8, SFD_NONBLOCK\|SFD_CLOEXEC\) = 3\n/,
    /signalfd4\(3, \[USR2\], 8, 0\) = 3\n/,
    /signalfd\(3, \[USR2\], 8\) = 3\n/,
    /signalfd4\(3, ~\[RTMIN RT_1\], 8, 0\) = 3\n/, // glibc's sigfillset leaves out its two internal signals
    /read\(3, 0x[0-9a-f]+, 127\) = -1 EINVAL/,
  ]) t.match(trace, line, `trace has ${line}`);
});

t.test('a blocking read ends at --timeout with exit 124, as timeout(1) ends it natively', async (t) => {
  if (!kvmAvailable(t)) return;
  const bin = guestPath('signalfd.glibc');
  const native = runNative('/usr/bin/timeout', ['0.5', bin, 'block']);
  const started = Date.now();
  const vm = runTskvm(bin, ['block'], { timeoutSec: 0.5, timeoutMs: 30_000 });
  const elapsed = Date.now() - started;
  t.equal(native.status, 124, 'blocks natively until timeout(1) ends it');
  t.equal(vm.status, 124, 'exit status 124');
  t.equal(vm.stdout.toString(), native.stdout.toString(), 'the same output');
  t.match(vm.stderr.toString(), /stopped while it waited in read at/, 'says where it waited');
  t.ok(elapsed < 10_000, `stopped in ${elapsed} ms`);
});

t.test('requests see the signalfd and the signals main() left, whatever the request before did', async (t) => {
  if (!kvmAvailable(t)) return;
  const native = runNative(guestPath('req-signalfd'), ['/state', '/leave', '/state', '/mask', '/state']).stdout.toString().split('\n');
  t.equal(native[0], 'ready=1 read=12 probe=10', 'natively, what main() leaves: SIGUSR2 pending, the mask reads SIGUSR1');
  t.equal(native[2], 'ready=1 read=10,12 probe=10', 'natively, signals left pending are read later');
  t.equal(native[4], 'ready=0 read=none probe=none', 'natively, a new mask reads neither');
  // One fork, so every request runs in the fork the one before left.
  await withProgram('req-signalfd', { maxMemory: 64, concurrency: 1, maxRequestTime: 2, onLog: () => {} }, async (program) => {
    let hostFds = 0;
    for (let i = 0; i < 5; i++) {
      t.equal(await okBody(program, '/state'), native[0], `round ${i}: the frozen state`);
      if (i === 1) hostFds = readdirSync('/proc/self/fd').length;
      for (const url of ['/leave', '/mask', '/new']) {
        await okBody(program, url);
        t.equal(await okBody(program, '/state'), native[0], `round ${i}: after ${url}, the frozen state (no signal, mask or signalfd of it is left)`);
      }
    }
    // Each /new makes two signalfds, each a host eventfd.
    t.equal(readdirSync('/proc/self/fd').length, hostFds, 'the host fds of the signalfds requests made were closed at their resets');
  });
});

t.test('a blocking read past max_request_time ends as a timeout, and the fork serves on', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram('req-signalfd', { maxMemory: 64, concurrency: 1, maxRequestTime: 0.3, onLog: () => {} }, async (program) => {
    const started = performance.now();
    const res = await program.request({ url: '/wait' });
    const elapsed = performance.now() - started;
    t.equal(res.status, 504, '504');
    t.equal(res.error?.code, 'TSKVM_ERR_GUEST_TIMEOUT', 'TSKVM_ERR_GUEST_TIMEOUT');
    t.match(res.error?.message, /waited in read/, 'says where it waited');
    t.ok(elapsed >= 290 && elapsed < 5_000, `ended after ${elapsed.toFixed(0)} ms (max_request_time 300 ms)`);
    t.equal(await okBody(program, '/state'), 'ready=1 read=12 probe=10', 'the next request sees the frozen state');
  });
});

t.test('a thread blocked in a signalfd read when main() froze reads its fork\'s signals in every request', async (t) => {
  if (!kvmAvailable(t)) return;
  t.equal(runNative(guestPath('req-signalfd'), ['/waiter'], { env: { SIGNALFD_KEEP: 'waiter' } }).stdout.toString(), 'woken 10\n', 'natively');
  const options = { maxMemory: 64, concurrency: 1, maxRequestTime: 2, environment: ['SIGNALFD_KEEP=waiter'], onLog: () => {} };
  await withProgram('req-signalfd', options, async (program) => {
    for (let i = 0; i < 3; i++) {
      const res = await program.request({ url: '/waiter' });
      t.equal(`${res.status} ${res.body}`, '200 woken 10', `request ${i}: the parked thread woke in the fork`);
    }
  });
});
