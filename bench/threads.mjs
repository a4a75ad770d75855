// Thread costs on tskvm's one vCPU (src/syscalls/thread-table.ts), each beside the same program
// natively and as a multiple of the exit floor measured in this run:
//
//   node bench/threads.mjs [--quick] [--json FILE]
//
//   create/join  pthread_create of a thread that returns at once, and pthread_join (a clone, two
//                switches, the exiting thread's clear-and-wake)
//   ping-pong    one round trip between two threads through futexes (two switches)
//   signal       a signal round trip: raise() into a handler and back (test/guests/sigloop.c)
//
// Natively the two threads run on two cores; in tskvm they take turns on one vCPU, so every
// hand-over is a context switch in the host: saving and loading registers, vector registers and the
// FS base through KVM ioctls.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { platform } from '../dist/index.js';
import { fmt, median, now, perIteration, printTable, quick, root, runInProcess, writeJsonOption } from './lib.mjs';

const guest = (name) => join(root, 'test/guests/bin', name);
spawnSync('make', ['-s', '-C', join(root, 'test/guests')], { stdio: 'inherit' });

const rounds = quick ? 3 : 7;
const threadbench = guest('threadbench.glibc');

/** µs per operation in tskvm: runs of n1 and n2 operations, startup cancelled out. */
function tskvmUs(bin, args, n1, n2) {
  const samples = [];
  for (let i = 0; i < rounds; i++) {
    const a = runInProcess(bin, [...args, String(n1)]);
    const b = runInProcess(bin, [...args, String(n2)]);
    samples.push(((b - a) * 1000) / (n2 - n1));
  }
  return median(samples);
}

/** µs per operation natively, the same way. */
function nativeUs(bin, args, n1, n2) {
  const time = (n) => {
    const t0 = now();
    const r = spawnSync(bin, [...args, String(n)], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} ${n} exited with ${r.status}`);
    return now() - t0;
  };
  const samples = [];
  for (let i = 0; i < rounds; i++) samples.push(((time(n2) - time(n1)) * 1000) / (n2 - n1));
  return median(samples);
}

const floorUs = perIteration(guest('hypercall.glibc'), 2000, quick ? 12000 : 42000, rounds);
const rows = [];
for (const [bin, args, what, n1, n2, nn1, nn2] of [
  [threadbench, ['create'], 'thread create + join', 100, quick ? 600 : 1600, 1000, 20000],
  [threadbench, ['pingpong'], 'futex ping-pong round trip', 100, quick ? 600 : 1600, 10000, 200000],
  [guest('sigloop.glibc'), [], 'signal round trip (raise → handler → rt_sigreturn)', 1000, quick ? 6000 : 21000, 100000, 2000000],
]) {
  const tskvm = tskvmUs(bin, args, n1, n2);
  const native = nativeUs(bin, args, nn1, nn2);
  rows.push({ what, tskvm, native, floor: floorUs, vsNative: tskvm / native, vsFloor: tskvm / floorUs });
}

console.log(`# threads on ${platform().description}; exit floor ${fmt(floorUs)} µs\n`);
printTable(['measurement', 'tskvm', 'native', '× native', '× exit floor'], rows.map((r) => [
  r.what, `${fmt(r.tskvm)} µs`, `${fmt(r.native)} µs`, `${r.vsNative.toFixed(1)}×`, `${r.vsFloor.toFixed(1)}×`,
]));
writeJsonOption({ platform: platform(), node: process.version, floorUs, rows });
