// Request benchmarks: what a request to a frozen program costs, measured side
// by side in this one run against the bare KVM exit floor, because one exit is
// the unit every request pays and these machines drift from run to run.
//
//   node bench/requests.mjs [--quick] [--json FILE]
//
// 1. exit floor: bare C (bench/kvm-floor.c), two of them at once, and through tskvm (a guest hypercall loop)
// 2. warm ephemeral GET to hello: Program.request (worker thread) and RequestVm (this thread),
//    and the thread hop alone (a bare worker)
// 3. reset cost vs pages the request dirtied
// 4. fork: a new request VM, and its first request
// 5. hypercall round trip inside a request
// 6. requests/s at concurrency 1 and 2, beside a JS function doing the same work
// 7. host memory per idle fork, 1000 of them (process RSS and the kernel's share)
//
// The TinyKVM column is the measurement of docs/PLATFORMS.md, "TinyKVM on PVM, for reference", on
// this kind of machine on another day (its exit floor then may differ from today's); only the
// ratios in this run compare like with like.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { constants as perfConstants, PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MessageChannel, Worker } from 'node:worker_threads';
import { Program, platform } from '../dist/index.js';
import { bootProgram } from '../dist/runtime/frozen-program.js';
import { RequestVm } from '../dist/runtime/request-vm.js';
import { EmptyFile, SinkFile } from '../dist/syscalls/open-files/memory-file.js';
import { bareFloorUs, floorBinary, fmt, median, now, perIteration, printTable, quick, root, writeJsonOption } from './lib.mjs';

// Memory is read after a full GC, so garbage left by earlier sections is not counted as the forks'.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

const make = spawnSync('make', ['-s', '-C', join(root, 'bench/guests')], { stdio: 'inherit' });
if (make.status !== 0) throw new Error('cannot build bench/guests');
const guest = (name) => join(root, 'bench/out/guests', name);

const MEMORY_MIB = 256; // Program's default max_memory, so the RequestVm rows match the Program rows
const HELLO = { method: 'GET', url: '/' };
const discard = () => {};
const forkOptions = { maxRequestTimeMs: 8000, ephemeral: true, output: () => discard, log: discard, warn: (m) => console.warn(m) };

function boot(name) {
  const path = guest(name);
  return bootProgram(readFileSync(path), path, {
    maxMemoryMiB: MEMORY_MIB, maxRequestMemoryMiB: 64,
    stdio: [new EmptyFile(), new SinkFile(discard, 'stdout'), new SinkFile(discard, 'stderr')],
  });
}

function check(result, what) {
  if (result.failure || result.response.status !== 200) {
    throw new Error(`${what}: status ${result.response.status} ${result.failure?.message ?? ''}`);
  }
  return result;
}

// Rows: value in `unit`; `reference` (same unit) gives the ratio; `tinykvm` is the figure of docs/PLATFORMS.md.
const rows = [];
const row = (what, value, unit, { reference = null, target = 'report', tinykvm = '—' } = {}) => {
  rows.push({ what, value, unit, reference, ratio: reference ? value / reference : null, target, tinykvm });
};
const raw = {};

/**
 * Counts V8's major GCs from now until the returned function is awaited: every
 * fork makes ArrayBuffer views over its guest memory, which V8 counts as
 * external memory, and enough of that forces a full GC.
 */
function countMajorGcs() {
  const from = now();
  const at = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) at.push(e.startTime);
  });
  observer.observe({ entryTypes: ['gc'] });
  return async () => {
    const to = now();
    await new Promise((resolve) => setTimeout(resolve, 50)); // gc entries arrive asynchronously
    observer.disconnect();
    return at.filter((t) => t >= from && t <= to).length;
  };
}

/**
 * Median overhead of a bare worker thread woken the way the pool wakes its
 * workers (Atomics doorbell, receiveMessageOnPort, postMessage back), with no
 * VM behind it: the worker busy-waits `workUs` (the time request() takes) and
 * replies with a payload shaped like the pool's, so the result is what the
 * thread hop alone adds to a request.
 */
