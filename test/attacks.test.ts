// The guest attacks its own sandbox (test/guests/requests/attack.c). Each attack must fail as it would
// natively, or more strictly, and the next request on the same fork must see exactly what a fresh fork
// sees: observed from the guest (/state: segment selectors, TLS through FS, a global, code bytes) and
// from the host (segment and control state, the MSRs tskvm sets, main memory against the frozen
// program).
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { bootProgram, type BootedProgram } from '../src/runtime/frozen-program.js';
import { RequestVm } from '../src/runtime/request-vm.js';
import { platform as probePlatform } from '../src/hypervisor/platform.js';
import { syscallTable } from '../src/syscalls/dispatch.js';
import { EmptyFile, SinkFile } from '../src/syscalls/open-files/memory-file.js';
import { guestPath, kvmAvailable, runNative } from './helpers/differential.js';

const BIN = 'req-attack';

function boot(executableHeap = false): BootedProgram {
  const path = guestPath(BIN);
  const sink = new SinkFile(() => {}, 'stdout');
  return bootProgram(readFileSync(path), path, {
    env: ['KVM_NAME=attack'], maxMemoryMiB: 64, stdio: [new EmptyFile(), sink, sink], log: () => {}, warn: () => {}, executableHeap,
  });
}

function fork(booted: BootedProgram, warnings: string[] = []): RequestVm {
  return new RequestVm(booted.frozen, { maxRequestTimeMs: 10_000, ephemeral: true, output: () => () => {}, log: () => {}, warn: (m) => warnings.push(m) });
}

const get = (vm: RequestVm, url: string) => vm.request({ method: 'GET', url }).response;

/**
 * Boots req-attack and runs `body` with the fork under attack, a fresh fork beside it and that fresh
 * fork's /state answer; everything is closed after.
 */
async function withForks(o: { executableHeap?: boolean; warnings?: string[] }, body: (vm: RequestVm, fresh: RequestVm, freshState: string) => void | Promise<void>): Promise<void> {
  const booted = boot(o.executableHeap);
  const vm = fork(booted, o.warnings);
  const fresh = fork(booted);
  try {
    await body(vm, fresh, get(fresh, '/state').body.toString());
  } finally {
    vm.close();
    fresh.close();
    booted.machine.close();
  }
}

/** The native program's answer to one URL (its body), and how it ended. */
function native(url: string): { body: string; status: number } {
  const out = runNative(guestPath(BIN), [url]);
  return { body: out.stdout.toString().replace(/\n$/, ''), status: out.status };
}

/** After `attack`, the fork must be indistinguishable from `fresh`, by the guest and by the host. */
function assertLikeFresh(t: Test, vm: RequestVm, fresh: RequestVm, freshState: string, attack: string): void {
  vm.settle();
  fresh.settle();
  const seen = vm.inspect();
  const want = fresh.inspect();
  t.same(seen.differingPages, [], `${attack}: no page differs from the frozen program`);
  t.equal(seen.sregs.toString('hex'), want.sregs.toString('hex'), `${attack}: segment and control state as in a fresh fork`);
  t.same(seen.msrs, want.msrs, `${attack}: MSRs as in a fresh fork`);
  t.equal(seen.process, want.process, `${attack}: fds, mappings, break, cwd, signals as in a fresh fork`);
  t.equal(get(vm, '/state').body.toString(), freshState, `${attack}: the next request sees a fresh fork's state`);
}

t.test('a fresh fork: the state a native process has', async (t) => {
  if (!kvmAvailable(t)) return;
  await withForks({}, async (vm) => {
    const state = get(vm, '/state').body.toString();
    t.equal(state, native('/state').body, 'selectors, TLS, global and code as natively');
  });
});

