// Event descriptors (epoll sets, eventfds, timerfds, socket pairs) over host objects of the same kind.
// test/guests/events.c prints what each call returns, never a time: under tskvm the output must be
// the native run's, byte for byte, hostile calls included. Each blocking call ends at the run's
// deadline. A request program (requests/events.c) makes them in main(): every request must see them
// as main() left them, whatever the request before did.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { Program } from '../src/index.js';
import { assertSameOutcome, guestPath, kvmAvailable, runNative, runTskvm } from './helpers/differential.js';

const BLOCKING = ['epoll_wait', 'epoll_pwait', 'eventfd', 'timerfd', 'recv', 'recvmsg', 'send'];

t.test('eventfd, timerfd, epoll, socketpair, hostile calls and a second thread waking the first: the same output as natively', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const flavour of ['glibc', 'pie', 'musl']) {
    const bin = guestPath(`events.${flavour}`);
    const native = runNative(bin, []);
    t.equal(native.status, 0, `${flavour}: runs natively`);
    t.match(native.stdout.toString(), /== hostile\n[^]*== threads\n/, `${flavour}: natively, every part ran`);
    assertSameOutcome(t, runTskvm(bin, []), native, flavour);
  }
});

t.test('--trace names the new calls and their flags', async (t) => {
  if (!kvmAvailable(t)) return;
  const vm = runTskvm(guestPath('events.glibc'), ['epoll', 'sockets'], { trace: true });
  const trace = vm.stderr.toString();
  for (const line of [
    /epoll_create1\(O_CLOEXEC\) = 3\n/,
    /epoll_ctl\(3, EPOLL_CTL_ADD, \d+, \{events=EPOLLIN\|EPOLLET, data=0xe7e7e7e7e7e7e7e7\}\) = 0\n/,
    /eventfd2\(0, EFD_NONBLOCK\) = \d+\n/,
    /timerfd_create\(CLOCK_MONOTONIC, O_NONBLOCK\) = \d+\n/,
    /epoll_wait\(3, 0x[0-9a-f]+, 8, 0\) = 0\n/,
    /socketpair\(AF_UNIX, SOCK_DGRAM\|SOCK_NONBLOCK\|SOCK_CLOEXEC, 0, 0x[0-9a-f]+\) = 0\n/,
    /recvfrom\(\d+, "ping", 64, 0, NULL, NULL\) = 4\n/,
    /sendto\(\d+, "x", 1, MSG_NOSIGNAL, NULL, 0\) = -1 EPIPE/,
    /shutdown\(\d+, SHUT_WR\) = 0\n/,
  ]) t.match(trace, line, `trace has ${line}`);
});

t.test('each blocking call ends at --timeout with exit 124, as timeout(1) ends it natively', async (t) => {
  if (!kvmAvailable(t)) return;
  const bin = guestPath('events.glibc');
  for (const call of BLOCKING) {
    const native = runNative('/usr/bin/timeout', ['0.5', bin, 'block', call]);
    const started = Date.now();
    const vm = runTskvm(bin, ['block', call], { timeoutSec: 0.5, timeoutMs: 30_000 });
    const elapsed = Date.now() - started;
    t.equal(native.status, 124, `${call}: blocks natively until timeout(1) ends it`);
    t.equal(vm.status, 124, `${call}: exit status 124`);
    t.equal(vm.stdout.toString(), native.stdout.toString(), `${call}: the same output`);
    t.match(vm.stderr.toString(), /stopped while it waited in (epoll_wait|epoll_pwait|read|recvfrom|recvmsg|sendto) at/, `${call}: says where it waited`);
    t.ok(elapsed < 10_000, `${call}: stopped in ${elapsed} ms`);
  }
});

t.test('requests see the event objects main() made as it left them, whatever the request before did', async (t) => {
  if (!kvmAvailable(t)) return;
  const native = runNative(guestPath('req-events'), ['/state', '/sockets']).stdout.toString().split('\n');
  t.equal(native[0], 'count=5 sem=2 ready=1,2,3 timer=1', 'natively, the state main() leaves');
  // One fork, so every request runs in the fork the one before left.
  const program = await Program.load(guestPath('req-events'), { maxMemory: 64, concurrency: 1, maxRequestTime: 2, onLog: () => {} });
  try {
    // Forks run on worker threads of this process, so the host fds a request's objects take are this
    // process's. Counted after a /state, which makes none, once the /mess before it was reset.
    let hostFds = 0;
    for (let i = 0; i < 10; i++) {
      t.equal(`${(await program.request({ url: '/state' })).body}`, native[0], `round ${i}: the frozen state`);
      if (i === 1) hostFds = readdirSync('/proc/self/fd').length;
      t.equal(`${(await program.request({ url: '/mess' })).body}`, 'messed', `round ${i}: a request changes all of it`);
    }
    t.equal(`${(await program.request({ url: '/sockets' })).body}`, native[1], 'a socket pair within a request');
    t.equal(`${(await program.request({ url: '/state' })).body}`, native[0], 'then the frozen state again');
    // Each /mess makes 6 (an eventfd and its watch, a socket pair, an epoll set, a timerfd).
    t.equal(readdirSync('/proc/self/fd').length, hostFds, 'the host fds of what 9 requests made were closed at their resets');
  } finally {
    await program.close();
  }
});

