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
import { spawnSync } from 'node:child_process';
import { openSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Benchmark from 'benchmark';
import { Machine, platform } from '../dist/index.js';
import { StdioFile } from '../dist/syscalls/fd-table.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const guest = (name) => join(root, 'test/guests/bin', name);
const cli = join(root, 'dist/cli/main.js');
const quick = process.argv.includes('--quick');
const jsonAt = process.argv.indexOf('--json');

spawnSync('make', ['-s', '-C', join(root, 'test/guests')], { stdio: 'inherit' });
const devnull = openSync('/dev/null', 'w');
const quiet = () => [new StdioFile(0), new StdioFile(devnull), new StdioFile(devnull)];

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const now = () => performance.now();

/** Wall time of one in-process create + run + close, in ms. */
function runInProcess(bin, args, options = {}) {
  const t0 = now();
  const m = Machine.fromFile(bin, { args, stdio: quiet(), ...options });
  const r = m.run();
  m.close();
  const ms = now() - t0;
  if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} exited with ${r.status}: ${r.message ?? ''}`);
  return ms;
}

/**
 * Per-iteration cost of a guest loop, startup cancelled out: time(N2) - time(N1)
 * over N2 - N1 iterations, median of several rounds.
 */
function perIteration(bin, n1, n2, rounds, options = {}) {
  const samples = [];
  for (let i = 0; i < rounds; i++) {
    const a = runInProcess(bin, [String(n1)], options);
    const b = runInProcess(bin, [String(n2)], options);
    samples.push(((b - a) * 1000) / (n2 - n1));
  }
  return median(samples);
}

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
const floorC = join(root, 'bench/out/kvm-floor');
mkdirSync(dirname(floorC), { recursive: true });
const cc = spawnSync('gcc', ['-O2', '-o', floorC, join(root, 'bench/kvm-floor.c')], { stdio: 'inherit' });
if (cc.status !== 0) throw new Error('cannot build bench/kvm-floor.c');
const bareUs = median(Array.from({ length: rounds }, () => Number(spawnSync(floorC, [quick ? '10000' : '40000'], { encoding: 'utf8' }).stdout)));
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

const fmt = (v) => (v === null ? '—' : v < 10 ? v.toFixed(2) : v.toFixed(1));
console.log(`\ntskvm core benchmarks — ${info.description}; ${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}; node ${process.version}\n`);
console.log('| measurement | tskvm | reference (native / floor) | ratio | target |');
console.log('|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.what} | ${fmt(r.tskvm)} ${r.unit} | ${r.reference === null ? '—' : fmt(r.reference) + ' ' + r.unit} | ${r.ratio === null ? '—' : r.ratio.toFixed(2) + '×'} | ${r.target} |`);
}
if (jsonAt > 0) {
  const file = process.argv[jsonAt + 1];
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify({ platform: info, node: process.version, rows }, null, 2));
}