t.test('the hypervisor\'s pages: every syscall aimed at them gets EFAULT, as natively', async (t) => {
  if (!kvmAvailable(t)) return;
  await withForks({}, async (vm, fresh, freshState) => {
    const expected = native('/sysarea');
    t.match(expected.body, /^efault=\d+ other=0$/, 'natively every call faults');
    const res = get(vm, '/sysarea');
    t.equal(res.status, 200);
    t.equal(res.body.toString(), expected.body, 'read, pread64, readv, getcwd, uname, fstat, pipe2, getrandom, clock_gettime, write');
    assertLikeFresh(t, vm, fresh, freshState, '/sysarea');
    const api = vm.request({ method: 'GET', url: '/sysarea-api', headers: ['X-Attack: yes'] });
    t.equal(api.response.body.toString(), 'efault=1533 other=0', 'sys_http_find, sys_http_method and get_meminfo: EFAULT on each of the 511 pages');
    assertLikeFresh(t, vm, fresh, freshState, '/sysarea-api');
  });
});

t.test('file offsets the host cannot hold (2^62): what Linux answers, not a host exception', async (t) => {
  if (!kvmAvailable(t)) return;
  await withForks({}, async (vm) => {
    const res = vm.request({ method: 'GET', url: '/offsets' });
    t.equal(res.failure, null, 'no failure');
    // What Linux answers depends on the file system's largest file: ext4 (16 TiB) refuses the lseek
    // (EINVAL) and the sendfile (EOVERFLOW); tmpfs and 9p allow both. tskvm answers as ext4 does.
    const body = res.response.body.toString();
    t.equal(body, 'pread=0 preadv=0 sendfile=-75 lseek=-22 mmap=ok', 'an end of file, EOVERFLOW, EINVAL, a mapping');
    t.match(native('/offsets').body, /^pread=0 preadv=0 sendfile=(0|-75) lseek=(-22|4611686018427387904) mmap=ok$/, 'natively, on this file system, the same or the larger file system\'s answers');
  });
});

