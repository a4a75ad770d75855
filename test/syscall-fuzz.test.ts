// The syscall fuzzer (test/fuzz/syscalls.ts) for a while on a fixed seed: seeded random syscalls and
// guest-API calls inside requests never make the host fail, and after every request's reset the fork is
// the frozen program again, by the host's and the guest's account. TSKVM_FUZZ_SECONDS (default 15) and
// TSKVM_FUZZ_SEED (default 1) change how long and which calls; `npm run fuzz` runs it on its own.
import t from 'tap';
import { fuzzSyscalls } from './fuzz/syscalls.js';
import { kvmAvailable } from './helpers/differential.js';

t.test('syscall fuzzer: no host failure, every reset complete', async (t) => {
  if (!kvmAvailable(t)) return;
  const seconds = Number(process.env.TSKVM_FUZZ_SECONDS ?? 15);
  const seed = Number(process.env.TSKVM_FUZZ_SEED ?? 1);
  const report = fuzzSyscalls({ seconds, seed });
  t.comment(`seed ${seed}: ${report.requests} requests, ${report.calls} calls in ${report.seconds.toFixed(1)} s (${(report.calls / report.seconds).toFixed(0)} calls/s); ${JSON.stringify(report.outcomes)}`);
  t.ok(report.requests > 10, `${report.requests} requests ran`);
  t.ok(report.calls > report.requests, 'requests made calls before they ended');
  t.same(report.findings, [], 'no findings (each reproduces with npm run fuzz -- --replay SEED)');
});
