// The vDSO (src/paging/vdso.ts, vdso.S, src/hypervisor/guest-clock.ts): libc finds it through
// AT_SYSINFO_EHDR and reads CLOCK_REALTIME / CLOCK_MONOTONIC, gettimeofday() and time() without a
// guest exit; the values are the host's clocks; other clocks fall back to the syscall; forks have a
// clock of their own, also after a full reset.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Program } from '../src/index.js';
import { VDSO_ADDR } from '../src/paging/layout.js';
import { VDSO_CODE_FOR_TEST, vdsoImage } from '../src/paging/vdso.js';
import { guestPath, kvmAvailable, repoRoot, runTskvm } from './helpers/differential.js';

const nowNs = (): bigint => BigInt(Date.now()) * 1_000_000n;
const monoNs = (): bigint => process.hrtime.bigint();

t.test('the embedded code is vdso.S assembled', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-vdso-'));
  const as = spawnSync('gcc', ['-c', join(repoRoot, 'src/paging/vdso.S'), '-o', join(dir, 'vdso.o')], { encoding: 'utf8' });
  t.equal(as.status, 0, as.stderr);
  const ld = spawnSync('ld', ['-Ttext=0', '--oformat', 'binary', '-e', '0', '-o', join(dir, 'vdso.bin'), join(dir, 'vdso.o')], { encoding: 'utf8' });
  t.equal(ld.status, 0, ld.stderr);
  const assembled = readFileSync(join(dir, 'vdso.bin')).subarray(VDSO_CODE_FOR_TEST.at);
  t.ok(assembled.equals(VDSO_CODE_FOR_TEST.bytes), 'same bytes');
  const image = vdsoImage();
  t.ok(image.subarray(VDSO_CODE_FOR_TEST.at, VDSO_CODE_FOR_TEST.at + assembled.length).equals(assembled), 'placed at 0x300 of the image');
  t.same([...image.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], 'an ELF image');
});

for (const flavour of ['glibc', 'pie', 'musl']) {
  t.test(`${flavour}: clock reads go through the vDSO and tell the host's time`, async (t) => {
    if (!kvmAvailable(t)) return;
    const realBefore = nowNs();
    const monoBefore = monoNs();
    const run = runTskvm(guestPath(`clock.${flavour}`), [], { trace: true });
    const monoAfter = monoNs();
    const realAfter = nowNs() + 1_000_000n; // Date.now() is in whole ms
    t.equal(run.status, 0, run.stderr.toString());
    const out = Object.fromEntries(run.stdout.toString().trim().split('\n').map((l) => l.split(' ')));
    t.equal(out.vdso, `0x${VDSO_ADDR.toString(16)}`, 'AT_SYSINFO_EHDR');
    const real = BigInt(out.realtime);
    t.ok(real >= realBefore && real <= realAfter, `CLOCK_REALTIME ${real} within the run`);
    t.ok(BigInt(out.timeofday) * 1000n >= realBefore - 1000n && BigInt(out.timeofday) * 1000n <= realAfter, 'gettimeofday');
    t.ok(BigInt(out.time) >= realBefore / 1_000_000_000n && BigInt(out.time) <= realAfter / 1_000_000_000n, 'time');
    const mono = BigInt(out.monotonic);
    t.ok(mono >= monoBefore && mono <= monoAfter, `CLOCK_MONOTONIC ${mono} within the run (host's clock)`);
    t.ok(BigInt(out.coarse) >= mono && BigInt(out.coarse) <= monoAfter, 'CLOCK_MONOTONIC_COARSE');
    t.equal(out.cputime, 'ok', 'CLOCK_PROCESS_CPUTIME_ID through the fallback syscall');
    const slept = Number(out.slept) / 1e6;
    t.ok(slept >= 20 && slept < 1000, `20 ms of sleep measured as ${slept.toFixed(3)} ms`);
    t.equal(out.steps, '0', 'monotonic never goes backwards');
    const trace = run.stderr.toString();
    t.notMatch(trace, /clock_gettime\(CLOCK_(REALTIME|MONOTONIC)|gettimeofday\(|\btime\(/, 'no exit for the vDSO clocks');
    t.match(trace, /clock_gettime\(CLOCK_PROCESS_CPUTIME_ID/, 'the others are syscalls');
  });
}

t.test('each fork reads its own clock, also after a reset and a full reset', async (t) => {
  if (!kvmAvailable(t)) return;
  // reqMemLimitAfterReset 1 MiB: a request that writes 4 MiB makes the fork drop all its pages.
  const program = await Program.load(guestPath('req-clock'), { concurrency: 1, maxMemory: 64, reqMemLimitAfterReset: 1, onLog: () => {} });
  try {
    let lastMono = 0n;
    for (const arg of ['0', '0', '4', '0', '4', '0']) {
      const realBefore = nowNs();
      const monoBefore = monoNs();
      const res = await program.request({ url: '/', arg });
      const monoAfter = monoNs();
      const realAfter = nowNs() + 1_000_000n;
      const [real, mono, seconds] = res.body.toString().split(' ').map(BigInt) as [bigint, bigint, bigint];
      t.ok(real >= realBefore && real <= realAfter, `arg ${arg}: realtime within the request`);
      t.ok(mono >= monoBefore && mono <= monoAfter && mono > lastMono, `arg ${arg}: monotonic within the request, and later than the last`);
      t.equal(seconds, real / 1_000_000_000n, 'time() agrees');
      lastMono = mono;
    }
    t.ok(program.stats().totals.resets_full >= 2, 'the full resets happened');
  } finally {
    await program.close();
  }
});
