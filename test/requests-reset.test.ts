// Reset correctness: after any request, an ephemeral fork's memory is the frozen
// program's again. 10 000 requests write random bytes at random places (the guest)
// and carry bodies of random sizes (pages first written by the host); the guest's
// own checksum of its memory must stay the fresh fork's, and the host compares the
// fork's whole memory with the frozen image byte for byte.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { bootProgram, type BootedProgram } from '../src/runtime/frozen-program.js';
import { RequestVm } from '../src/runtime/request-vm.js';
import { EmptyFile, SinkFile } from '../src/syscalls/open-files/memory-file.js';
import { PAGE_SIZE } from '../src/paging/guest-memory.js';
import { guestPath, kvmAvailable } from './helpers/differential.js';
import { prng } from './helpers/prng.js';

const SUM_EVERY = 50;
const COMPARE_EVERY = 1_000;
// TSKVM_RESET_REQUESTS: fewer in the svm lane (svm-lane/lane.sh), where every request is emulated. A
// multiple of 250, so that a fifth of it is still a multiple of SUM_EVERY.
const REQUESTS = Math.max(250, Math.round(Number(process.env.TSKVM_RESET_REQUESTS ?? 10_000) / 250) * 250);

function boot(reqMemLimitAfterReset = 0): BootedProgram {
  const path = guestPath('req-randomwrite');
  const sink = new SinkFile(() => {}, 'stdout');
  return bootProgram(readFileSync(path), path, {
    env: ['KVM_NAME=randomwrite'], maxMemoryMiB: 128, maxRequestMemoryMiB: 64, requestMemoryUpperMiB: reqMemLimitAfterReset, stdio: [new EmptyFile(), sink, sink], log: () => {},
  });
}

function fork(booted: BootedProgram): RequestVm {
  return new RequestVm(booted.frozen, { maxRequestTimeMs: 10_000, ephemeral: true, output: () => () => {}, log: () => {}, warn: () => {} });
}

const sum = (vm: RequestVm): string => vm.request({ method: 'GET', url: '/sum' }).response.body.toString();

t.test(`${REQUESTS} requests with random writes and bodies: every reset restores the frozen memory`, async (t) => {
  if (!kvmAvailable(t)) return;
  // With req_mem_limit_after_reset, fewer requests: each full reset re-faults the fork's pages (slow on PVM).
  for (const [limit, requests] of [[0, REQUESTS], [8, REQUESTS / 5]] as const) {
    const booted = boot(limit);
    const fresh = fork(booted);
    const vm = fork(booted);
    try {
      const expected = sum(fresh);
      t.match(expected, /^[0-9a-f]{16}$/, 'a fresh fork checksums its memory');
      const next = prng(limit + 1);
      let failures = 0;
      for (let i = 1; i <= requests; i++) {
        const count = next() % 400;
        const bodySize = next() % 4 === 0 ? next() % (256 * 1024) : 0;
        const res = vm.request({ method: bodySize ? 'POST' : 'GET', url: '/w', arg: `${next()},${count}`, body: bodySize ? Buffer.alloc(bodySize, i & 0xff) : undefined });
        if (res.response.body.toString() !== `wrote=${count}` && failures++ < 5) t.fail(`request ${i}: ${res.response.status} ${res.response.body}`);
        if (i % SUM_EVERY === 0) {
          const got = sum(vm);
          if (got !== expected && failures++ < 5) t.fail(`after request ${i}: checksum ${got}, a fresh fork's is ${expected}`);
        }
        if (i % COMPARE_EVERY === 0 || i === requests) {
          vm.settle();
          const bad = vm.inspect().differingPages;
          if (bad.length && failures++ < 5) t.fail(`after request ${i}: ${bad.length} pages differ from the frozen program, first at 0x${(bad[0]! * PAGE_SIZE).toString(16)}`);
        }
      }
      t.equal(failures, 0, `req_mem_limit_after_reset ${limit || 'unlimited'}: ${requests} requests, every checksum and page compare equal`);
      t.equal(vm.stats.resets, requests + requests / SUM_EVERY, 'one reset per request (checksum requests included)');
      if (limit) t.ok(vm.stats.resets_full > 0, `full resets happened (${vm.stats.resets_full}) when a fork kept more than ${limit} MiB`);
      else t.equal(vm.stats.resets_full, 0, 'no full reset without a limit');
    } finally {
      vm.close();
      fresh.close();
      booted.machine.close();
    }
  }
});
