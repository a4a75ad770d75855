// The guest is hostile: crashes, endless loops and memory bombs end the program the
// way they would end it natively (the same exit status), with a message that names
// what happened — and never take the host down with them.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { guestPath, kvmAvailable, runNative, runTskvm } from './helpers/differential.js';

const CRASHES: Array<[kind: string, exception: RegExp]> = [
  ['segv', /page fault \(#PF\) at rip 0x[0-9a-f]+: write at 0x0 \(unmapped address\)/],
  ['segv-high', /page fault \(#PF\) at rip 0x[0-9a-f]+: write at 0x7fffffff0000/],
  ['ill', /invalid opcode \(#UD\) at rip 0x[0-9a-f]+/],
  ['fpe', /divide error \(#DE\) at rip 0x[0-9a-f]+/],
  ['gp', /general protection fault \(#GP\)|privileged instruction \(hlt\)/],
  ['stack', /page fault \(#PF\) at rip 0x[0-9a-f]+: write at 0x[0-9a-f]+ \(unmapped address\)/],
];

t.test('each crash kind ends like the native crash, with a report', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const flavour of ['glibc', 'musl']) {
    const bin = guestPath(`crash.${flavour}`);
    for (const [kind, exception] of CRASHES) {
      const native = runNative(bin, [kind]);
      const vm = runTskvm(bin, [kind]);
      t.equal(vm.stdout.toString(), native.stdout.toString(), `${flavour} ${kind}: stdout up to the crash`);
      t.equal(vm.status, native.status, `${flavour} ${kind}: exit status ${native.status}`);
      const stderr = vm.stderr.toString();
      t.match(stderr, exception, `${flavour} ${kind}: names the exception`);
      t.match(stderr, /rax [0-9a-f]{16}/, `${flavour} ${kind}: register dump`);
    }
    for (const kind of ['abort', 'exit3']) {
      const native = runNative(bin, [kind]);
      const vm = runTskvm(bin, [kind]);
      t.equal(vm.status, native.status, `${flavour} ${kind}: exit status ${native.status}`);
      t.equal(vm.stdout.toString(), native.stdout.toString(), `${flavour} ${kind}: stdout`);
    }
  }
});

t.test('an infinite loop is stopped by --timeout', async (t) => {
  if (!kvmAvailable(t)) return;
  const started = Date.now();
  const vm = runTskvm(guestPath('loop.glibc'), [], { timeoutSec: 1 });
  const elapsed = Date.now() - started;
  t.equal(vm.stdout.toString(), 'looping\n');
  t.equal(vm.status, 124, 'timeout status');
  t.match(vm.stderr.toString(), /timeout: the program ran longer than 1 s and was stopped at rip 0x[0-9a-f]+/);
  t.ok(elapsed < 20_000, `stopped promptly (${elapsed} ms)`);
});

t.test('a memory bomb is stopped by --max-memory, and the host keeps its memory', async (t) => {
  if (!kvmAvailable(t)) return;
  for (const flavour of ['glibc', 'musl']) {
    const vm = runTskvm(guestPath(`membomb.${flavour}`), ['100000'], { maxMemoryMiB: 128 });
    t.equal(vm.status, 0, `${flavour}: the program sees ENOMEM and exits normally`);
    const got = Number(/(\d+) MiB/.exec(vm.stdout.toString())?.[1]);
    t.ok(got > 32 && got < 128, `${flavour}: got ${got} MiB of a 128 MiB machine`);
    t.match(vm.stdout.toString(), /malloc/i, `${flavour}: stopped because malloc failed`);
  }
});

t.test('tskvm refuses what it cannot run, with a code', async (t) => {
  if (!kvmAvailable(t)) return;
  const dynamic = runTskvm('/bin/true', [], { extraFlags: ['--no-system-libs'] });
  t.equal(dynamic.status, 126);
  t.match(dynamic.stderr.toString(), /TSKVM_ERR_ELF_INTERP_NOT_FOUND.*dynamically linked/);
  const missing = runTskvm('/nonexistent/program', []);
  t.equal(missing.status, 127);
  t.match(missing.stderr.toString(), /TSKVM_ERR_PROGRAM_NOT_FOUND/);
  const notElf = runTskvm(fileURLToPath(import.meta.url), []);
  t.equal(notElf.status, 126);
  t.match(notElf.stderr.toString(), /TSKVM_ERR_ELF_NOT_ELF/);
  const tooSmall = runTskvm(guestPath('hello.glibc'), [], { maxMemoryMiB: 4 });
  t.equal(tooSmall.status, 125);
  t.match(tooSmall.stderr.toString(), /TSKVM_ERR_CONFIG/);
  // Beyond what the page tables map: a clear error, not an aborted host.
  const tooLarge = runTskvm(guestPath('hello.glibc'), [], { maxMemoryMiB: 65537 });
  t.equal(tooLarge.status, 125);
  t.match(tooLarge.stderr.toString(), /TSKVM_ERR_CONFIG.*between 16 and 65536 MiB/);
});