t.test('an interval timer main() armed runs on in every fork: each request counts its expiries from main()', async (t) => {
  if (!kvmAvailable(t)) return;
  const program = await Program.load(guestPath('req-events'), { maxMemory: 64, concurrency: 1, onLog: () => {} });
  try {
    // A wait before the first request too, so that it reads more than the second would if the reset
    // forgot what the first read (then the second would count 300 ms of expiries only).
    await new Promise((r) => setTimeout(r, 300));
    const first = Number((await program.request({ url: '/ticks' })).body);
    await new Promise((r) => setTimeout(r, 300));
    const second = Number((await program.request({ url: '/ticks' })).body);
    t.ok(first >= 30, `the first request read ${first} expiries`);
    // 300 ms more of a 10 ms timer, counted from main() again since the reset gave back what the first read.
    t.ok(second >= first + 25, `the second read ${second}: the first's ${first} and those of 300 ms more`);
  } finally {
    await program.close();
  }
});

t.test('a process holds at most as many epoll watches as fds (each is a host fd), and a reset gives them back', async (t) => {
  if (!kvmAvailable(t)) return;
  const program = await Program.load(guestPath('req-events'), { maxMemory: 64, concurrency: 1, onLog: () => {} });
  try {
    // main()'s set holds 3 watches: 1021 more fit in the budget of 1024 (the fd limit).
    for (let i = 0; i < 2; i++) {
      for (const set of ['frozen', 'new']) {
        t.equal(`${(await program.request({ url: `/watches?${set}` })).body}`, 'added 1021, then ENOSPC', `round ${i}, the ${set} set: ENOSPC at the budget`);
      }
    }
    t.equal(`${(await program.request({ url: '/state' })).body}`, 'count=5 sem=2 ready=1,2,3 timer=1', 'main()\'s set has its own watches again');
  } finally {
    await program.close();
  }
});

t.test('an epoll_wait past max_request_time ends as a timeout, and the fork serves on', async (t) => {
  if (!kvmAvailable(t)) return;
  const program = await Program.load(guestPath('req-events'), { maxMemory: 64, concurrency: 1, maxRequestTime: 0.3, onLog: () => {} });
  try {
    const started = performance.now();
    const res = await program.request({ url: '/wait' });
    const elapsed = performance.now() - started;
    t.equal(res.status, 504, '504');
    t.equal(res.error?.code, 'TSKVM_ERR_GUEST_TIMEOUT', 'TSKVM_ERR_GUEST_TIMEOUT');
    t.match(res.error?.message, /waited in epoll_wait/, 'says where it waited');
    t.ok(elapsed >= 290 && elapsed < 5_000, `ended after ${elapsed.toFixed(0)} ms (max_request_time 300 ms)`);
    t.equal(`${(await program.request({ url: '/state' })).body}`, 'count=5 sem=2 ready=1,2,3 timer=1', 'the next request sees the frozen state');
  } finally {
    await program.close();
  }
});

t.test('a thread parked in epoll_wait when main() froze waits on its fork\'s set in every request', async (t) => {
  if (!kvmAvailable(t)) return;
  t.equal(runNative(guestPath('req-events'), ['/waiter'], { env: { EVENTS_KEEP: 'waiter' } }).stdout.toString(), 'woken 1\n', 'natively');
  const program = await Program.load(guestPath('req-events'), { maxMemory: 64, concurrency: 1, maxRequestTime: 2, environment: ['EVENTS_KEEP=waiter'], onLog: () => {} });
  try {
    for (let i = 0; i < 3; i++) {
      const res = await program.request({ url: '/waiter' });
      t.equal(`${res.status} ${res.body}`, '200 woken 1', `request ${i}: the parked thread woke in the fork`);
    }
  } finally {
    await program.close();
  }
});

t.test('a program frozen with a socket pair open fails to load, naming the fd', async (t) => {
  if (!kvmAvailable(t)) return;
  await t.rejects(
    Program.load(guestPath('req-events'), { maxMemory: 64, concurrency: 1, environment: ['EVENTS_KEEP=socket'], onLog: () => {} }),
    { code: 'TSKVM_ERR_PROGRAM_FREEZE', message: /fd \d+ is a socket, which request VMs cannot share/ },
  );
});
