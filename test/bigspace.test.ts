// A sparse address space of up to 64 GiB (`addressSpaceMiB`, `--address-space`, the VMOD's
// address_space): programs map memory far above 4 GiB and the result is what Linux gives; only the
// pieces of the space that hold mappings have memory (memory-slots.ts), their number bounded by
// max memory; the host reaches guest memory through views of at most 2 GiB; a request's far
// mappings are gone after its reset.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { assertSameOutcome, guestPath, kvmAvailable, runNative, runTskvm } from './helpers/differential.js';
import { bootProgram, type BootedProgram, type BootOptions } from '../src/runtime/frozen-program.js';
import { RequestVm } from '../src/runtime/request-vm.js';
import { EmptyFile, SinkFile } from '../src/syscalls/open-files/memory-file.js';
import { GuestRam } from '../src/paging/guest-ram.js';
import { GuestFault } from '../src/paging/guest-memory.js';
import { Machine } from '../src/hypervisor/machine.js';
import { TskvmError } from '../src/errors.js';

const GiB = 2 ** 30;
const SPACE = ['--address-space', '65536'];

t.test('memory at 8, 40 and 63 GiB: filled, moved through a pipe, grown, unmapped and mapped again, as natively', (t) => {
  if (!kvmAvailable(t)) return t.end();
  for (const flavour of ['glibc', 'musl']) {
    const bin = guestPath(`bigspace.${flavour}`);
    const native = runNative(bin, ['far']);
    t.equal(native.status, 0, `${flavour}: natively it works`);
    const vm = runTskvm(bin, ['far'], { maxMemoryMiB: 1024, extraFlags: SPACE });
    assertSameOutcome(t, vm, native, flavour);
  }
  t.end();
});

t.test('without a larger address space, memory stops at max memory', (t) => {
  if (!kvmAvailable(t)) return t.end();
  const vm = runTskvm(guestPath('bigspace.glibc'), ['far'], { maxMemoryMiB: 1024 });
  t.match(vm.stdout.toString(), /^mmap at 8 GiB: (File exists|Cannot allocate memory)\n$/, 'MAP_FIXED_NOREPLACE past the top fails');
  t.equal(vm.status, 1);
  t.end();
});

t.test('max memory bounds how many pieces of the space may hold mappings', (t) => {
  if (!kvmAvailable(t)) return t.end();
  // 256 MiB of memory: its own piece and two more. The program's image and its stack hold two, so one
  // page far away fits and the next ones, each in another GiB, do not: ENOMEM, as when memory runs out.
  const vm = runTskvm(guestPath('bigspace.glibc'), ['spread', '4'], { maxMemoryMiB: 256, extraFlags: SPACE });
  t.equal(vm.stdout.toString(), [
    'page 1: Cannot allocate memory', 'page 2: Cannot allocate memory', 'page 3: Cannot allocate memory', '1 of 4 mapped', '',
  ].join('\n'));
  t.equal(vm.status, 0);
  const roomy = runTskvm(guestPath('bigspace.glibc'), ['spread', '4'], { maxMemoryMiB: 1024, extraFlags: SPACE });
  t.equal(roomy.stdout.toString(), '4 of 4 mapped\n', 'with 1 GiB, four far pages fit');
  t.end();
});

t.test('a write where nothing is mapped is a fault, as natively a SIGSEGV', (t) => {
  if (!kvmAvailable(t)) return t.end();
  const bin = guestPath('bigspace.glibc');
  const native = runNative(bin, ['wild']);
  const vm = runTskvm(bin, ['wild'], { maxMemoryMiB: 256, extraFlags: SPACE });
  t.equal(vm.stdout.toString(), 'writing to 20 GiB\n', 'the program stops at the write');
  t.equal(vm.status, native.status, 'killed as by SIGSEGV');
  t.match(vm.stderr.toString(), /unmapped memory at 0x500000000/, 'the fault names the address');
  t.end();
});

/** The request program req-NAME booted with `options` and an ephemeral fork of it, for `body`; both closed after. */
function withFork(name: string, options: Partial<BootOptions>, body: (vm: RequestVm, booted: BootedProgram) => void): void {
  const path = guestPath(`req-${name}`);
  const sink = new SinkFile(() => {}, 'stdout');
  const booted = bootProgram(readFileSync(path), path, { env: [`KVM_NAME=${name}`], stdio: [new EmptyFile(), sink, sink], log: () => {}, ...options });
  const vm = new RequestVm(booted.frozen, { maxRequestTimeMs: 10_000, ephemeral: true, output: () => () => {}, log: () => {}, warn: () => {} });
  try {
    body(vm, booted);
  } finally {
    vm.close();
    booted.machine.close();
  }
}

