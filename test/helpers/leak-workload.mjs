// The leak test's workload, run in a process of its own on the compiled package (dist/): under tap,
// every worker thread would load tap's TypeScript compiler, whose hundreds of MiB of heap make the
// process's resident size too noisy to show a leak. Run as
//   node --expose-gc leak-workload.mjs <repo> <requests per round> <load/close cycles per round> <rounds>
// It prints one JSON line per sample: {round, rssMiB, fds}, round 0 being the end of the warm-up.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';

const [repo, requests, cycles, rounds] = [process.argv[2], ...process.argv.slice(3).map(Number)];
const { Program } = await import(join(repo, 'dist', 'index.js'));
const guest = (name) => join(repo, 'test', 'guests', 'bin', name);
// Freed C heap stays resident in glibc's per-thread arenas until trimmed; a leak survives the trim.
const mallocTrim = koffi.load('libc.so.6').func('int malloc_trim(size_t pad)');

const options = { maxMemory: 64, onLog: () => {} };
const program = await Program.load(guest('req-echo'), { ...options, concurrency: 2 });
const body = Buffer.alloc(10_000, 1);

async function serve(n) {
  let next = 0;
  const loop = async () => {
    while (next++ < n) {
      const res = await program.request({ method: 'POST', url: '/leak', body, headers: { 'X-Test': 'x' } });
      if (res.status !== 200) throw new Error(`status ${res.status}: ${res.body}`);
    }
  };
  await Promise.all([loop(), loop()]);
}

async function cycle(n) {
  for (let i = 0; i < n; i++) {
    const p = await Program.load(guest('req-hello'), { ...options, concurrency: 1 });
    if ((await p.request({ url: '/' })).status !== 200) throw new Error('hello failed');
    await p.close();
  }
}

function sample(round) {
  globalThis.gc();
  mallocTrim(0);
  const rssMiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
  console.log(JSON.stringify({ round, rssMiB, fds: readdirSync('/proc/self/fd').length }));
}

try {
  await serve(requests);
  await cycle(cycles);
  sample(0);
  for (let round = 1; round <= rounds; round++) {
    await serve(requests);
    await cycle(cycles);
    sample(round);
  }
  console.log(JSON.stringify({ invocations: program.stats().totals.invocations }));
} finally {
  await program.close();
}
