// Nothing leaks: 18 000 requests and 180 program load/close cycles after warm-up leave the host's
// resident memory and open file descriptors where they were. The workload runs on the compiled
// package in a process of its own (helpers/leak-workload.mjs), away from tap's loaders.
import t from 'tap';
import { join } from 'node:path';
import { kvmAvailable, repoRoot, spawnClean } from './helpers/differential.js';

interface Sample { round: number; rssMiB: number; fds: number }

t.test('18 000 requests and 180 load/close cycles after warm-up: RSS and fd count stay flat', async (t) => {
  if (!kvmAvailable(t)) return;
  const rounds = 6;
  const result = spawnClean(process.execPath, ['--expose-gc', join(repoRoot, 'test', 'helpers', 'leak-workload.mjs'),
    repoRoot, '3000', '30', String(rounds)], {}, { timeoutMs: 300_000 });
  t.equal(result.status, 0, `workload exit status; stderr: ${result.stderr.toString()}`);
  const lines = result.stdout.toString().trim().split('\n').map((line) => JSON.parse(line));
  const samples: Sample[] = lines.filter((line) => 'round' in line);
  t.equal(samples.length, rounds + 1, 'one sample after warm-up and one per round');
  t.same(lines.at(-1), { invocations: 3000 * (rounds + 1) }, 'every request was served');
  const [start, ...after] = samples;
  for (const s of after) t.equal(s.fds, start.fds, `open fds: ${start.fds} after warm-up, ${s.fds} after round ${s.round}`);
  // A leak grows with the work done, so even the lowest of the last two samples shows it; one
  // request body (10 000 bytes) kept per request would be 172 MiB by the end.
  const settled = Math.min(...after.slice(-2).map((s) => s.rssMiB));
  t.ok(settled - start.rssMiB < 48,
    `RSS: ${start.rssMiB.toFixed(0)} MiB after warm-up, then ${after.map((s) => s.rssMiB.toFixed(0)).join(', ')} (less than 48 MiB of growth)`);
});