t.test('a request maps memory far away; after each reset it is gone, and the frozen page at 16 GiB is back', (t) => {
  if (!kvmAvailable(t)) return t.end();
  withFork('farmem', { maxMemoryMiB: 512, addressSpaceMiB: 65536, maxRequestMemoryMiB: 64 }, (vm, booted) => {
    // 512 MiB: four pieces, three of them the frozen program's (its image, 16 GiB, its stack). Each
    // request maps in another piece, which it can only if the last request's piece was taken back.
    for (const gib of [32, 32, 33, 40, 32]) {
      const res = vm.request({ method: 'GET', url: '/', arg: String(gib) });
      t.equal(res.response.body.toString(), '16g=frozen far=mapped zero', `request at ${gib} GiB: nothing of the one before`);
      vm.settle();
    }

    const state = vm.inspect();
    t.same(state.differingPages, [], 'memory equals the frozen program\'s');
    t.same(state.systemWrites, [], 'nothing wrote the hypervisor\'s pages');
    // Without resets (a persistent fork), the second request finds the first one's mapping and page.
    const kept = new RequestVm(booted.frozen, { maxRequestTimeMs: 10_000, ephemeral: false, output: () => () => {}, log: () => {}, warn: () => {} });
    try {
      t.equal(kept.request({ method: 'GET', url: '/', arg: '48' }).response.body.toString(), '16g=frozen far=mapped zero');
      t.equal(kept.request({ method: 'GET', url: '/', arg: '48' }).response.body.toString(), '16g=changed by a request far=File exists zero',
        'a persistent fork keeps them: the checks above can fail');
    } finally {
      kept.close();
    }
  });
  t.end();
});

t.test('a request program with 4 GiB of memory: its stack above 2^31, requests served', (t) => {
  if (!kvmAvailable(t)) return t.end();
  // The host once aligned the handler's stack with 32-bit arithmetic: every request failed here.
  withFork('hello', { maxMemoryMiB: 4096 }, (vm) => {
    for (let i = 0; i < 3; i++) {
      const res = vm.request({ method: 'GET', url: '/' });
      t.equal(res.response.status, 200, `request ${i}: ${res.failure?.message ?? 'served'}`);
    }
  });
  t.end();
});

t.test('the host side: views of guest memory across GiB boundaries, and pieces without memory refused', (t) => {
  // 8 GiB sparse, room for four pieces: no VM needed, the views are the host's.
  const ram = GuestRam.create(8 * GiB, 0, 'tskvm-test', { pieceBudget: 4 });
  try {
    const mem = ram.memory;
    t.same(ram.back(GiB - 4096, GiB + 4096), [3, 4], 'two pieces around the 1 GiB boundary');
    const data = Buffer.from('across the first GiB boundary of guest memory');
    mem.put(GiB - 20, data);
    t.equal(Buffer.from(mem.read(GiB - 20, data.length)).toString(), data.toString(), 'read back through one view');
    t.equal(mem.cString(GiB - 20), data.toString(), 'a string read up to its NUL');
    mem.setU64(GiB - 4, 0x1122334455667788n);
    t.equal(mem.u64n(GiB - 4), 0x1122334455667788n, 'a value split over the boundary');
    t.equal(mem.u32(GiB), 0x11223344, 'its high half from the next GiB');
    t.throws(() => mem.read(2 * GiB, 8), GuestFault, 'a piece with no memory: GuestFault');
    t.throws(() => mem.put(GiB + 256 * 2 ** 20 - 4, Buffer.alloc(8)), GuestFault, 'a range running into one');
    t.same(ram.back(7 * GiB, 7 * GiB + 4096), [28], 'a third piece');
    t.same(ram.back(8 * GiB - 4096, 8 * GiB), [31], 'a fourth');
    t.equal(ram.back(5 * GiB, 5 * GiB + 4096), null, 'a fifth: over the budget');
    t.same(ram.backedPieces(), [3, 4, 28, 31]);
    mem.put(8 * GiB - 8, Buffer.from('the top!'));
    t.equal(Buffer.from(mem.read(8 * GiB - 8, 8)).toString(), 'the top!', 'the last bytes, in the last view');
  } finally {
    ram.close();
  }
  t.end();
});

