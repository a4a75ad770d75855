// Core hypervisor benchmarks (issue "core hypervisor"): every number is measured
// side by side in this one run and reported as a ratio, because these machines
// are noisy and absolute times drift.
//
//   node bench/core.mjs [--quick] [--json FILE]
//
// (a) exit floor: a guest that only does `out` (the sys_is_debug hypercall) in a loop,
//     beside the bare KVM floor of the same loop driven by a C program (bench/kvm-floor.c)
// (b) emulated syscall round trip: getppid in a loop, as a ratio to (a)
// (c) cold start: create + boot + exit of a static hello, in-process and as a process, vs native
// (d) CPU-bound work in the VM vs native: sha256 of 64 MiB, and a 64 MiB memory-touching loop
// (e) a signal round trip: raise() into a handler and back (test/guests/sigloop.c), vs native and vs (a)
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import Benchmark from 'benchmark';
import { platform } from '../dist/index.js';
import { bareFloorUs, fmt, median, now, perIteration, printTable, quick, root, runInProcess, writeJsonOption } from './lib.mjs';

const guest = (name) => join(root, 'test/guests/bin', name);
const cli = join(root, 'dist/cli/main.js');

spawnSync('make', ['-s', '-C', join(root, 'test/guests')], { stdio: 'inherit' });

function spawnMs(cmd, args, rounds) {
  const samples = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = now();
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    samples.push(now() - t0);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}`);
  }
  return median(samples);
}

function benchmarkMs(name, fn) {
  return new Promise((resolve) => {
    new Benchmark(name, fn, { minSamples: quick ? 10 : 40, maxTime: quick ? 2 : 5 })
      .on('complete', function () { resolve(this.stats.mean * 1000); })
      .run();
  });
}

const rows = [];
const row = (what, tskvm, reference, unit, target) => {
  const ratio = reference ? tskvm / reference : null;
  rows.push({ what, tskvm, reference, unit, ratio, target });
};

const info = platform();
const rounds = quick ? 3 : 7;

// (a) + (b)
const bareUs = bareFloorUs(quick ? 10000 : 40000, rounds);
const floorUs = perIteration(guest('hypercall.glibc'), 2000, quick ? 12000 : 42000, rounds);
const syscallUs = perIteration(guest('getppid.glibc'), 2000, quick ? 12000 : 42000, rounds);
const stubUs = perIteration(guest('getppid.glibc'), 2000, quick ? 12000 : 42000, rounds, { rewriteSyscalls: false });
row('exit floor: hypercall `out` round trip, through tskvm vs bare KVM (C)', floorUs, bareUs, 'µs', 'the floor');
row('emulated syscall (getppid) vs exit floor', syscallUs, floorUs, 'µs', '≤ 1.25×');
row('same, every call through the LSTAR stub (rewriting off)', stubUs, floorUs, 'µs', 'report');

// (c)
runInProcess(guest('hello.glibc'), []); // warm: platform probe, JIT
const coldInProcess = await benchmarkMs('cold start in-process', () => runInProcess(guest('hello.glibc'), []));
const nativeSpawn = spawnMs(guest('hello.glibc'), [], quick ? 10 : 30);
const tskvmSpawn = spawnMs(process.execPath, [cli, 'run', guest('hello.glibc')], quick ? 5 : 15);
row('cold start, in-process: create + boot + exit (hello)', coldInProcess, nativeSpawn, 'ms', '≤ 3 ms');
row('cold start, `tskvm run hello` process vs native process', tskvmSpawn, nativeSpawn, 'ms', 'report');

// (d)
const mib = '64';
const cpuRounds = quick ? 2 : 5;
const sha = median(Array.from({ length: cpuRounds }, () => runInProcess(guest('sha256.glibc'), [mib])));
const shaNative = spawnMs(guest('sha256.glibc'), [mib], cpuRounds);
row('sha256 of 64 MiB (CPU-bound)', sha, shaNative, 'ms', '≤ 1.05×');
const touch = median(Array.from({ length: cpuRounds }, () => runInProcess(guest('memtouch.glibc'), [mib])));
const touchNative = spawnMs(guest('memtouch.glibc'), [mib], cpuRounds);
row('touch 64 MiB (memory-bound: first-touch faults)', touch, touchNative, 'ms', 'report');

// (e)
const sigUs = perIteration(guest('sigloop.glibc'), 1000, quick ? 6000 : 21000, rounds);
const nativePer = (n1, n2) => ((spawnMs(guest('sigloop.glibc'), [String(n2)], rounds) - spawnMs(guest('sigloop.glibc'), [String(n1)], rounds)) * 1000) / (n2 - n1);
const sigNativeUs = nativePer(1000, quick ? 101000 : 401000);
row('signal round trip: raise() → handler → rt_sigreturn, vs native', sigUs, sigNativeUs, 'µs', 'report');
row('same, vs the exit floor (raise is 4 calls, the return 1)', sigUs, floorUs, 'µs', 'report');

console.log(`\ntskvm core benchmarks — ${info.description}; ${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}; node ${process.version}\n`);
printTable(['measurement', 'tskvm', 'reference (native / floor)', 'ratio', 'target'], rows.map((r) => [
  r.what, `${fmt(r.tskvm)} ${r.unit}`, r.reference === null ? '—' : fmt(r.reference) + ' ' + r.unit, r.ratio === null ? '—' : r.ratio.toFixed(2) + '×', r.target,
]));
writeJsonOption({ platform: info, node: process.version, rows });
