// Streamed responses (begin_streaming_response): req-stream's body, pulled from its callback piece by
// piece, compared with the same program run natively and with the pattern it documents; failures
// after the head; and a body far larger than anything the host may hold.
import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { Program, STREAM_PIECE } from '../src/runtime/program.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { guestPath, kvmAvailable, repoRoot, runNative, spawnClean } from './helpers/differential.js';

/** The documented body: byte i is (i * 131 + (i >> 8)) & 0xff. */
function pattern(from: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    const at = from + i;
    b[i] = (at * 131 + Math.floor(at / 256)) & 0xff;
  }
  return b;
}

async function withProgram(body: (p: Program) => Promise<void>): Promise<void> {
  const p = await Program.load(guestPath('req-stream'), { concurrency: 1, maxRequestTime: 2 });
  try {
    await body(p);
  } finally {
    await p.close();
  }
}

async function withServer(options: { clientTimeout?: number }, body: (s: RunningServer) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-stream-'));
  const library = join(dir, 'library.json');
  writeFileSync(library, JSON.stringify({ programs: { stream: { filename: guestPath('req-stream'), concurrency: 1, max_request_time: 2 } } }));
  const s = await startServer({ library, listen: '127.0.0.1:0', warn: () => {}, clientTimeout: options.clientTimeout });
  try {
    await body(s);
  } finally {
    await s.close();
  }
}

t.test('gathered (Program.request): the same bytes as natively, and as documented', async (t) => {
  if (!kvmAvailable(t)) return;
  const size = 1_000_003;
  const native = runNative(guestPath('req-stream'), [`/body?${size}`]);
  t.equal(native.status, 0);
  t.ok(native.stdout.equals(pattern(0, size)), 'the native run gives the documented body');
  await withProgram(async (p) => {
    const res = await p.request({ url: '/body', arg: String(size) });
    t.equal(res.status, 200);
    t.equal(res.error, undefined);
    t.equal(res.contentType, 'application/octet-stream');
    t.equal(res.headers['x-stream'], 'yes', 'headers given before the stream began');
    t.ok(res.body.equals(native.stdout), `${res.body.length} bytes, identical to native`);
    t.equal((await p.request({ url: '/body', arg: '10' })).body.length, 10, 'the fork serves the next request');
  });
});

t.test('as a stream ({ stream: true }): pieces of at most STREAM_PIECE bytes, pulled as read', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram(async (p) => {
    const res = await p.request({ url: '/body', arg: '300000' }, { stream: true });
    t.equal(res.body.length, 0, 'no body: it comes through the stream');
    t.equal(res.stream?.length, 300_000);
    const pieces: Uint8Array[] = [];
    for await (const piece of res.stream!) pieces.push(piece);
    t.ok(pieces.every((piece) => piece.length > 0 && piece.length <= STREAM_PIECE), `${pieces.length} pieces, none empty or larger than ${STREAM_PIECE}`);
    t.ok(Buffer.concat(pieces).equals(pattern(0, 300_000)), 'the body');
    const cancelled = await p.request({ url: '/body', arg: '300000' }, { stream: true });
    for await (const piece of cancelled.stream!) {
      t.equal(piece.length > 0, true);
      break; // a reader that goes away: the fork is reset and freed
    }
    t.equal((await p.request({ url: '/body', arg: '7' })).body.length, 7, 'after a cancelled stream the single fork serves again');
    const st = p.stats();
    t.equal(st.active, 0, 'no request holds a fork');
    t.ok(st.totals.output_bytes >= 300_007, `output_bytes counts streamed bytes (${st.totals.output_bytes})`);
  });
});

t.test('a callback that stalls, crashes, spins or gives a bad pointer fails the stream; the fork serves on', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram(async (p) => {
    for (const [how, why] of [['stall', /gave no bytes/], ['crash', /page fault|SIGSEGV/], ['spin', /timeout|longer than/], ['bad', /not in guest memory/]] as const) {
      const res = await p.request({ url: `/${how}`, arg: '200000' });
      t.equal(res.error?.code, 'TSKVM_ERR_STREAM', `${how}: TSKVM_ERR_STREAM`);
      t.match(res.error?.message, why, `${how}: ${res.error?.message}`);
      const next = await p.request({ url: '/body', arg: '100' });
      t.ok(next.body.equals(pattern(0, 100)), `${how}: the next request is served`);
    }
    t.ok(p.stats().totals.exceptions >= 4, 'counted as exceptions');
  });
});

t.test('over HTTP: Content-Length, the body piece by piece; a failure after the head cuts the connection', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({}, async (s) => {
    const res = await request(`${s.url}/stream/body?5000000`);
    t.equal(res.statusCode, 200);
    t.equal(res.headers['content-length'], '5000000');
    t.equal(res.headers['x-stream'], 'yes');
    const got = Buffer.from(await res.body.arrayBuffer());
    t.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(pattern(0, 5_000_000)).digest('hex'), '5 MB as documented');
    const crash = await request(`${s.url}/stream/crash?5000000`);
    t.equal(crash.statusCode, 200, 'the head went out before the failure');
    await t.rejects(crash.body.arrayBuffer(), 'the body ends short: the connection is cut');
    t.equal((await request(`${s.url}/stream/body?100`)).statusCode, 200, 'and the program serves the next request');
  });
});

t.test('1 GiB streamed over HTTP keeps host memory flat (measured in a process of its own)', async (t) => {
  if (!kvmAvailable(t)) return;
  const size = 1 << 30;
  const result = spawnClean(process.execPath, ['--expose-gc', join(repoRoot, 'test', 'helpers', 'stream-workload.mjs'), repoRoot, String(size)], {}, { timeoutMs: 300_000 });
  t.equal(result.status, 0, `workload exit status; stderr: ${result.stderr.toString()}`);
  const { received, ms, rssBeforeMiB, rssPeakMiB } = JSON.parse(result.stdout.toString().trim().split('\n').at(-1)!);
  t.equal(received, size, `1 GiB arrived in ${(ms / 1000).toFixed(1)} s`);
  // Gathered, the body alone would be 1024 MiB; streamed, a piece at a time is in flight.
  t.ok(rssPeakMiB - rssBeforeMiB < 256, `resident size ${rssBeforeMiB.toFixed(0)} MiB before, ${rssPeakMiB.toFixed(0)} MiB at most during`);
});

t.test('a client that stops reading a stream is cut off after the client timeout, and the fork is freed', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({ clientTimeout: 2 }, async (s) => {
    t.equal((await request(`${s.url}/stream/body?100`)).statusCode, 200, 'started');
    // A client that reads the head of a 1 GiB stream and then nothing: it holds the only fork.
    const stalled = await new Promise<import('node:http').IncomingMessage>((resolve) => {
      httpRequest(`${s.url}/stream/body?${1 << 30}`, (r) => {
        r.pause();
        resolve(r);
      }).end();
    });
    const started = performance.now();
    const next = await request(`${s.url}/stream/body?100`);
    const ms = performance.now() - started;
    t.equal(next.statusCode, 200, 'the next request is served');
    t.ok(Buffer.from(await next.body.arrayBuffer()).equals(pattern(0, 100)));
    t.ok(ms < 20_000, `once the stalled client was cut off: after ${(ms / 1000).toFixed(1)} s (client timeout 2 s)`);
    stalled.destroy();
  });
});
