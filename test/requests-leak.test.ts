// Nothing leaks: 20 000 requests and 200 program load/close cycles leave the host's
// resident memory and open file descriptors where they were after warm-up.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { Program } from '../src/index.js';
import { guestPath, kvmAvailable } from './helpers/differential.js';

const rssMiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
const openFds = (): number => readdirSync('/proc/self/fd').length;

t.test('20 000 requests and 200 load/close cycles: RSS and fd count stay flat', async (t) => {
  if (!kvmAvailable(t)) return;
  const options = { maxMemory: 64, onLog: () => {} };
  const program = await Program.load(guestPath('req-echo'), { ...options, concurrency: 2 });
  try {
    const body = Buffer.alloc(10_000, 1);
    const serve = async (n: number): Promise<void> => {
      let next = 0;
      const loop = async (): Promise<void> => {
        while (next++ < n) {
          const res = await program.request({ method: 'POST', url: '/leak', body, headers: { 'X-Test': 'x' } });
          if (res.status !== 200) throw new Error(`status ${res.status}: ${res.body}`);
        }
      };
      await Promise.all([loop(), loop()]);
    };
    const cycle = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const p = await Program.load(guestPath('req-hello'), { ...options, concurrency: 1 });
        if ((await p.request({ url: '/' })).status !== 200) throw new Error('hello failed');
        await p.close();
      }
    };

    await serve(2_000);
    await cycle(20);
    const rss0 = rssMiB();
    const fds0 = openFds();
    await serve(18_000);
    await cycle(180);
    const rss1 = rssMiB();
    const fds1 = openFds();
    t.equal(fds1, fds0, `open fds: ${fds0} after warm-up, ${fds1} at the end`);
    t.ok(rss1 - rss0 < 48, `RSS: ${rss0.toFixed(0)} MiB after warm-up, ${rss1.toFixed(0)} MiB at the end (less than 48 MiB of growth)`);
    t.equal(program.stats().totals.invocations, 20_000);
  } finally {
    await program.close();
  }
});
