// The example programs (guest/examples/) answer under tskvm exactly what they print natively for the
// same input, and the bundled library serves them.
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { createHash } from 'node:crypto';
import { Program, startServer } from '../src/index.js';
import { STREAM_PIECE } from '../src/runtime/program.js';
import { startOrigin } from '../src/bench/origin.js';
import { kvmAvailable, repoRoot, runNative } from './helpers/differential.js';

const example = (name: string): string => join(repoRoot, 'guest', 'examples', 'bin', name);
const quiet = { maxMemory: 64, onLog: () => {} };

t.test('each example answers what it prints natively', async (t) => {
  if (!kvmAvailable(t)) return;
  const hello = await Program.load(example('hello'), quiet);
  const echo = await Program.load(example('echo'), quiet);
  const counter = await Program.load(example('counter'), { ...quiet, sharedMemory: 2, ephemeral: false, concurrency: 1 });
  try {
    for (const url of ['/', '/x/y?z=1', '/' + 'long'.repeat(500)]) {
      t.equal((await hello.request({ url })).body.toString(), runNative(example('hello'), [url]).stdout.toString(), `hello ${url.slice(0, 20)}`);
    }
    for (const body of ['', 'plain', '{"json": [1, 2, "\\u00e9"]}', Buffer.from([0, 1, 2, 0x7f, 0x80, 0xff, 0x22, 0x5c, 0x0a])]) {
      const native = runNative(example('echo'), ['/e'], { input: body });
      const res = await echo.request({ method: body.length ? 'POST' : 'GET', url: '/e', body: body.length ? body : undefined });
      t.equal(res.contentType, 'application/json');
      t.equal(res.body.toString(), native.stdout.toString(), `echo of ${JSON.stringify(body.toString())}`);
      t.same(JSON.parse(res.body.toString()).body.length, Buffer.from(body).length, 'valid JSON, one character per byte');
    }
    const native = runNative(example('counter'), ['3']).stdout.toString().split('\n');
    for (let i = 0; i < 3; i++) t.equal((await counter.request({ url: '/' })).body.toString(), native[i] + '\n', `counter request ${i + 1}`);
  } finally {
    await Promise.all([hello.close(), echo.close(), counter.close()]);
  }
});

t.test('report: the streamed CSV is byte for byte what the program prints natively, pulled piece by piece', async (t) => {
  if (!kvmAvailable(t)) return;
  const report = await Program.load(example('report'), { ...quiet, concurrency: 1, maxRequestTime: 30 });
  try {
    const native = runNative(example('report'), ['20000', '3']).stdout;
    const gathered = await report.request({ url: '/report/?rows=20000&seed=3' });
    t.equal(gathered.status, 200);
    t.equal(gathered.contentType, 'text/csv');
    t.equal(gathered.body.length, 41 + 20000 * 46, 'the header and 20 000 rows of 46 bytes');
    t.ok(gathered.body.equals(native), 'equal to the native run');
    const streamed = await report.request({ url: '/report/?seed=3&rows=20000' }, { stream: true });
    const pieces: number[] = [];
    const hash = createHash('sha256');
    for await (const piece of streamed.stream!) {
      pieces.push(piece.length);
      hash.update(piece);
    }
    t.equal(streamed.stream!.length, native.length, 'the length was known before the first piece');
    t.ok(pieces.length > 1 && Math.max(...pieces) <= STREAM_PIECE, `${pieces.length} pieces of at most ${STREAM_PIECE} bytes`);
    t.equal(hash.digest('hex'), createHash('sha256').update(native).digest('hex'), 'the same bytes, streamed');
    t.equal((await report.request({ url: '/report/?rows=50000001' })).status, 400, 'more rows than the program allows: 400');
  } finally {
    await report.close();
  }
});

t.test('linkcheck: what sys_fetch brings from a local origin is what a native HTTP client gets', async (t) => {
  if (!kvmAvailable(t)) return;
  const origin = await startOrigin();
  const linkcheck = await Program.load(example('linkcheck'), { ...quiet, fetchOrigins: [origin.url] });
  try {
    const urls = ['/a', '/b/c?d=1', '/status/404', '/status/503', '/' + 'x'.repeat(300)].map((p) => origin.url + p).join('\n') + '\nhttp://10.255.255.1/not-allowed\n';
    const native = runNative(example('linkcheck'), [], { input: urls }).stdout.toString();
    t.match(native, /^200 2\d\d\d text\/plain http:\/\/127\.0\.0\.1:\d+\/a\n/, 'natively: status, bytes, content type, URL');
    const res = await linkcheck.request({ method: 'POST', url: '/', body: urls });
    t.equal(res.status, 200);
    const lines = res.body.toString().split('\n');
    t.equal(lines.at(-2), 'error http://10.255.255.1/not-allowed', 'an origin fetch_origins does not list: an error, the request never made');
    t.equal(lines.slice(0, 5).join('\n'), native.split('\n').slice(0, 5).join('\n'), 'every fetch from the origin: the same line as natively');
  } finally {
    await linkcheck.close();
    await origin.stop();
  }
});

