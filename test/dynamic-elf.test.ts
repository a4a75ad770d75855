// Dynamically linked programs: the system's dynamic loader, run by tskvm as Linux's exec runs it,
// maps the program's libraries with the guest's own syscalls. Debian's own programs and dynamic
// builds of the test guests, each compared with its native run; a dynamic request program through
// the freeze and its forks; and the hostile cases — a loader that is not allowed, not an ELF,
// dynamic itself, huge, a FIFO, overlapping the program, or named by a corrupt PT_INTERP.
import t, { type Test } from 'tap';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { assertSameOutcome, guestPath, kvmAvailable, repoRoot, runNative, runTskvm } from './helpers/differential.js';
import { bootProgram } from '../src/runtime/frozen-program.js';
import { RequestVm } from '../src/runtime/request-vm.js';
import { EmptyFile, SinkFile } from '../src/syscalls/open-files/memory-file.js';
import { Program, systemLibraryPaths, TskvmError } from '../src/index.js';

// Short: the hostile loaders' paths must fit where PT_INTERP's 28 bytes were.
const scratch = mkdtempSync('/tmp/tkd-');
t.teardown(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs `bin args` natively and in tskvm with the same environment; asserts the same outcome. */
function same(t: Test, label: string, bin: string, args: string[], opts: { allow?: string[]; env?: Record<string, string>; input?: string } = {}): void {
  const native = runNative(bin, args, { env: opts.env, input: opts.input });
  const vm = runTskvm(bin, args, { allow: opts.allow, env: opts.env, input: opts.input });
  assertSameOutcome(t, vm, native, label);
}

t.test("Debian's own dynamically linked programs run as they do natively", async (t) => {
  if (!kvmAvailable(t)) return;
  // A directory whose listing does not depend on when the test runs: fixed names, sizes, modes and
  // times (--time-style=+X hides them anyway), listed with its parent also visible, so that ".." is
  // the real directory in both runs. Owner names come from /etc/passwd and /etc/group.
  const root = join(scratch, 'ls-root');
  const dir = join(root, 'dir');
  mkdirSync(join(dir, 'sub'), { recursive: true });
  writeFileSync(join(dir, 'a.txt'), 'alpha\n');
  writeFileSync(join(dir, 'b.bin'), Buffer.alloc(5000, 7));
  chmodSync(join(dir, 'b.bin'), 0o640);
  for (const p of [join(dir, 'a.txt'), join(dir, 'b.bin'), join(dir, 'sub'), dir, root]) utimesSync(p, 1_000_000_000, 1_000_000_000);
  const names = ['/etc/passwd', '/etc/group', '/etc/nsswitch.conf'].filter(existsSync);
  same(t, 'ls -la', '/bin/ls', ['-la', '--time-style=+X', dir], { allow: [root, ...names] });

  const py = "import json, hashlib, re; print(json.dumps({'k': [1, 2.5, None]}, sort_keys=True)); " +
    "print(hashlib.sha256(b'tskvm').hexdigest(), hashlib.md5(b'x').hexdigest()); print(re.findall(r'\\d+', 'a12b345c6'))";
  // /usr/bin/python3's standard library lives in /usr/lib/python3.X: a system library directory.
  same(t, 'python3', '/usr/bin/python3', ['-c', py]);
  same(t, 'python3 threading', '/usr/bin/python3', ['-c',
    'import threading\nout = []\ndef work(i): out.append(sum(range(i * 1000)))\n' +
    'ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]\n[t.start() for t in ts]; [t.join() for t in ts]\nprint(sorted(out))']);
  same(t, 'lua5.4', '/usr/bin/lua5.4', ['-e', 'local t = {} for i = 1, 10 do t[#t + 1] = i * i end print(table.concat(t, ","), string.format("%5.2f", math.pi))']);
  // HOME: sqlite3 looks for ~/.sqliterc there, and warns natively too when it has none.
  const home = join(scratch, 'home');
  mkdirSync(home, { recursive: true });
  same(t, 'sqlite3', '/usr/bin/sqlite3', [':memory:'], {
    allow: [home], env: { HOME: home },
    input: "create table t(a, b); insert into t values (1, 'x'), (2, 'y'), (3, 'z');\nselect group_concat(b, '-'), sum(a) from t;\nselect sqlite_version() = sqlite_version();\n",
  });
  const data = join(scratch, 'gz-in.txt');
  writeFileSync(data, 'tskvm '.repeat(5000));
  utimesSync(data, 1_000_000_000, 1_000_000_000);
  same(t, 'gzip -c', '/bin/gzip', ['-c', data], { allow: [data] });
  same(t, 'gzip -d', '/bin/gzip', ['-dc'], { input: execFileSync('/bin/gzip', ['-c', data]).toString('latin1') });
});

t.test('test guests built with plain gcc (dynamic PIEs) run as they do natively', async (t) => {
  if (!kvmAvailable(t)) return;
  same(t, 'hello.dyn', guestPath('hello.dyn'), []);
  // args prints its auxv: AT_BASE is where the loader was put, which differs between any two runs.
  const args = ['one', 'two words', ''];
  const env = { A: '1', B: 'x=y' };
  const loaderAt = (out: Buffer): string => out.toString().replace(/^AT_BASE=[1-9]\d*$/m, 'AT_BASE=(nonzero)');
  const nativeArgs = runNative(guestPath('args.dyn'), args, { env });
  const vmArgs = runTskvm(guestPath('args.dyn'), args, { env });
  t.equal(loaderAt(vmArgs.stdout), loaderAt(nativeArgs.stdout), 'args.dyn: argv, envp, auxv (AT_BASE set)');
  t.match(loaderAt(vmArgs.stdout), /AT_BASE=\(nonzero\)/);
  t.equal(vmArgs.status, nativeArgs.status, 'args.dyn: exit status');
  for (const flavour of ['glibc', 'dyn']) {
    // File mappings with PROT_EXEC are executable, and nothing else is (mm.ts).
    for (const mode of ['exec', 'mapexec', 'noexec', 'revoke', 'unmap', 'fixed']) {
      const bin = guestPath(`execmap.${flavour}`);
      const native = runNative(bin, [mode]);
      const vm = runTskvm(bin, [mode]);
      t.equal(vm.stdout.toString(), native.stdout.toString(), `execmap.${flavour} ${mode}: stdout`);
      t.equal(vm.status, native.status, `execmap.${flavour} ${mode}: exit status ${native.status}`);
      if (native.status !== 0) t.match(vm.stderr.toString(), /instruction fetch at 0x[0-9a-f]+ \(protection violation\)/, `execmap.${flavour} ${mode}: names the fetch`);
    }
  }
  // Code spread over 700 separate 2 MiB pages: each needs a page table of its own, and past the room
  // for them (below USER_START), mmap says ENOMEM; what was mapped before still runs.
  for (const flavour of ['glibc', 'dyn']) {
    const bin = guestPath(`execmap.${flavour}`);
    t.equal(runNative(bin, ['spread']).stdout.toString(), 'mapped 700\n42\n', `execmap.${flavour} spread: all 700 natively`);
    const vm = runTskvm(bin, ['spread'], { maxMemoryMiB: 2048 });
    const got = /^mapped (\d+): Cannot allocate memory\n42\n$/.exec(vm.stdout.toString());
    t.ok(got && Number(got[1]) > 400, `execmap.${flavour} spread: ENOMEM after ${got?.[1]} (room for ~490 tables)`);
    t.equal(vm.status, 0, `execmap.${flavour} spread: exits normally`);
  }
  // Threads (src/syscalls/threads.ts) in a dynamic program: libc.so's pthread_create, its TLS for each.
  for (const mode of [[], ['mainexit']]) same(t, `threads.dyn ${mode.join(' ')}`, guestPath('threads.dyn'), mode);
  const crash = runTskvm(guestPath('crash.dyn'), ['segv']);
  t.equal(crash.status, runNative(guestPath('crash.dyn'), ['segv']).status, 'a dynamic program crashes as natively');
  t.match(crash.stderr.toString(), /page fault \(#PF\)/);
});

t.test('--no-system-libs: the loader must come from --allow', async (t) => {
  if (!kvmAvailable(t)) return;
  const refused = runTskvm(guestPath('hello.dyn'), [], { extraFlags: ['--no-system-libs'] });
  t.equal(refused.status, 126);
  t.match(refused.stderr.toString(), /TSKVM_ERR_ELF_INTERP_NOT_FOUND/);
  t.match(refused.stderr.toString(), /ld-linux-x86-64\.so\.2, which the program may not read/);
  const granted = runTskvm(guestPath('hello.dyn'), [], { extraFlags: ['--no-system-libs'], allow: systemLibraryPaths().map((a) => a.real) });
  assertSameOutcome(t, granted, runNative(guestPath('hello.dyn'), []), 'granted with --allow');
  // A static program gets no system paths: it cannot read /etc/ld.so.cache.
  const stat = runTskvm(guestPath('files.glibc'), ['/etc/ld.so.cache']);
  t.notMatch(stat.stdout.toString(), /ld\.so\.cache.*\d+ bytes/, 'no system libraries for a static program');
});

/** A copy of `from` whose PT_INTERP names `interp` (no longer than the original). */
function withInterpreter(from: string, interp: string, to: string): string {
  const bytes = Buffer.from(readFileSync(from));
  const phoff = Number(bytes.readBigUInt64LE(32));
  const phnum = bytes.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * 56;
    if (bytes.readUInt32LE(ph) !== 3) continue;
    const offset = Number(bytes.readBigUInt64LE(ph + 8));
    const size = Number(bytes.readBigUInt64LE(ph + 32));
    if (interp.length + 1 > size) throw new Error(`${interp} is longer than the PT_INTERP room`);
    bytes.fill(0, offset, offset + size);
    bytes.write(interp, offset, 'latin1');
    bytes.writeBigUInt64LE(BigInt(interp.length + 1), ph + 32);
    bytes.writeBigUInt64LE(BigInt(interp.length + 1), ph + 40);
  }
  writeFileSync(to, bytes, { mode: 0o755 });
  return to;
}

t.test('a loader that cannot be used is refused with a code, before the program runs', async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = join(scratch, 'i');
  mkdirSync(dir, { recursive: true });
  const hello = guestPath('hello.dyn');
  const cases: Array<[string, string, () => void, RegExp]> = [
    ['not allowed', '/nonexistent/ld.so', () => {}, /TSKVM_ERR_ELF_INTERP_NOT_FOUND.*may not read \(ENOENT\)/],
    ['not an ELF', join(dir, 'text'), () => writeFileSync(join(dir, 'text'), 'not a loader\n'), /TSKVM_ERR_ELF_BAD_INTERPRETER.*not an ELF file/],
    ['dynamic itself', join(dir, 'dyn'), () => copyFileSync(hello, join(dir, 'dyn')), /TSKVM_ERR_ELF_BAD_INTERPRETER.*names a loader of its own/],
    ['huge', join(dir, 'huge'), () => { writeFileSync(join(dir, 'huge'), ''); truncateSync(join(dir, 'huge'), 65 << 20); }, /TSKVM_ERR_ELF_BAD_INTERPRETER.*more than the \d+ a loader may have/],
    ['a FIFO', join(dir, 'fifo'), () => execFileSync('mkfifo', [join(dir, 'fifo')]), /TSKVM_ERR_ELF_BAD_INTERPRETER.*not a regular file/],
    ['a directory', dir, () => {}, /TSKVM_ERR_ELF_BAD_INTERPRETER.*not a regular file/],
    // A tiny loader that asks for 3 GiB of memory (p_memsz) in a 1 GiB guest.
    ['asking for more memory than there is', join(dir, 'big'), () => {
      const tiny = Buffer.from(readFileSync(join(repoRoot, 'test', 'fixtures', 'elf', 'tiny-pie-exit7.elf')));
      tiny.writeBigUInt64LE(3n << 30n, 64 + 40);
      writeFileSync(join(dir, 'big'), tiny);
    }, /TSKVM_ERR_ELF_BAD_INTERPRETER.*more than the guest has room for/],
    // A static ET_EXEC at 0x400000, where the PIE program is placed too.
    ['overlapping the program', join(dir, 'static'), () => copyFileSync(guestPath('hello.glibc'), join(dir, 'static')), /TSKVM_ERR_ELF_BAD_INTERPRETER.*overlapping the program's/],
  ];
  for (const [label, interp, make, expected] of cases) {
    make();
    const program = withInterpreter(hello, interp, join(scratch, `prog-${label.replace(/\W+/g, '-')}`));
    const started = Date.now();
    const vm = runTskvm(program, [], { allow: [dir], timeoutMs: 30_000 });
    t.equal(vm.status, 126, `${label}: cannot execute`);
    t.match(vm.stderr.toString(), expected, `${label}: says why`);
    t.equal(vm.stdout.length, 0, `${label}: the program never ran`);
    t.ok(Date.now() - started < 20_000, `${label}: promptly`);
  }
  // Corrupt PT_INTERP strings are refused by the parser (test/fixtures/elf, interp-*.elf) and by run.
  for (const name of ['interp-no-nul.elf', 'interp-outside-file.elf']) {
    const vm = runTskvm(join(repoRoot, 'test', 'fixtures', 'elf', name), []);
    t.equal(vm.status, 126, `${name}: cannot execute`);
    t.match(vm.stderr.toString(), /TSKVM_ERR_ELF_BAD_INTERP\b/, `${name}: BAD_INTERP`);
  }
});

t.test('--trace shows the loader at work, one line per call', async (t) => {
  if (!kvmAvailable(t)) return;
  const vm = runTskvm('/bin/true', [], { trace: true });
  t.equal(vm.status, 0);
  const trace = vm.stderr.toString();
  t.match(trace, /openat\(AT_FDCWD, "\/etc\/ld\.so\.cache", O_RDONLY\|O_CLOEXEC/);
  t.match(trace, /mmap\(0x[0-9a-f]+, \d+, PROT_READ\|PROT_EXEC, MAP_PRIVATE\|MAP_FIXED\|MAP_DENYWRITE, 3, 0x[0-9a-f]+\) = 0x[0-9a-f]+/);
  t.match(trace, /mprotect\(0x[0-9a-f]+, \d+, PROT_READ\) = 0/, 'RELRO');
  t.notMatch(trace, /unsupported/, 'no call left unsupported');
  t.same(trace.split('\n').filter((line) => line.includes('ENOSYS')).map((line) => line.split('(')[0]), ['rseq'], 'only rseq answers ENOSYS (glibc then does without)');
  t.match(trace, /\+\+\+ exited with 0 \+\+\+/);
});

t.test('a dynamic request program: its libraries survive the freeze, and a request cannot leave code executable', async (t) => {
  if (!kvmAvailable(t)) return;
  const path = guestPath('req-dynmap.dyn');
  const sink = new SinkFile(() => {}, 'stdout');
  const booted = bootProgram(readFileSync(path), path, {
    env: ['KVM_NAME=dynmap'], allowed: systemLibraryPaths(), maxMemoryMiB: 256, stdio: [new EmptyFile(), sink, sink], log: () => {}, warn: () => {},
  });
  const native = execFileSync(path, ['/hello'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  for (const ephemeral of [true, false]) {
    const vm = new RequestVm(booted.frozen, { maxRequestTimeMs: 10_000, ephemeral, output: () => () => {}, log: () => {}, warn: () => {} });
    try {
      let failure = '';
      const get = (url: string): { status: number; body: string } => {
        const result = vm.request({ method: 'GET', url });
        vm.settle();
        failure = result.failure?.message ?? '';
        return { status: result.response.status, body: result.response.body.toString() };
      };
      for (let i = 0; i < 20; i++) t.same(get('/hello'), { status: 200, body: native }, `ephemeral ${ephemeral}: request ${i} calls into libc.so`);
      const mapped = get('/map');
      t.match(mapped.body, /^42 [0-9a-f]+$/, `ephemeral ${ephemeral}: a request maps code and runs it`);
      const at = mapped.body.split(' ')[1]!;
      if (!ephemeral) {
        const seen = vm.inspect();
        t.ok(seen.differingPages.some((page) => page * 4096 < 0x200000), 'a persistent fork keeps the page tables its request changed');
        t.same(seen.systemWrites, [], 'and they are executable-mapping edits, nothing else');
      }
      if (ephemeral) {
        t.same(vm.inspect().differingPages, [], 'the reset put the page tables back');
        // The same address, written without mapping anything: no-execute again after the reset.
        const poked = get(`/poke?${at}`);
        t.equal(poked.status, 500, 'code left where a request had mapped some does not run');
        t.match(failure, new RegExp(`instruction fetch at 0x${at} \\(protection violation\\)`), 'it faults on the fetch');
        t.same(vm.inspect().differingPages, [], 'and the failed request is reset too');
        t.match(get('/map').body, /^42 /, 'mapping it again works');
      }
      t.same(get('/hello'), { status: 200, body: native }, `ephemeral ${ephemeral}: still answering`);
    } finally {
      vm.close();
    }
  }
  booted.machine.close();
});

t.test('the Program API: a dynamic request program on worker threads, its libraries from allowedPaths', async (t) => {
  if (!kvmAvailable(t)) return;
  const path = guestPath('req-dynmap.dyn');
  const native = execFileSync(path, ['/hello'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const refused = await Program.load(path, { maxMemory: 256, onLog: () => {} }).then(() => null, (e: TskvmError) => e);
  t.equal(refused?.code, 'TSKVM_ERR_ELF_INTERP_NOT_FOUND', 'without allowedPaths the program cannot start');
  t.match(refused?.message, /ld-linux-x86-64\.so\.2, which the program may not read/, 'and the error says why');
  const program = await Program.load(path, { maxMemory: 256, concurrency: 2, allowedPaths: systemLibraryPaths(), onLog: () => {} });
  try {
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => program.request({ url: i % 3 === 0 ? '/map' : '/hello' })));
    answers.forEach((res, i) => {
      if (i % 3 === 0) t.match(res.body.toString(), /^42 [0-9a-f]+$/, `request ${i}: /map`);
      else t.equal(res.body.toString(), native, `request ${i}: /hello, as natively`);
    });
  } finally {
    await program.close();
  }
});
