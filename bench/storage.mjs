// The storage VM: what a counter kept in storage costs beside one kept in shared memory, measured side
// by side in this one run with the bare KVM exit floor and the same handlers run natively.
//
//   node bench/storage.mjs [--quick] [--json FILE]        (after `npm run build` and `make -C guest/examples`)
//
// 1. one request at a time (Program.request, p50): counter (shared memory, ephemeral) and visits
//    (storage_call into the storage VM, ephemeral); their difference is what one storage call adds
// 2. requests/s under concurrent load, 1, 4 and 16 in flight, both programs with 2 request VMs
// 3. the same handlers natively (guest/bench/loop-host.c: a storage call there is a plain call)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Program } from '../dist/index.js';
import { bareFloorUs, fmt, median, now, printTable, quick, root, writeJsonOption } from './lib.mjs';

const example = (name) => join(root, 'guest/examples/bin', name);
const bareUs = bareFloorUs(quick ? 20_000 : 100_000, quick ? 3 : 5);
const stateDir = mkdtempSync(join(tmpdir(), 'tskvm-bench-storage-'));
const programs = {
  'counter (shared memory)': { file: example('counter'), options: { sharedMemory: 2 } },
  'visits (storage VM)': { file: example('visits'), options: { storage: true, stateFile: join(stateDir, 'state') } },
};
const REQUEST = { url: '/bench' };
const rows = [];
const raw = { bareFloorUs: bareUs };

async function latencies(program, n) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t0 = now();
    const res = await program.request(REQUEST);
    samples.push((now() - t0) * 1000);
    if (res.status !== 200) throw new Error(`status ${res.status}: ${res.body}`);
  }
  return samples;
}

async function rate(program, inFlight, seconds) {
  let done = 0;
  const until = now() + seconds * 1000;
  const loop = async () => {
    while (now() < until) {
      const res = await program.request(REQUEST);
      if (res.status !== 200) throw new Error(`status ${res.status}: ${res.body}`);
      done++;
    }
  };
  const t0 = now();
  await Promise.all(Array.from({ length: inFlight }, loop));
  return done / ((now() - t0) / 1000);
}

function nativeUs(name, n) {
  const report = join(stateDir, `${name}.json`);
  const run = spawnSync(example(`loop/${name}`), [], {
    env: { ...process.env, TSKVM_LOOP_REQUESTS: String(n), TSKVM_LOOP_WARMUP: '100', TSKVM_LOOP_URL: REQUEST.url, TSKVM_LOOP_CHECK: 'status', TSKVM_LOOP_SHARED_MEMORY: '2', TSKVM_LOOP_REPORT: report },
  });
  if (run.status !== 0) throw new Error(`${name} native loop: exit ${run.status} ${run.stderr}`);
  return median(JSON.parse(readFileSync(report, 'utf8')).ns) / 1000;
}

const n = quick ? 300 : 2000;
const seconds = quick ? 1 : 3;
const measured = {};
for (const [label, { file, options }] of Object.entries(programs)) {
  const program = await Program.load(file, { concurrency: 2, maxMemory: 64, maxQueue: 1000, onLog: () => {}, ...options });
  try {
    await latencies(program, 200);
    const p50 = median(await latencies(program, n));
    const perSecond = {};
    for (const inFlight of [1, 4, 16]) perSecond[inFlight] = await rate(program, inFlight, seconds);
    measured[label] = { p50, perSecond, stats: program.stats().storage ?? null };
  } finally {
    await program.close();
  }
}
const native = { 'counter (shared memory)': nativeUs('counter', n), 'visits (storage VM)': nativeUs('visits', n) };
rmSync(stateDir, { recursive: true, force: true });

for (const [label, m] of Object.entries(measured)) {
  rows.push([`${label}: Program.request p50`, `${fmt(m.p50)} µs`, `${fmt(native[label])} µs native`, `×${fmt(m.p50 / bareUs)} the exit floor`]);
  for (const [inFlight, r] of Object.entries(m.perSecond)) rows.push([`${label}: requests/s, ${inFlight} in flight`, Math.round(r).toLocaleString('en-US'), '', '']);
}
const [shm, storage] = Object.values(measured);
rows.push(['one storage call (visits − counter, p50)', `${fmt(storage.p50 - shm.p50)} µs`, '', `×${fmt((storage.p50 - shm.p50) / bareUs)} the exit floor`]);
rows.push(['bare KVM exit floor (C)', `${fmt(bareUs)} µs`, '', '']);
printTable(['measurement', 'tskvm', 'native', 'ratio'], rows);
Object.assign(raw, { measured, native });
writeJsonOption(raw);