t.test('visits: the counts kept in the storage VM are what one native process counts, and its task ticks', async (t) => {
  if (!kvmAvailable(t)) return;
  const stateFile = join(mkdtempSync(join(tmpdir(), 'tskvm-visits-')), 'state');
  const visits = await Program.load(example('visits'), { ...quiet, storage: true, stateFile, concurrency: 2 });
  try {
    const urls = ['/a', '/b', '/a?x=1', '/c/d', '/a', '/?top', '/b', '/?top'];
    const native = runNative(example('visits'), urls).stdout.toString();
    let answers = '';
    // One at a time, so that the order is the native one; the two request VMs take turns.
    for (const url of urls) answers += (await visits.request({ url })).body.toString();
    t.equal(answers, native, 'every answer, in order, equal to the native run');
    // Concurrently: every visit counted once.
    await Promise.all(Array.from({ length: 40 }, () => visits.request({ url: '/many' })));
    t.equal((await visits.request({ url: '/many' })).body.toString(), 'path=/many visits=41 total=47 paths=4\n');
    await new Promise((r) => setTimeout(r, 2300));
    const rate = (await visits.request({ url: '/?rate' })).body.toString();
    t.match(rate, /^last_second=\d+ ticks=(\d+)\n$/);
    t.ok(Number(/ticks=(\d+)/.exec(rate)![1]) >= 2, `the periodic storage task ran every second: ${rate.trim()}`);
    t.match(visits.stats().storage, { tasks_inschedule: 1, calls_refused: 0 });
  } finally {
    await visits.close();
  }
});

t.test('the bundled library serves the examples', async (t) => {
  if (!kvmAvailable(t)) return;
  const server = await startServer({ library: join(repoRoot, 'guest', 'examples', 'library.json'), listen: '127.0.0.1:0', accessLog: null });
  try {
    const hello = await request(`${server.url}/hello/there`);
    t.equal(hello.statusCode, 200);
    t.equal(await hello.body.text(), 'Hello from tskvm: GET /hello/there\n');
    const echo = await request(`${server.url}/echo/e?arg=7`, { method: 'PUT', body: 'b', headers: { 'x-a': '1' } });
    const json = await echo.body.json() as { method: string; arg: string; headers: string[]; body: string };
    t.equal(json.method, 'PUT');
    t.equal(json.arg, '7', 'arg from the query parameter the library names');
    t.ok(json.headers.includes('x-a: 1'));
    t.equal(json.body, 'b');
    const counts = [];
    for (let i = 0; i < 4; i++) counts.push(Number(/total=(\d+)/.exec(await (await request(`${server.url}/counter/`)).body.text())![1]));
    t.same(counts, [1, 2, 3, 4], 'the counter counts across requests');
    const csv = await request(`${server.url}/report/?rows=1000000&seed=9`);
    t.equal(csv.headers['content-length'], String(41 + 1_000_000 * 46), 'report: Content-Length from the start');
    const digest = createHash('sha256');
    for await (const piece of csv.body) digest.update(piece);
    t.equal(digest.digest('hex'), createHash('sha256').update(runNative(example('report'), ['1000000', '9']).stdout).digest('hex'), 'report: 46 MB streamed over HTTP, equal to the native run');
    const expected = [];
    for (const path of ['/hello/from-linkcheck', '/hello/again', '/no-such-program/']) {
      const direct = await request(`${server.url}${path}`);
      const body = Buffer.from(await direct.body.arrayBuffer());
      expected.push(`${direct.statusCode} ${body.length} ${direct.headers['content-type']} ${path}`);
    }
    t.equal(await (await request(`${server.url}/linkcheck/`)).body.text(), expected.join('\n') + '\n', 'linkcheck: its sibling programs by self-request, as a client sees them');
    const visits = [];
    for (let i = 0; i < 3; i++) visits.push(await (await request(`${server.url}/visits/here`)).body.text());
    t.match(visits[2], /^path=\/visits\/here visits=\d+ total=\d+ paths=\d+\n$/, 'visits answers from its storage VM');
    t.equal(Number(/visits=(\d+)/.exec(visits[2])![1]) - Number(/visits=(\d+)/.exec(visits[0])![1]), 2, 'and counts each visit');
  } finally {
    await server.close();
  }
});
