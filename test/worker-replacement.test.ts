// A worker thread that hangs on the host side or dies is replaced: the request it held fails with
// a stable code, no call waits forever, and the program keeps serving from new request VMs.
// The faults are injected (TSKVM_TEST_WORKER_FAULTS): with every guest wait bounded by the request
// deadline, no guest can cause them, but a host-side bug could.
import t, { type Test } from 'tap';
import { Program } from '../src/index.js';
import { WORKER_FAULT_URLS, WORKER_GRACE_MS } from '../src/runtime/worker-pool.js';
import { guestPath, kvmAvailable } from './helpers/differential.js';

process.env.TSKVM_TEST_WORKER_FAULTS = '1'; // read by worker threads, which the first load starts

const options = { maxMemory: 64, concurrency: 2, maxRequestTime: 0.2, onLog: () => {} };

async function servesEverything(t: Test, program: Program, count: number): Promise<void> {
  const answers = await Promise.all(Array.from({ length: count }, () => program.request({ url: '/' })));
  t.same(answers.map((r) => r.status), new Array(count).fill(200), `${count} requests after it, on both forks: all 200`);
}

t.test('a worker stuck in a request: that request fails with TSKVM_ERR_WORKER_STUCK, and the program keeps serving', async (t) => {
  if (!kvmAvailable(t)) return;
  const program = await Program.load(guestPath('req-hello'), options);
  try {
    const started = performance.now();
    await t.rejects(program.request({ url: WORKER_FAULT_URLS.hang }), { code: 'TSKVM_ERR_WORKER_STUCK', message: /did not finish a request/ });
    const waited = performance.now() - started;
    const limit = 200 + 1000 + WORKER_GRACE_MS;
    t.ok(waited >= limit && waited < limit + 3000, `given up after ${waited.toFixed(0)} ms (max_request_time + on_error's budget + grace: ${limit} ms)`);
    await servesEverything(t, program, 20);
    t.equal(program.stats().vms.length, 2, 'two request VMs again');
  } finally {
    await program.close();
  }
  t.pass('close() returned');
});

t.test('a worker that exits: its request fails with TSKVM_ERR_WORKER, and the program keeps serving', async (t) => {
  if (!kvmAvailable(t)) return;
  const program = await Program.load(guestPath('req-hello'), options);
  try {
    await t.rejects(program.request({ url: WORKER_FAULT_URLS.exit }), { code: 'TSKVM_ERR_WORKER', message: /exited \(code 70\)/ });
    await servesEverything(t, program, 20);
    t.equal(program.stats().totals.invocations, 20, 'the totals keep counting across the replacement');
  } finally {
    await program.close();
  }
});