t.test("memory at Go's first address and code at another (remappings), as natively", (t) => {
  if (!kvmAvailable(t)) return t.end();
  const remaps = ['--remap', '0xc000000000:256', '--remap', 'd000000000:2:exec'];
  for (const flavour of ['glibc', 'musl']) {
    const bin = guestPath(`bigspace.${flavour}`);
    const native = runNative(bin, ['hint']);
    t.match(native.stdout.toString(), /^hint taken\n[^]*returns 42\n$/, `${flavour}: natively the hints are taken`);
    assertSameOutcome(t, runTskvm(bin, ['hint'], { maxMemoryMiB: 256, extraFlags: remaps }), native, flavour);
    assertSameOutcome(t, runTskvm(bin, ['hint'], { maxMemoryMiB: 256, extraFlags: [...remaps, '--address-space', '16384'] }), native, `${flavour}, sparse`);
  }
  const bin = guestPath('bigspace.glibc');
  t.equal(runTskvm(bin, ['hint'], { maxMemoryMiB: 256 }).stdout.toString(), 'hint not taken\n', 'without a remapping the hint is not taken');
  const noExec = runTskvm(bin, ['hint'], { maxMemoryMiB: 256, extraFlags: ['--remap', 'c000000000:256', '--remap', 'd000000000:2'] });
  t.equal(noExec.status, 139, 'code in a remapping that is not executable faults');
  t.match(noExec.stderr.toString(), /rip 000000d000001000/, 'at the code');
  t.end();
});

t.test('a request writes to a remapping; the reset takes it back', (t) => {
  if (!kvmAvailable(t)) return t.end();
  withFork('farmem', { maxMemoryMiB: 512, addressSpaceMiB: 32768, remaps: [{ address: 0xc000000000, sizeMiB: 64 }] }, (vm) => {
    // 768 GiB is 0xc000000000: each request maps 1 MiB there, finds it zero, and writes.
    for (let i = 0; i < 3; i++) t.equal(vm.request({ method: 'GET', url: '/', arg: '768' }).response.body.toString(), '16g=frozen far=mapped zero', `request ${i}`);
    vm.settle();
    t.same(vm.inspect().differingPages, [], 'memory equals the frozen program\'s');
  });
  t.end();
});

t.test('address spaces that cannot be', (t) => {
  if (!kvmAvailable(t)) return t.end();
  const file = readFileSync(guestPath('hello.glibc'));
  const code = (options: ConstructorParameters<typeof Machine>[2]): string => {
    try {
      new Machine(file, guestPath('hello.glibc'), options).close();
      return 'none';
    } catch (e) {
      return e instanceof TskvmError ? e.code : String(e);
    }
  };
  t.equal(code({ maxMemoryMiB: 512, addressSpaceMiB: 256 }), 'TSKVM_ERR_CONFIG', 'smaller than max memory');
  t.equal(code({ maxMemoryMiB: 512, addressSpaceMiB: 65536 * 2 }), 'TSKVM_ERR_CONFIG', 'past 64 GiB');
  t.equal(code({ maxMemoryMiB: 512, addressSpaceMiB: 65536, sharedMemoryMiB: 64 }), 'TSKVM_ERR_CONFIG', '64 GiB plus shared memory');
  t.equal(code({ maxMemoryMiB: 512, addressSpaceMiB: 65536 }), 'none', '64 GiB');
  const remap = (address: number, sizeMiB: number): string => code({ maxMemoryMiB: 512, remaps: [{ address, sizeMiB }] });
  t.equal(remap(0x1000_0000, 2), 'TSKVM_ERR_CONFIG', 'a remapping inside the address space');
  t.equal(remap(0xc000_0000_01, 2), 'TSKVM_ERR_CONFIG', 'one not 2 MiB-aligned');
  t.equal(remap(2 ** 47 - 2 ** 21, 4), 'TSKVM_ERR_CONFIG', 'one past user space');
  t.equal(remap(0xc000000000, 4 * 1024), 'TSKVM_ERR_CONFIG', 'one reaching 4 GiBs (more page tables than there is room for)');
  t.equal(remap(0xc000000000, 3 * 1024), 'none', 'three GiBs');
  t.equal(code({ maxMemoryMiB: 512, remaps: [{ address: 0xc000000000, sizeMiB: 4 }, { address: 0xc000200000, sizeMiB: 2 }] }), 'TSKVM_ERR_CONFIG', 'overlapping');
  t.end();
});