t.test('attacks fail as natively (or more strictly) and leave nothing for the next request', async (t) => {
  if (!kvmAvailable(t)) return;
  const platform = probePlatform();
  await withForks({}, async (vm, fresh, freshState) => {
    // Requests that succeed, natively too (or, for the stub, only where the stub runs in ring 3).
    const loaded = get(vm, '/segments');
    t.equal(loaded.body.toString(), 'loaded', '/segments: the loads are allowed in ring 3');
    assertLikeFresh(t, vm, fresh, freshState, '/segments');

    const compat = vm.request({ method: 'GET', url: '/compat' });
    // Natively SIGILL at the ud2; on PVM likewise (#UD); under QEMU's emulated SVM the far return itself
    // faults (#PF on the stack read). Either way a guest fault, and CS comes back.
    t.equal(compat.failure?.code, 'TSKVM_ERR_GUEST_FAULT', `/compat: a guest fault (${compat.failure?.message.split('\n')[0]})`);
    assertLikeFresh(t, vm, fresh, freshState, '/compat (CS is the 64-bit one again)');

    // The ring-3 stub (PVM's syscall entry, present on every platform) is `out %eax, $1; jmp *%rcx`:
    // ring 3 may run it, as it may run that `out` itself; it returns to the rcx the guest chose.
    const jumped = get(vm, '/stubjump');
    t.equal(jumped.body.toString(), 'jumped', '/stubjump: the ring-3 stub returns to the chosen rcx');
    assertLikeFresh(t, vm, fresh, freshState, '/stubjump (the site the stub saw is not left rewritten)');

    // wrfsbase/wrgsbase: Linux allows them where the CPU has them (CR4.FSGSBASE), and so does tskvm
    // (on PVM the guest runs on the host's CR4 anyway); elsewhere they are #UD. The bases come back.
    const wrote = get(vm, '/wrfsbase');
    if (platform.fsgsbase) t.equal(wrote.body.toString(), 'survived', '/wrfsbase: allowed, as natively');
    else t.equal(wrote.status, 500, '/wrfsbase: #UD without FSGSBASE');
    assertLikeFresh(t, vm, fresh, freshState, '/wrfsbase');

    // sgdt: natively Linux emulates it under UMIP with a base that tells nothing; tskvm turns UMIP on
    // where the CPU has it, and the instruction faults (stricter). Without UMIP it shows the GDT's place.
    const umip = / umip( |$)/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
    const sgdt = vm.request({ method: 'GET', url: '/sgdt' });
    if (umip) t.match(sgdt.failure?.message, /^guest fault: general protection fault \(#GP\)/, '/sgdt: #GP under UMIP');
    else t.match(sgdt.response.body.toString(), /^gdt=/, '/sgdt: no UMIP on this CPU');
    assertLikeFresh(t, vm, fresh, freshState, '/sgdt');

    // Each of these kills a native process; here the request fails and the fork serves on.
    // int $0x80 is the exception: Linux runs a 32-bit syscall for it, tskvm has no such entry (stricter).
    for (const url of ['/in', '/in1', '/outport', '/int3', '/int80', '/sysenter', '/wrmsr', '/lgdt', '/cli', '/hlt', '/ud2']) {
      const n = native(url);
      if (url === '/int80') t.equal(n.body, 'survived', 'natively int $0x80 is a 32-bit syscall');
      else t.ok(n.status > 128, `${url}: natively killed by a signal (status ${n.status})`);
      const res = vm.request({ method: 'GET', url });
      t.equal(res.response.status, 500, `${url}: the request fails`);
      t.equal(res.failure?.code, 'TSKVM_ERR_GUEST_FAULT', `${url}: as a guest fault (${res.failure?.message.split('\n')[0]})`);
      assertLikeFresh(t, vm, fresh, freshState, url);
    }
  });
});

t.test('no-execute: the stack, a mapping, the heap and the data cannot be run, as natively; executable_heap allows it', async (t) => {
  if (!kvmAvailable(t)) return;
  const platform = probePlatform();
  for (const executableHeap of [false, true]) {
    await withForks({ executableHeap }, async (vm, fresh, freshState) => {
      for (const url of ['/execstack', '/execmmap', '/execheap', '/execbrk', '/execdata']) {
        const res = vm.request({ method: 'GET', url });
        if (executableHeap || !platform.nx) {
          t.equal(res.response.body.toString(), 'ran=42', `${url}: runs with executable_heap${platform.nx ? '' : ' (no NX on this CPU)'}`);
        } else {
          t.equal(native(url).status, 128 + 11, `${url}: natively SIGSEGV`);
          t.equal(res.failure?.code, 'TSKVM_ERR_GUEST_FAULT', `${url}: a guest fault`);
          t.match(res.failure?.message, /page fault \(#PF\) at rip 0x[0-9a-f]+: instruction fetch at 0x[0-9a-f]+ \(protection violation\)/, `${url}: an instruction fetch from a no-execute page`);
        }
        assertLikeFresh(t, vm, fresh, freshState, `${url}${executableHeap ? ' (executable_heap)' : ''}`);
      }
    });
  }
});

t.test('an exception in the host while serving: 500 TSKVM_ERR_INTERNAL naming the call, no stack to the client, and a reset', async (t) => {
  if (!kvmAvailable(t)) return;
  const warnings: string[] = [];
  const GETPID = 39;
  const real = syscallTable[GETPID]!;
  t.teardown(() => { syscallTable[GETPID] = real; });
  await withForks({ warnings }, async (vm, fresh, freshState) => {
    t.equal(get(vm, '/segments').status, 200, 'first the request changes FS and GS');
    // Next a request whose syscall makes the host throw: /stubjump calls getpid through the stub.
    syscallTable[GETPID] = { ...real, handler: () => { throw new RangeError('injected host failure'); } };
    const res = vm.request({ method: 'GET', url: '/stubjump' });
    syscallTable[GETPID] = real;
    t.equal(res.response.status, 500);
    t.equal(res.failure?.code, 'TSKVM_ERR_INTERNAL');
    t.match(res.response.body.toString(), /^the host failed in syscall getpid\(\): injected host failure\n$/, 'names the call, one line');
    t.notMatch(res.response.body.toString(), /at .*\.(ts|js):\d+/, 'no stack trace');
    t.match(warnings.join('\n'), /injected host failure[^]*at .*attacks\.test/, 'the stack goes to the log');
    assertLikeFresh(t, vm, fresh, freshState, 'after the host failure');
  });
});