async function workerOverheadUs(samples, workUs) {
  const { port1, port2 } = new MessageChannel();
  const doorbell = new SharedArrayBuffer(4);
  const bell = new Int32Array(doorbell);
  const worker = new Worker(`
    const { workerData, receiveMessageOnPort } = require('node:worker_threads');
    const { port, doorbell, workUs } = workerData;
    const bell = new Int32Array(doorbell);
    const stats = {};
    for (const k of 'abcdefghijklmnop') stats[k] = 0.5;
    for (;;) {
      Atomics.wait(bell, 0, 0);
      Atomics.store(bell, 0, 0);
      let m;
      while ((m = receiveMessageOnPort(port))) {
        if (m.message.op === 'exit') process.exit(0);
        const until = performance.now() + workUs / 1000;
        while (performance.now() < until);
        const response = { status: 200, contentType: 'text/plain', headers: [], body: Buffer.from('Hello World!\\n'), cache: null };
        port.postMessage({ op: 'done', id: m.message.id, value: { result: { response, failure: null, runMs: workUs / 1000 }, stats: { ...stats } } });
      }
    }`, { eval: true, workerData: { port: port2, doorbell, workUs }, transferList: [port2] });
  const pending = new Map();
  port1.on('message', (m) => pending.get(m.id)?.(m));
  let id = 0;
  const ring = () => {
    Atomics.add(bell, 0, 1);
    Atomics.notify(bell, 0);
  };
  const send = (message) => new Promise((resolve) => {
    pending.set(++id, resolve);
    port1.postMessage({ ...message, id });
    ring();
  });
  const times = [];
  for (let i = 0; i < samples + 300; i++) {
    const t0 = now();
    await send({ op: 'request', input: HELLO });
    if (i >= 300) times.push(now() - t0);
  }
  port1.postMessage({ op: 'exit' });
  ring();
  port1.close();
  await new Promise((resolve) => worker.once('exit', resolve));
  return median(times) * 1000 - workUs;
}

const info = platform();
const rounds = quick ? 3 : 5;
const started = now();

