// Guest programs under `tskvm run`, each compared with the same binary run natively:
// stdout, stderr and exit status must be identical (differential testing).
import t from 'tap';
import { assertSameOutcome, guestPath, kvmAvailable, runNative, runTskvm } from './helpers/differential.js';

const FLAVOURS = ['glibc', 'pie', 'musl'] as const;
const ENV = { LANG: 'C', HOME: '/nonexistent', GREETING: 'hello from the environment' };

t.test('hello world, every flavour and the libc-free one', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const bin of [...FLAVOURS.map((f) => `hello.${f}`), 'nolibc.raw']) {
    const native = runNative(guestPath(bin), []);
    t.match(native.stdout.toString(), /hello/, `${bin} natively prints hello`);
    assertSameOutcome(t, runTskvm(guestPath(bin), []), native, bin);
  }
});

t.test('argv, envp and auxv reach the program as they do natively', async (t) => {
  if (!kvmAvailable(t)) return;
  const args = ['--no-ids', 'one', 'two words', '', 'ünïcödé', '-x=y'];
  for (const f of FLAVOURS) {
    const bin = guestPath(`args.${f}`);
    assertSameOutcome(t, runTskvm(bin, args, { env: ENV }), runNative(bin, args, { env: ENV }), f);
  }
});

t.test('a syscall keeps every register but rax, rcx and r11, and the flags (the sysretq or jmp return)', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const f of FLAVOURS) {
    const bin = guestPath(`sysregs.${f}`);
    const native = runNative(bin, []);
    t.equal(native.status, 0, `${f}: natively nothing changes`);
    assertSameOutcome(t, runTskvm(bin, []), native, f);
  }
});

t.test('a 64 MiB computation gives the native result', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const f of FLAVOURS) {
    const bin = guestPath(`compute.${f}`);
    assertSameOutcome(t, runTskvm(bin, [], { maxMemoryMiB: 256 }), runNative(bin, []), f);
  }
});

t.test('heap growth: brk and mmap, 256 MiB in small and large blocks', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const f of FLAVOURS) {
    const bin = guestPath(`heap.${f}`);
    const native = runNative(bin, []);
    t.equal(native.status, 0, `${f}: native heap run succeeds`);
    assertSameOutcome(t, runTskvm(bin, [], { maxMemoryMiB: 512 }), native, f);
  }
});

t.test('stdin passes through, in odd-sized chunks', async (t) => {
  if (!kvmAvailable(t)) return;
  const input = Buffer.alloc(300_000);
  for (let i = 0; i < input.length; i++) input[i] = (i * 7 + (i >> 9)) & 0xff;
  for (const f of FLAVOURS) {
    const bin = guestPath(`stdin.${f}`);
    assertSameOutcome(t, runTskvm(bin, [], { input }), runNative(bin, [], { input }), f);
  }
});

t.test('unknown syscalls answer ENOSYS and are reported once each', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const f of FLAVOURS) {
    const bin = guestPath(`enosys.${f}`);
    const native = runNative(bin, []);
    const vm = runTskvm(bin, []);
    t.equal(vm.stdout.toString(), native.stdout.toString(), `${f}: same ENOSYS results`);
    t.equal(vm.status, native.status, `${f}: same exit status`);
    const reports = vm.stderr.toString().split('\n').filter((l) => l.startsWith('tskvm: unsupported syscall'));
    t.ok(reports.some((l) => l.includes(' 999:')), `${f}: syscall 999 reported`);
    t.equal(new Set(reports).size, reports.length, `${f}: each number reported once`);
  }
});

t.test('--trace prints the syscalls strace-style', async (t) => {
  if (!kvmAvailable(t)) return;
  const vm = runTskvm(guestPath('hello.glibc'), [], { trace: true });
  t.equal(vm.status, 0);
  t.equal(vm.stdout.toString(), runNative(guestPath('hello.glibc'), []).stdout.toString(), 'stdout unchanged by tracing');
  const trace = vm.stderr.toString();
  t.match(trace, /^brk\(0x0\) = 0x[0-9a-f]+$/m, 'brk with a hex result');
  t.match(trace, /^arch_prctl\(ARCH_SET_FS, 0x[0-9a-f]+\) = 0$/m, 'arch_prctl decoded');
  t.match(trace, /^write\(1, "hello, world\\n", 13\) = 13$/m, 'write shows the bytes written');
  t.match(trace, /^exit_group\(0\) = 0$/m, 'exit_group');
  t.match(trace, /^\+\+\+ exited with 0 \+\+\+$/m, 'exit line');
});
