// What a large address space costs (docs/ARCHITECTURE.md, "Memory slots, and address spaces past
// 4 GiB"): the same request program booted with the default 256 MiB, with a sparse 64 GiB address
// space holding 256 MiB, and with 4 GiB and 16 GiB of plain (dense) memory, side by side with the
// exit floor measured in this run:
//
//   node bench/address-space.mjs [--quick] [--json FILE]
//
//   boot            Machine + main() to wait_for_requests, ms
//   fork            a new RequestVm (VM, memory slots, process state), ms
//   request+settle  a warm GET, and its reset, µs (median)
//   settle          the reset alone, µs (median)
//   kernel / fork   VmallocUsed growth per fork, 20 forks (KVM's per-slot bookkeeping), KiB
//
// Sparse, KVM gets a 256 MiB slot only for each piece that holds mappings: the program's image, its
// stack; dense, it gets every piece.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { platform } from '../dist/index.js';
import { bootProgram } from '../dist/runtime/frozen-program.js';
import { RequestVm } from '../dist/runtime/request-vm.js';
import { EmptyFile, SinkFile } from '../dist/syscalls/open-files/memory-file.js';
import { bareFloorUs, fmt, median, now, printTable, quick, root, writeJsonOption } from './lib.mjs';

const make = spawnSync('make', ['-s', '-C', join(root, 'bench/guests')], { stdio: 'inherit' });
if (make.status !== 0) throw new Error('cannot build bench/guests');
const hello = join(root, 'bench/out/guests/hello');
const discard = () => {};
const forkOptions = { maxRequestTimeMs: 8000, ephemeral: true, output: () => discard, log: discard, warn: (m) => console.warn(m) };
const REQUESTS = quick ? 1000 : 5000;
const FORKS = 20;

const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'))[1]);

function measure(label, memory) {
  const t0 = now();
  const booted = bootProgram(readFileSync(hello), hello, {
    ...memory, maxRequestMemoryMiB: 64, stdio: [new EmptyFile(), new SinkFile(discard, 'stdout'), new SinkFile(discard, 'stderr')],
  });
  const bootMs = now() - t0;
  const forkTimes = [];
  const vmalloc0 = kib('VmallocUsed');
  const forks = [];
  for (let i = 0; i < FORKS; i++) {
    const t = now();
    forks.push(new RequestVm(booted.frozen, forkOptions));
    forkTimes.push(now() - t);
  }
  const vmallocPerFork = (kib('VmallocUsed') - vmalloc0) / FORKS;
  const vm = forks[0];
  const total = [];
  const settle = [];
  for (let i = 0; i < REQUESTS; i++) {
    const a = now();
    const r = vm.request({ method: 'GET', url: '/' });
    if (r.response.status !== 200) throw new Error(`${label}: status ${r.response.status}`);
    const b = now();
    vm.settle();
    const c = now();
    if (i >= REQUESTS / 10) {
      total.push((c - a) * 1000);
      settle.push((c - b) * 1000);
    }
  }
  for (const f of forks) f.close();
  booted.machine.close();
  return { label, bootMs, forkMs: median(forkTimes), requestUs: median(total), settleUs: median(settle), vmallocPerFork };
}

const started = now();
const floor = bareFloorUs(quick ? 20000 : 100000, quick ? 3 : 7);
const cases = [
  measure('256 MiB (the default)', { maxMemoryMiB: 256 }),
  measure('64 GiB sparse, 256 MiB of it', { maxMemoryMiB: 256, addressSpaceMiB: 65536 }),
  measure('4 GiB dense', { maxMemoryMiB: 4096 }),
  measure('16 GiB dense', { maxMemoryMiB: 16384 }),
];
const base = cases[0];
const info = platform();
console.log(`\ntskvm address-space costs — ${info.description}; exit floor ${fmt(floor)} µs; node ${process.version}; ${((now() - started) / 1000).toFixed(0)} s\n`);
printTable(['memory', 'boot', 'fork', 'request + settle', '× floor', 'settle', 'kernel memory / fork', '× the default\'s'], cases.map((c) => [
  c.label, `${fmt(c.bootMs)} ms`, `${fmt(c.forkMs)} ms`, `${fmt(c.requestUs)} µs`, `${(c.requestUs / floor).toFixed(1)}×`, `${fmt(c.settleUs)} µs`,
  `${fmt(c.vmallocPerFork)} KiB`, `${(c.vmallocPerFork / base.vmallocPerFork).toFixed(1)}×`,
]));
writeJsonOption({ platform: info, node: process.version, floorUs: floor, cases });