// ── 1. exit floor ─────────────────────────────────────────────────────────────
const bareUs = bareFloorUs(quick ? 5000 : 10000, rounds);
const tskvmFloorUs = perIteration(guest('hypercall'), 1000, quick ? 6000 : 11000, rounds);
row('exit floor: bare KVM `out` round trip (C, bench/kvm-floor.c)', bareUs, 'µs', { target: 'the floor' });
row('exit floor through tskvm (Machine, hypercall loop) vs bare', tskvmFloorUs, 'µs', { reference: bareUs });
{
  // Two VMs exiting at once, one per core: whether the platform's exit path scales, which bounds section 6.
  const one = () => new Promise((resolve, reject) => {
    const child = spawn(floorBinary(), [quick ? '5000' : '10000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(Number(out)) : reject(new Error(`kvm-floor exited with ${code}`))));
  });
  const pairs = [];
  for (let i = 0; i < rounds; i++) pairs.push(...(await Promise.all([one(), one()])));
  const twoUs = median(pairs);
  row('  exit floor with two bare VMs exiting at once (2 processes, 2 cores)', twoUs, 'µs', { reference: bareUs });
  raw.twoFloorsUs = pairs;
}

// ── 2. warm ephemeral GET to hello ───────────────────────────────────────────
{
  const samples = quick ? 500 : 2000;
  const booted = boot('hello');
  const fork = new RequestVm(booted.frozen, forkOptions);
  for (let i = 0; i < 300; i++) {
    check(fork.request(HELLO), 'hello');
    fork.settle();
  }
  const req = [];
  const settle = [];
  for (let i = 0; i < samples; i++) {
    const t0 = now();
    check(fork.request(HELLO), 'hello');
    const t1 = now();
    fork.settle();
    req.push(t1 - t0);
    settle.push(now() - t1);
  }
  const reqUs = median(req) * 1000;
  const settleUs = median(settle) * 1000;
  const bothUs = median(req.map((r, i) => r + settle[i])) * 1000;
  fork.close();
  booted.machine.close();

  const program = await Program.load(guest('hello'), { concurrency: 1, maxMemory: MEMORY_MIB });
  for (let i = 0; i < 300; i++) await program.request(HELLO);
  const lat = [];
  for (let i = 0; i < samples; i++) {
    const t0 = now();
    const res = await program.request(HELLO);
    lat.push(now() - t0);
    if (res.status !== 200) throw new Error(`hello via Program: status ${res.status}`);
  }
  await program.close();
  const programUs = median(lat) * 1000;
  const bareWorkerUs = await workerOverheadUs(samples, reqUs);

  row('warm ephemeral GET hello: Program.request, concurrency 1 (median latency)', programUs, 'µs', { reference: bareUs, target: '≤ 1.5×', tinykvm: '132 µs (reset + call)' });
  row('same on this thread: RequestVm request() + settle()', bothUs, 'µs', { reference: bareUs, tinykvm: '132 µs' });
  row('  request() alone (handler call to sys_backend_response)', reqUs, 'µs', { reference: bareUs });
  row('  settle() alone (the reset; Program does it after replying)', settleUs, 'µs', { tinykvm: '27.6 µs' });
  row('  worker-thread round trip: Program latency − request()', programUs - reqUs, 'µs', { reference: bareUs });
  row('  the same hop to a bare worker busy for as long, no VM (doorbell + postMessage)', bareWorkerUs, 'µs', { reference: bareUs });
  raw.hello = { programUs, requestUs: reqUs, settleUs, requestPlusSettleUs: bothUs, bareWorkerUs, samples };
}

// ── 3. reset cost vs pages dirtied ────────────────────────────────────────────
{
  // A fork per N: the dirty log is cumulative, so a fork that once wrote 4096 pages copies them on every reset.
  const booted = boot('work');
  const reps = quick ? 60 : 200;
  const tinykvm = { 0: '27.6 µs', 16: '37 µs', 256: '151 µs' };
  const perN = {};
  {
    // JIT warm-up of the reset path, so the first N measured does not pay for it.
    const fork = new RequestVm(booted.frozen, forkOptions);
    for (let i = 0; i < 300; i++) {
      check(fork.request({ method: 'GET', url: '/dirty', arg: '16' }), 'warm-up');
      fork.settle();
    }
    fork.close();
  }
  for (const n of [0, 16, 256, 4096]) {
    const fork = new RequestVm(booted.frozen, forkOptions);
    const input = { method: 'GET', url: '/dirty', arg: String(n) };
    for (let i = 0; i < 20; i++) {
      check(fork.request(input), `dirty ${n}`);
      fork.settle();
    }
    const settle = [];
    const req = [];
    for (let i = 0; i < reps; i++) {
      const t0 = now();
      check(fork.request(input), `dirty ${n}`);
      const t1 = now();
      fork.settle();
      req.push(t1 - t0);
      settle.push(now() - t1);
    }
    perN[n] = { settleUs: median(settle) * 1000, requestUs: median(req) * 1000, dirtyPages: fork.stats.dirty_pages };
    fork.close();
  }
  booted.machine.close();
  for (const n of [0, 16, 256, 4096]) {
    const r = perN[n];
    row(`reset (settle) after a request wrote ${n} pages (${r.dirtyPages} dirty pages copied back)`, r.settleUs, 'µs', { tinykvm: tinykvm[n] ?? '—' });
  }
  for (const n of [256, 4096]) {
    row(`reset per page dirtied, (settle(${n}) − settle(0)) / ${n}`, (perN[n].settleUs - perN[0].settleUs) / n, 'µs/page', { target: '≤ 0.5 µs/page' });
  }
  row('request writing 4096 already-private pages, per page: (request(4096) − request(0)) / 4096', (perN[4096].requestUs - perN[0].requestUs) / 4096, 'µs/page', { target: 'report (no faults: ≪ 5 µs)' });
  raw.reset = perN;
}

// ── 4. fork time ──────────────────────────────────────────────────────────────
{
  const booted = boot('hello');
  const n = quick ? 10 : 30;
  const warm = 3; // the first forks also pay for JIT and the KVM handle
  const create = [];
  const first = [];
  const second = [];
  const close = [];
  let stopCounting = null;
  for (let i = 0; i < n + warm; i++) {
    if (i === warm) stopCounting = countMajorGcs();
    const t0 = now();
    const fork = new RequestVm(booted.frozen, forkOptions);
    const t1 = now();
    check(fork.request(HELLO), 'first request');
    const t2 = now();
    fork.settle();
    const t3 = now();
    check(fork.request(HELLO), 'second request');
    const t4 = now();
    fork.settle();
    const t5 = now();
    fork.close();
    const t6 = now();
    if (i < warm) continue;
    create.push(t1 - t0);
    first.push(t2 - t1);
    second.push(t4 - t3);
    close.push(t6 - t5);
  }
  const majorGcs = await stopCounting();
  booted.machine.close();
  const forkMs = median(create);
  row('fork: new RequestVm (VM + vCPU + memslot + process state, ready)', forkMs, 'ms', { target: '≤ 0.5 ms', tinykvm: '0.42–0.58 ms' });
  row('first request on a new fork (first KVM_RUN, first touches of its pages) vs its second', median(first), 'ms', { reference: median(second), tinykvm: '—' });
  row('close a fork', median(close), 'ms');
  row('  V8 major GCs per fork (each fork\'s memory views count as external memory)', majorGcs / n, 'GCs');
  raw.fork = { createMs: create, firstRequestMs: first, secondRequestMs: second, closeMs: close, majorGcsPerFork: majorGcs / n };
}

// ── 5. hypercall round trip inside a request ──────────────────────────────────
{
  const booted = boot('work');
  const fork = new RequestVm(booted.frozen, forkOptions);
  const k = 1000;
  const reps = quick ? 5 : 11;
  const time = (calls) => {
    const input = { method: 'GET', url: '/hypercall', arg: String(calls) };
    check(fork.request(input), `hypercall ${calls}`);
    fork.settle();
    return median(Array.from({ length: reps }, () => {
      const t0 = now();
      check(fork.request(input), `hypercall ${calls}`);
      const ms = now() - t0;
      fork.settle();
      return ms;
    }));
  };
  const base = time(0);
  const perCallUs = ((time(k) - base) * 1000) / k;
  fork.close();
  booted.machine.close();
  row(`hypercall round trip in a request handler (sys_is_debug × ${k}), per call`, perCallUs, 'µs', { reference: bareUs, target: '≤ 1.25×', tinykvm: '63–74 µs (emulated syscall)' });
  raw.hypercall = { perCallUs, k, reps };
}

// ── 6. requests/s ─────────────────────────────────────────────────────────────
{
  const seconds = quick ? 1 : 2.5;
  const HELLO_BODY = 'Hello World!\n';
  // The work the guest does, as a JS function: format the same response.
  const jsHello = async (req) => ({ status: 200, contentType: 'text/plain', headers: {}, body: Buffer.from(req.url === '/' ? HELLO_BODY : '') });
  const rate = async (call, inFlight) => {
    let done = 0;
    const until = now() + seconds * 1000;
    const loop = async () => {
      while (now() < until) {
        const res = await call(HELLO);
        if (res.status !== 200) throw new Error(`status ${res.status}`);
        done++;
      }
    };
    const t0 = now();
    await Promise.all(Array.from({ length: inFlight }, loop));
    return done / ((now() - t0) / 1000);
  };
  await rate(jsHello, 1);
  const js1 = await rate(jsHello, 1);
  const js2 = await rate(jsHello, 2);
  const results = {};
  for (const concurrency of [1, 2]) {
    const program = await Program.load(guest('hello'), { concurrency, maxMemory: MEMORY_MIB });
    for (let i = 0; i < 300; i++) await program.request(HELLO);
    results[concurrency] = await rate((r) => program.request(r), concurrency);
    if (concurrency === 2) results['2/1'] = await rate((r) => program.request(r), 1);
    await program.close();
  }
  row('requests/s, Program concurrency 1, 1 in flight (vs a JS function)', results[1], 'req/s', { reference: js1, target: 'report' });
  row('requests/s, Program concurrency 2, 2 in flight (vs a JS function)', results[2], 'req/s', { reference: js2, target: 'report' });
  row('  scaling: concurrency 2 / concurrency 1', results[2] / results[1], '×', { target: 'report (2 cores, main thread shares them)' });
  row('  Program concurrency 2, 1 in flight', results['2/1'], 'req/s', { reference: results[1], target: 'report' });
  row('  ceiling of one exit per request per core: 1 / bare floor', 1e6 / bareUs, 'req/s', {});
  raw.throughput = { tskvm: results, js: { 1: js1, 2: js2 }, seconds };
}

// ── 7. host memory per idle fork ──────────────────────────────────────────────
{
  const count = quick ? 200 : 1000;
  const status = () => {
    const text = readFileSync('/proc/self/status', 'utf8');
    const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    const mem = readFileSync('/proc/meminfo', 'utf8');
    const sys = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(mem)?.[1] ?? 0);
    return {
      rss: kib('VmRSS'), anon: kib('RssAnon'), file: kib('RssFile'), shmem: kib('RssShmem'), fds: readdirSync('/proc/self/fd').length,
      available: sys('MemAvailable'), vmalloc: sys('VmallocUsed'), slab: sys('Slab'),
      pageTables: sys('PageTables') + sys('SecPageTables'), kernelStack: sys('KernelStack'),
    };
  };
  const settled = () => {
    gc();
    return status();
  };
  const booted = boot('hello');
  // One fork first, so what is measured is per fork, not the first fork's one-time costs.
  const primer = new RequestVm(booted.frozen, forkOptions);
  check(primer.request(HELLO), 'hello');
  primer.settle();
  const before = settled();
  const forks = [];
  const stopCounting = countMajorGcs();
  const t0 = now();
  for (let i = 0; i < count; i++) {
    const fork = new RequestVm(booted.frozen, forkOptions);
    check(fork.request(HELLO), 'hello');
    fork.settle();
    forks.push(fork);
  }
  const createMs = (now() - t0) / count;
  const majorGcs = await stopCounting();
  const during = settled();
  const t1 = now();
  for (const fork of forks) fork.close();
  const closeMs = (now() - t1) / count;
  forks.length = 0;
  const after = settled();
  primer.close();
  booted.machine.close();
  const per = (key) => (during[key] - before[key]) / count;
  const kernel = per('vmalloc') + per('slab') + per('pageTables') + per('kernelStack');
  row(`host memory per idle warm fork: VmRSS growth / ${count}`, per('rss'), 'KiB', { target: '≤ 1024 KiB', tinykvm: '~860 KiB per bare KVM VM (docs/PLATFORMS.md)' });
  row('  of which RssAnon (private: copied pages, JS objects, bitmaps)', per('anon'), 'KiB');
  row('  of which RssShmem (the frozen memfd, mapped in each fork)', per('shmem'), 'KiB');
  row(`  MemAvailable drop / ${count} (adds kernel memory; whole machine, so noisy)`, (before.available - during.available) / count, 'KiB');
  row('  kernel: VmallocUsed (KVM memslot metadata: rmap, dirty bitmaps; grows with max_memory)', per('vmalloc'), 'KiB');
  row('  kernel: Slab + page tables (host and KVM shadow) + kernel stacks', per('slab') + per('pageTables') + per('kernelStack'), 'KiB');
  row('  physical estimate: RssAnon + kernel (RssShmem is the one frozen image, counted in every fork\'s RSS)', per('anon') + kernel, 'KiB', { target: '≤ 1024 KiB' });
  row('  file descriptors per fork', per('fds'), 'fds');
  row(`VmRSS after closing all ${count}, growth left per fork`, (after.rss - before.rss) / count, 'KiB');
  row(`  fork + first request, per fork, while creating ${count}`, createMs, 'ms');
  row('  V8 major GCs per fork, while creating them', majorGcs / count, 'GCs');
  row(`  close, per fork, of ${count}`, closeMs, 'ms');
  raw.memory = { count, before, during, after, createMs, closeMs, majorGcsPerFork: majorGcs / count };
}

const totalSec = (now() - started) / 1000;
const unitFmt = (v, unit) => (unit === 'req/s' ? Math.round(v).toLocaleString('en-US') : fmt(v)) + (unit === '×' ? '×' : ` ${unit}`);
console.log(`\ntskvm request benchmarks — ${info.description}; ${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}; node ${process.version}; ${totalSec.toFixed(0)} s\n`);
printTable(['measurement', 'tskvm', 'reference (floor, JS, or as named)', 'ratio', 'target', 'TinyKVM here (docs/PLATFORMS.md)'], rows.map((r) => [
  r.what,
  unitFmt(r.value, r.unit),
  r.reference === null ? '—' : unitFmt(r.reference, r.unit),
  r.ratio === null ? '—' : r.ratio < 0.01 ? r.ratio.toExponential(1) + '×' : r.ratio.toFixed(2) + '×',
  r.target,
  r.tinykvm,
]));
writeJsonOption({ platform: info, node: process.version, totalSec, floor: { bareUs, tskvmUs: tskvmFloorUs }, rows, raw });
