// `tskvm serve` over HTTP: a server started in-process on the test library (test/fixtures/
// server-library.json, programs from test/guests/requests/), with undici as the client.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { startServer, type RunningServer, type ServerOptions } from '../src/server/server.js';
import { cliPath, guestPath, kvmAvailable, repoRoot } from './helpers/differential.js';

const LIBRARY = join(repoRoot, 'test', 'fixtures', 'server-library.json');

async function withServer(options: Partial<ServerOptions>, body: (s: RunningServer, log: { access: string[]; warnings: string[] }) => Promise<void>): Promise<void> {
  const log = { access: [] as string[], warnings: [] as string[] };
  const server = await startServer({
    library: LIBRARY, listen: '127.0.0.1:0', accessLog: (l) => log.access.push(l), warn: (m) => log.warnings.push(m), ...options,
  });
  try {
    await body(server, log);
  } finally {
    await server.close();
  }
}

async function get(url: string, options: Parameters<typeof request>[1] = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const res = await request(url, options);
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/** req-faults compares the whole path: it is reached by its Host (faults.test), so that the guest sees "/loop". */
function faults(s: RunningServer, path: string): ReturnType<typeof get> {
  return get(`${s.url}${path}`, { headers: { host: 'faults.test' } });
}

async function stats(s: RunningServer, token = 'secret'): Promise<any> {
  const res = await get(`${s.url}/__tskvm/stats`, { headers: { authorization: `Bearer ${token}` } });
  return JSON.parse(res.text);
}

/**
 * Waits until `program` has `active` requests running and `queued` waiting (by the stats endpoint, token
 * "secret"). A fixed sleep is not enough: under emulation (the svm lane) a program takes seconds to start.
 */
async function untilBusy(s: RunningServer, program: string, want: { active: number; queued?: number }): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const st = (await stats(s)).programs[program]?.stats;
    if (st && st.active === want.active && st.queued === (want.queued ?? 0)) return;
    if (Date.now() > deadline) throw new Error(`${program} never had ${JSON.stringify(want)}: ${JSON.stringify(st && { active: st.active, queued: st.queued })}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('routes: /<program>/…, a routes prefix with its arg, arg_query, Host; 404 for no program', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({}, async (s, log) => {
    const hello = await get(`${s.url}/hello/anything`);
    t.equal(hello.status, 200);
    t.equal(hello.text, 'Hello World!\n');
    t.equal(hello.headers['content-type'], 'text/plain');
    t.equal(hello.headers['content-length'], '13');
    t.equal(hello.headers['cache-control'], 'no-store', 'not marked cacheable');
    t.equal((await get(`${s.url}/greet/x`)).text, 'Hello World!\n', 'routes prefix');

    const routed = await get(`${s.url}/v1/echo/a?b=1`);
    t.match(routed.text, /^method=GET\nurl=\/v1\/echo\/a\?b=1\narg=from-route\n/, 'the guest sees the whole URL; arg from the route');
    t.match((await get(`${s.url}/echo/x?arg=from%20query`)).text, /\narg=from query\n/, 'arg_query');
    const byHost = await get(`${s.url}/hello/x`, { headers: { host: 'echo.test' } });
    t.match(byHost.text, /^method=GET\nurl=\/hello\/x\n/, 'Host wins over the path');

    const none = await get(`${s.url}/nothing/here`);
    t.equal(none.status, 404);
    t.match(log.access[0], /^hello GET \/hello\/anything 200 13 vm=[\d.]+ms queued=[\d.]+ms total=[\d.]+ms$/);
    t.ok(log.access.some((l) => /^- GET \/nothing\/here 404 /.test(l)));
  });
});

t.test('GET/POST/PUT/DELETE through req-echo: headers both ways, a 4 MiB body, sys_set_cacheable', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({}, async (s) => {
    for (const method of ['GET', 'POST', 'PUT', 'DELETE'] as const) {
      const body = method === 'GET' ? undefined : `body of ${method}`;
      const res = await get(`${s.url}/echo/m`, { method, body, headers: { 'x-test': 'ping', 'content-type': 'text/x-test' } });
      t.equal(res.status, 200, method);
      t.match(res.text, new RegExp(`^method=${method}\\nurl=/echo/m\\n`), `${method}: method and url`);
      t.match(res.text, /\ncontent_type=text\/x-test\n/);
      t.match(res.text, /\nx-test: ping\n/i, 'request header reaches the guest');
      t.match(res.text, new RegExp(`body_len=${body?.length ?? 0}\\n${body ?? ''}$`));
      t.equal(res.headers['x-echo'], 'yes', 'guest header (BackendResponseExtra)');
      t.equal(res.headers['x-test-echo'], 'ping', 'guest header (sys_http_append)');
    }
    const big = Buffer.alloc(4 << 20, 0x61);
    const large = await get(`${s.url}/echo/big`, { method: 'POST', body: big });
    t.equal(large.status, 200);
    t.ok(large.text.endsWith(`body_len=${big.length}\n${big.toString()}`), '4 MiB body in and out');
    const api = await get(`${s.url}/api/x`);
    t.equal(api.headers['cache-control'], 'max-age=10, stale-while-revalidate=2', 'sys_set_cacheable(true, 10000, 2000, 3000)');
  });
});

t.test('lazy start; start: true at boot; a program that cannot start answers 503 with the reason', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({ adminToken: 'secret' }, async (s, log) => {
    let st = await stats(s);
    t.equal(st.programs.boot.state, 'running', 'start: true');
    t.equal(st.programs.hello.state, 'idle', 'not started before its first request');
    const first = await Promise.all(Array.from({ length: 6 }, () => get(`${s.url}/hello/`)));
    t.same(first.map((r) => r.status), [200, 200, 200, 200, 200, 200], 'concurrent first requests wait for one start');
    st = await stats(s);
    t.equal(st.programs.hello.state, 'running');
    t.equal(st.programs.hello.stats.totals.invocations, 6, 'all six ran on the one Program that is kept');
    t.match((await get(`${s.url}/boot/x`)).text, /^paused:GET \/boot\/x 1$/);

    const missing = await get(`${s.url}/missing/x`);
    t.equal(missing.status, 503);
    t.equal(missing.headers['retry-after'], '1');
    t.match(missing.text, /program missing failed to start \[TSKVM_ERR_PROGRAM_NOT_FOUND\]: cannot read program .*no-such-program/);
    st = await stats(s);
    t.equal(st.programs.missing.state, 'failed');
    t.match(st.programs.missing.error, { code: 'TSKVM_ERR_PROGRAM_NOT_FOUND' });
    t.match(log.warnings, [/program missing failed to start/], 'logged once');
  });
});

t.test('limits: 413 for a large body, 431 for too many or too large headers', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({ maxBodySize: 1 << 20, maxHeaderCount: 20, maxHeaderSize: 8192 }, async (s) => {
    const tooLarge = await get(`${s.url}/echo/x`, { method: 'POST', body: Buffer.alloc((1 << 20) + 1) });
    t.equal(tooLarge.status, 413);
    t.equal((await get(`${s.url}/echo/x`, { method: 'POST', body: Buffer.alloc(1 << 20) })).status, 200, 'exactly the limit');
    const chunked = await get(`${s.url}/echo/x`, { method: 'POST', body: Readable.from((function* () { for (let i = 0; i < 3; i++) yield Buffer.alloc(512 << 10); })()) });
    t.equal(chunked.status, 413, 'chunked body past the limit');
    const headers: Record<string, string> = {};
    for (let i = 0; i < 21; i++) headers[`x-h${i}`] = 'v';
    t.equal((await get(`${s.url}/echo/x`, { headers })).status, 431, 'too many fields');
    t.equal((await get(`${s.url}/echo/x`, { headers: { 'x-big': 'a'.repeat(9000) } })).status, 431, 'too large');
    t.equal((await get(`${s.url}/hello/x`)).status, 200, 'still serving');
  });
});

t.test('queue full → 503 Retry-After: 1; a timeout goes to on_error; a crashing program next to a healthy one', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({ adminToken: 'secret', configure: { faults: { concurrency: 1, max_queue: 0 } } }, async (s) => {
    t.equal((await faults(s, '/ok')).text, 'ok');
    const loop = faults(s, '/loop');
    await untilBusy(s, 'faults', { active: 1 });
    const full = await faults(s, '/ok');
    t.equal(full.status, 503, 'the one request VM is busy and no request may wait');
    t.equal(full.headers['retry-after'], '1');
    t.match(full.text, /maxQueue/);
    // req-faults registers on_error, which answers 503 "on_error:<exception>"; without it a timeout is a 504.
    const timedOut = await loop;
    t.equal(timedOut.status, 503, 'max_request_time 1: on_error answers');
    t.match(timedOut.text, /^on_error:/);
    t.equal(timedOut.headers['cache-control'], 'no-store');
    const spin = await get(`${s.url}/body/spin`);
    t.equal(spin.status, 504, 'a timeout with no on_error handler: 504');
    t.match(spin.text, /timeout: the program ran longer than 0.5 s/);
    t.equal((await get(`${s.url}/body/x`)).text, 'len=0 fnv=cbf29ce484222325', 'and the program serves the next request');

    // One request VM and no queue: crash after crash, sequentially, while the healthy program serves.
    const hellos = Promise.all(Array.from({ length: 20 }, () => get(`${s.url}/hello/x`)));
    const crashed: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await faults(s, '/crash');
      crashed.push(`${r.status} ${r.text.slice(0, 9)}`);
    }
    t.same(new Set(crashed), new Set(['503 on_error:']), 'every crash answered by on_error');
    t.same(new Set((await hellos).map((r) => `${r.status} ${r.text}`)), new Set(['200 Hello World!\n']), 'the healthy program is unaffected');
    t.equal((await faults(s, '/ok')).text, 'ok', 'the crashing program still serves');
    const st = await stats(s);
    t.equal(st.global.program_timeout, 2, 'the loop and the spin');
    t.equal(st.global.program_exception, 10, 'crashes counted');
    t.equal(st.global.program_status_5xx, 12, 'the crashes, the loop (on_error answered 503) and the spin (504)');
    t.equal(st.programs.hello.stats.totals.exceptions, 0);
    t.equal(st.programs.faults.stats.totals.exceptions, 10);
    t.equal(st.programs.faults.stats.totals.queue_full, 1);
  });
});

t.test('admin endpoints: 401 / 403 / 200, no token → Unix socket only; stats, metrics, invalidate', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({ adminToken: 'secret' }, async (s) => {
    t.equal((await get(`${s.url}/__tskvm/stats`)).status, 401, 'no credentials');
    t.equal((await get(`${s.url}/__tskvm/stats`, { headers: { authorization: 'Bearer wrong' } })).status, 403, 'wrong token');
    t.equal((await get(`${s.url}/metrics`)).status, 401);
    t.equal((await get(`${s.url}/__tskvm/invalidate`, { method: 'POST' })).status, 401);
    const auth = { authorization: 'Bearer secret' };
    t.equal((await get(`${s.url}/__tskvm/invalidate`, { headers: auth })).status, 405, 'invalidate is a POST');

    await get(`${s.url}/hello/x`);
    await get(`${s.url}/hello/x`);
    const st = JSON.parse((await get(`${s.url}/__tskvm/stats?program=^hel`, { headers: auth })).text);
    t.same(Object.keys(st.programs), ['hello'], 'program=REGEX');
    t.same(Object.keys(st.global).sort(), ['busy_refusals', 'cpu_time', 'fetch_time', 'program_exception', 'program_notfound', 'program_status_4xx', 'program_status_5xx', 'program_timeout', 'self_requests', 'self_requests_failed']);
    const hello = st.programs.hello.stats;
    t.same(Object.keys(hello.program).sort(), ['binary_size', 'binary_type', 'boot_time', 'entry_points', 'name']);
    for (const field of ['invocations', 'resets', 'resets_full', 'exceptions', 'timeouts', 'exception_mem', 'request_cpu_time', 'exception_cpu_time', 'reset_time', 'reservation_time', 'reservation_timeouts', 'input_bytes', 'output_bytes', 'status_2xx', 'status_3xx', 'status_4xx', 'status_5xx']) {
      t.type(hello.totals[field], 'number', `totals.${field}`);
    }
    t.equal(hello.totals.invocations, 2);
    t.equal(hello.vms.length, 2, 'concurrency 2 (group "small")');
    t.equal(st.global.cpu_time > 0, true);

    const metrics = await get(`${s.url}/metrics`, { headers: auth });
    t.equal(metrics.status, 200);
    t.match(metrics.headers['content-type'], /^text\/plain/);
    t.match(metrics.text, /^# TYPE tskvm_program_invocations_total counter\n(.*\n)*tskvm_program_invocations_total\{program="hello"\} 2$/m);
    t.match(metrics.text, /^tskvm_program_request_cpu_seconds_total\{program="hello"\} [\d.e-]+$/m);
    t.match(metrics.text, /^tskvm_program_loaded\{program="echo"\} 0$/m);
    t.match(metrics.text, /^tskvm_program_notfound_total 0$/m);

    const inv = await get(`${s.url}/__tskvm/invalidate?program=hello`, { method: 'POST', headers: auth });
    t.same(JSON.parse(inv.text), { invalidated: ['hello'] });
    t.equal((await stats(s)).programs.hello.state, 'idle', 'unloaded');
    t.equal((await get(`${s.url}/hello/x`)).text, 'Hello World!\n', 'reloaded by the next request');
    t.equal((await stats(s)).programs.hello.stats.totals.invocations, 1, 'a new Program');
  });

  const socketPath = join(mkdtempSync(join(tmpdir(), 'tskvm-sock-')), 'tskvm.sock');
  await withServer({ unix: socketPath }, async (s) => {
    t.equal((await get(`${s.url}/__tskvm/stats`)).status, 403, 'no token: TCP refused');
    const agent = new Agent({ connect: { socketPath } });
    try {
      const viaSocket = await get('http://localhost/__tskvm/stats', { dispatcher: agent });
      t.equal(viaSocket.status, 200, 'no token: the Unix socket is trusted');
      t.ok(JSON.parse(viaSocket.text).programs.hello);
      t.equal((await get('http://localhost/hello/x', { dispatcher: agent })).text, 'Hello World!\n', 'programs on the socket too');
    } finally {
      await agent.close();
    }
  });
});

t.test('a request queued when its program is invalidated runs on the reloaded program', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({ adminToken: 'secret', configure: { faults: { concurrency: 1 } } }, async (s) => {
    const loop = faults(s, '/loop');
    await untilBusy(s, 'faults', { active: 1 });
    const queued = faults(s, '/ok');
    await untilBusy(s, 'faults', { active: 1, queued: 1 });
    await get(`${s.url}/__tskvm/invalidate?program=faults`, { method: 'POST', headers: { authorization: 'Bearer secret' } });
    const [looped, ok] = await Promise.all([loop, queued]);
    t.match(looped.text, /^on_error:/, 'the running request finished on the old program');
    t.equal(ok.status, 200);
    t.equal(ok.text, 'ok');
  });
});

t.test('a guest response HTTP cannot carry is refused whole: a keep-alive client reads the next response right', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({ configure: { faults: { concurrency: 1 } } }, async (s) => {
    // One connection for all: a response whose framing went wrong would be read as part of the next.
    const agent = new Agent({ connections: 1, pipelining: 1 });
    try {
      for (const url of ['/204-body', '/304-body', '/ctype-crlf', '/ctype-ctl']) {
        const bad = await get(`${s.url}${url}`, { headers: { host: 'faults.test' }, dispatcher: agent });
        t.equal(bad.status, 503, `${url}: answered by on_error`);
        t.match(bad.text, /^on_error:/, `${url}: with why`);
        t.equal(bad.headers['x-injected'], undefined, `${url}: nothing injected`);
        const ok = await get(`${s.url}/ok`, { headers: { host: 'faults.test' }, dispatcher: agent });
        t.equal(`${ok.status} ${ok.text}`, '200 ok', `after ${url}: the next response on the connection is whole`);
      }
    } finally {
      await agent.close();
    }
  });
});

t.test('caps: connections past max_connections are closed at once; the others keep working', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({ maxConnections: 2 }, async (s) => {
    const { hostname, port } = new URL(s.url!);
    const open = async (): Promise<Socket> => {
      const socket = connect(Number(port), hostname);
      await once(socket, 'connect');
      return socket;
    };
    const [a, b] = [await open(), await open()];
    const extra = await open();
    const [, hadData] = await Promise.race([
      once(extra, 'close').then(() => ['closed', false] as const),
      new Promise<readonly [string, boolean]>((r) => setTimeout(() => r(['open', true]), 5000)),
    ]);
    t.notOk(hadData, 'the third connection is closed by the server');
    a.write('GET /hello/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const answer = (await a.toArray()).join('');
    t.match(answer, /^HTTP\/1.1 200 OK[\s\S]*Hello World!/, 'a connection within the cap is served');
    b.destroy();
  });
});

t.test('caps: bodies past max_buffered_bytes get 503 Retry-After while the server holds them; a client that stops reading is cut off', async (t) => {
  if (!kvmAvailable(t)) return;
  const MiB = 1 << 20;
  await withServer({ maxBufferedBytes: 20 * MiB, clientTimeout: 1, adminToken: 'secret', configure: { echo: { max_request_memory: 64, max_memory: 256 } } }, async (s) => {
    // A client that sends 8 MiB to req-echo, which answers with it, and never reads: 16 MiB held.
    const { hostname, port } = new URL(s.url!);
    const slow = connect(Number(port), hostname);
    await once(slow, 'connect');
    slow.pause();
    slow.write(`POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: ${8 * MiB}\r\n\r\n`);
    slow.write(Buffer.alloc(8 * MiB, 0x61));
    await untilBusy(s, 'echo', { active: 0 }); // the program has answered; the response waits for the client
    for (let i = 0; (await stats(s)).programs.echo?.stats?.totals.invocations !== 1; i++) {
      if (i > 3000) throw new Error('the slow request never ran');
      await new Promise((r) => setTimeout(r, 20));
    }
    const refused = await get(`${s.url}/echo/y`, { method: 'POST', body: Buffer.alloc(6 * MiB, 0x62) });
    t.equal(refused.status, 503, '6 MiB more does not fit while 16 MiB are held');
    t.equal(refused.headers['retry-after'], '1');
    t.equal((await stats(s)).global.busy_refusals, 1, 'counted: busy_refusals');
    t.equal((await get(`${s.url}/echo/small`, { method: 'POST', body: 'small' })).status, 200, 'a small body still fits');
    await new Promise((r) => setTimeout(r, 3000));
    let received = 0;
    slow.on('data', (d: Buffer) => { received += d.length; });
    slow.resume();
    await once(slow, 'close');
    t.ok(received < 8 * MiB, `the client that stopped reading was cut off (client_timeout 1 s): it got ${received} bytes of 8 MiB`);
    const accepted = await get(`${s.url}/echo/z`, { method: 'POST', body: Buffer.alloc(6 * MiB, 0x63) });
    t.equal(accepted.status, 200, 'then its bytes are given back: the same body is accepted');
    t.equal(accepted.text.length > 6 * MiB, true, 'and echoed whole');
  });
});

t.test('graceful close: the request in flight gets its answer, new connections are refused', async (t) => {
  if (!kvmAvailable(t)) return;
  const log = { access: [] as string[] };
  const server = await startServer({ library: LIBRARY, listen: '127.0.0.1:0', adminToken: 'secret', accessLog: (l) => log.access.push(l), warn: () => {} });
  const inFlight = faults(server, '/loop');
  await untilBusy(server, 'faults', { active: 1 });
  const closed = server.close();
  const res = await inFlight;
  t.equal(res.status, 503, 'answered (by on_error, after max_request_time)');
  t.match(res.text, /^on_error:/);
  t.equal(res.headers.connection, 'close', 'no keep-alive while shutting down');
  await closed;
  await t.rejects(get(`${server.url}/hello/x`), { code: 'ECONNREFUSED' });
  const logged = log.access.filter((l) => !l.includes(' /__tskvm/'));
  t.equal(logged.length, 1, 'the one program request is logged');
  t.match(logged[0], /^faults GET \/loop 503 /);
});

/** `tskvm serve` as a process, once it says where it listens. */
async function spawnServe(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ child: ChildProcess; url: string; out: { stdout: string; stderr: string } }> {
  const child = spawn(process.execPath, [cliPath, 'serve', '--library', LIBRARY, '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d) => { out.stdout += d; });
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      out.stderr += d;
      const m = /tskvm: listening on (http:\/\/\S+)/.exec(out.stderr);
      if (m) resolve(m[1]!);
    });
    child.once('exit', () => reject(new Error(`exited early: ${out.stderr}`)));
  });
  return { child, url, out };
}

t.test('tskvm serve: the admin token from a file or the environment, not the command line', async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-token-'));
  const file = join(dir, 'token');
  writeFileSync(file, 'from-file\n');
  const cases: Array<[string, string[], NodeJS.ProcessEnv]> = [
    ['--admin-token-file', ['--admin-token-file', file], process.env],
    ['TSKVM_ADMIN_TOKEN', [], { ...process.env, TSKVM_ADMIN_TOKEN: 'from-file' }],
  ];
  for (const [how, args, env] of cases) {
    const { child, url } = await spawnServe(args, env);
    try {
      t.equal((await get(`${url}/__tskvm/stats`)).status, 401, `${how}: no token, no stats`);
      t.equal((await get(`${url}/__tskvm/stats`, { headers: { authorization: 'Bearer from-file' } })).status, 200, `${how}: the token works`);
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  }
  writeFileSync(join(dir, 'empty'), '\n');
  const empty = spawnSync(process.execPath, [cliPath, 'serve', '--library', LIBRARY, '--admin-token-file', join(dir, 'empty')], { encoding: 'utf8' });
  t.equal(empty.status, 2, 'an empty token file is a usage error');
  t.match(empty.stderr, /holds no token/);
});

t.test('tskvm serve: prints its address, serves, exits 0 on SIGTERM; a bad library exits with the reason', async (t) => {
  if (!kvmAvailable(t)) return;
  const { child, url, out } = await spawnServe(['--configure', 'hello={"concurrency":1}']);
  t.equal((await get(`${url}/hello/x`)).text, 'Hello World!\n');
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  t.equal(code, 0);
  t.match(out.stdout, /^hello GET \/hello\/x 200 13 /m, 'access log on stdout');
  t.match(out.stderr, /SIGTERM: finishing running requests/);

  const bad = spawn(process.execPath, [cliPath, 'serve', '--library', LIBRARY, '--configure', 'hello={"max_memory":1}'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let badErr = '';
  bad.stderr.on('data', (d) => { badErr += d; });
  const [badCode] = await once(bad, 'exit');
  t.equal(badCode, 125);
  t.match(badErr, /error \[TSKVM_ERR_LIBRARY\]: library .*server-library.json: program "hello": max_memory: 1 is invalid/);
});

t.test('live update: a new ELF replaces the program once it has started; a broken one changes nothing', async (t) => {
  if (!kvmAvailable(t)) return;
  await withServer({ adminToken: 'secret' }, async (s) => {
    const auth = { authorization: 'Bearer secret' };
    const update = (name: string, file: Buffer) => get(`${s.url}/__tskvm/update/${name}`, { method: 'POST', headers: auth, body: file });
    t.equal((await get(`${s.url}/hello/x`)).text, 'Hello World!\n');
    t.equal((await get(`${s.url}/__tskvm/update/hello`, { method: 'POST', body: readFileSync(guestPath('req-echo')) })).status, 401, 'needs the admin token');

    const good = await update('hello', readFileSync(guestPath('req-echo')));
    t.equal(good.status, 200, good.text);
    t.match((await get(`${s.url}/hello/x`)).text, /^method=GET\nurl=\/hello\/x\n/, 'the new program answers');

    const exits = await update('hello', readFileSync(guestPath('hello.glibc')));
    t.equal(exits.status, 422);
    t.match(JSON.parse(exits.text).error, /not updated: the new one failed to start \[TSKVM_ERR_PROGRAM_INIT\].*exited with status 0/);
    const garbage = await update('hello', Buffer.from('not an ELF at all'));
    t.equal(garbage.status, 422);
    t.match(JSON.parse(garbage.text).error, /TSKVM_ERR_ELF_/);
    t.match((await get(`${s.url}/hello/x`)).text, /^method=GET\n/, 'after failed updates the updated program still answers');
    t.equal((await update('nosuch', Buffer.from('x'))).status, 404);
  });
});

t.test("live update as the VMOD's users do it: POST to the program's route with X-LiveUpdate: KEY; 201, stored in filename", async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-liveupdate-'));
  writeFileSync(join(dir, 'hello.elf'), readFileSync(guestPath('req-hello')));
  writeFileSync(join(dir, 'other.elf'), readFileSync(guestPath('req-hello')));
  // The VMOD's format: flat, with a key on one program.
  const library = join(dir, 'compute.json');
  writeFileSync(library, JSON.stringify({ hello: { filename: 'hello.elf', key: 'k-123' }, other: { filename: 'other.elf' } }));
  const post = (s: RunningServer, program: string, key: string | null, body: Buffer) =>
    get(`${s.url}/${program}/`, { method: 'POST', headers: key === null ? {} : { 'x-liveupdate': key }, body });
  const echo = readFileSync(guestPath('req-echo'));
  await withServer({ library, adminToken: 'secret' }, async (s) => {
    t.equal((await get(`${s.url}/hello/x`)).text, 'Hello World!\n');
    t.match(await post(s, 'hello', 'wrong', echo), { status: 403, text: 'Wrong live-update key\n' }, 'a wrong key');
    t.match(await post(s, 'other', 'k-123', echo), { status: 403, text: /not enabled for program other/ }, 'no key, no live update');
    t.match(await post(s, 'hello', 'k-123', Buffer.alloc(0)), { status: 400, text: 'Empty file received\n' });
    t.equal((await get(`${s.url}/hello/x`)).text, 'Hello World!\n', 'nothing changed so far');

    const good = await post(s, 'hello', 'k-123', echo);
    t.match(good, { status: 201, text: 'Update successful (stored)\n' });
    t.match((await get(`${s.url}/hello/x`)).text, /^method=GET\nurl=\/hello\/x\n/, 'the new program answers');
    t.same(readFileSync(join(dir, 'hello.elf')), echo, 'and is in filename');

    const broken = await post(s, 'hello', 'k-123', readFileSync(guestPath('hello.glibc')));
    t.equal(broken.status, 422);
    t.match(broken.text, /not updated: the new one failed to start \[TSKVM_ERR_PROGRAM_INIT\]/);
    t.match((await get(`${s.url}/hello/x`)).text, /^method=GET\n/, 'the old program still serves');
    t.same(readFileSync(join(dir, 'hello.elf')), echo, 'and its file is unchanged');
    t.equal((await stats(s)).programs.hello.live_updates, 1, 'stats: live_updates');
  });
  await withServer({ library }, async (s) => {
    t.match((await get(`${s.url}/hello/x`)).text, /^method=GET\n/, 'a restarted server serves the updated program');
  });
});

t.test('programs and libraries from http URLs: fetched into the cache, revalidated, checked against sha256', async (t) => {
  if (!kvmAvailable(t)) return;
  const { createServer } = await import('node:http');
  const { createHash } = await import('node:crypto');
  const elf = readFileSync(guestPath('req-hello'));
  const lastModified = new Date(Date.now() - 60_000).toUTCString();
  const seen: string[] = [];
  const origin = createServer((req, res) => {
    seen.push(`${req.url} ${req.headers['if-modified-since'] ? 'revalidate' : 'fetch'}`);
    if (req.url === '/lib.json') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ programs: { remote: { filename: 'bin/hello', max_memory: 64 }, pinned: { uri: `http://${req.headers.host}/bin/hello`, sha256: '0'.repeat(64), max_memory: 64 } } }));
    } else if (req.url === '/bin/hello') {
      if (req.headers['if-modified-since'] === lastModified) {
        res.statusCode = 304;
        res.end();
        return;
      }
      res.setHeader('last-modified', lastModified);
      res.end(elf);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  const base = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;
  const cache = mkdtempSync(join(tmpdir(), 'tskvm-cache-'));
  const previous = process.env.TSKVM_CACHE;
  process.env.TSKVM_CACHE = cache;
  try {
    await withServer({ library: `${base}/lib.json`, adminToken: 'secret' }, async (s) => {
      t.equal((await get(`${s.url}/remote/x`)).text, 'Hello World!\n', 'a program from a relative filename in a URL library');
      t.same(seen, ['/lib.json fetch', '/bin/hello fetch']);
      await get(`${s.url}/__tskvm/invalidate?program=remote`, { method: 'POST', headers: { authorization: 'Bearer secret' } });
      t.equal((await get(`${s.url}/remote/x`)).text, 'Hello World!\n', 'reloaded from the cache');
      t.equal(seen.at(-1), '/bin/hello revalidate', 'after If-Modified-Since and a 304');
      const pinned = await get(`${s.url}/pinned/x`);
      t.equal(pinned.status, 503);
      t.match(pinned.text, new RegExp(`TSKVM_ERR_PROGRAM_CHECKSUM.*has sha256 ${createHash('sha256').update(elf).digest('hex')}`), 'sha256 checked');
    });
  } finally {
    if (previous === undefined) delete process.env.TSKVM_CACHE;
    else process.env.TSKVM_CACHE = previous;
    origin.close();
  }
});
