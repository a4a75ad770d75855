// The large-stream check's workload, run in a process of its own on the compiled package (dist/),
// away from tap's loaders (whose TypeScript compiler in every worker thread makes the resident size
// meaningless). Run as
//   node --expose-gc stream-workload.mjs <repo> <bytes>
// It serves req-stream with `tskvm serve`, reads a streamed body of <bytes> over HTTP, sampling the
// resident size every 20 ms, and prints one JSON line: {received, ms, rssBeforeMiB, rssPeakMiB}.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';

const [repo, bytes] = [process.argv[2], Number(process.argv[3])];
const { startServer } = await import(join(repo, 'dist', 'server', 'server.js'));
const dir = mkdtempSync(join(tmpdir(), 'tskvm-stream-workload-'));
const library = join(dir, 'library.json');
writeFileSync(library, JSON.stringify({ programs: { stream: { filename: join(repo, 'test', 'guests', 'bin', 'req-stream'), concurrency: 1, start: true } } }));
const server = await startServer({ library, listen: '127.0.0.1:0', warn: () => {} });
// Warm: the program is started and a first stream has run, so what follows is the stream's own cost.
for await (const _ of (await request(`${server.url}/stream/body?1000000`)).body);
globalThis.gc?.();
const mib = () => process.memoryUsage().rss / 2 ** 20;
const rssBeforeMiB = mib();
let rssPeakMiB = rssBeforeMiB;
const sampler = setInterval(() => { rssPeakMiB = Math.max(rssPeakMiB, mib()); }, 20);
const started = performance.now();
let received = 0;
for await (const chunk of (await request(`${server.url}/stream/body?${bytes}`)).body) received += chunk.length;
const ms = performance.now() - started;
clearInterval(sampler);
await server.close();
console.log(JSON.stringify({ received, ms, rssBeforeMiB, rssPeakMiB }));
