// `tskvm serve` behind Debian's Varnish with varnish/default.vcl: a server started in-process on a small
// library (req-api, whose answers are cacheable for 10 s, and req-hello, whose answers are not), and
// `varnishd -F` as a child process in front of it, with undici as the client. CI installs `varnish`
// (.ci/run); without varnishd this test fails, unless TSKVM_SKIP_KVM=1 skips it like every KVM test.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, chmodSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { request } from 'undici';
import { startServer } from '../src/index.js';
import type { RunningServer } from '../src/server/server.js';
import { guestBinDir, kvmAvailable, repoRoot } from './helpers/differential.js';

const VCL = join(repoRoot, 'varnish', 'default.vcl');
const TOKEN = 'varnish-test-token';

/** varnishd lives in /usr/sbin, which a non-root PATH may lack. */
function findVarnishd(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const dir of dirs.filter(Boolean)) {
    try {
      accessSync(join(dir, 'varnishd'), constants.X_OK);
      return join(dir, 'varnishd');
    } catch {
      // not there
    }
  }
  return null;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

interface Varnish {
  url: string;
  child: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
}

/** Every varnishd this file started, killed by PID if the test process exits without its teardown. */
const started = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/**
 * Starts `varnishd -F` with default.vcl pointed at `backendPort`, and resolves once it answers HTTP.
 * A free port is picked by binding port 0 and closing it; another process can take it in between, so a
 * varnishd that fails to bind is retried on a new port.
 */
async function startVarnish(varnishd: string, backendPort: number, dir: string): Promise<Varnish> {
  const source = readFileSync(VCL, 'utf8');
  const vcl = source.replace(/(\.port\s*=\s*)"8080"/, `$1"${backendPort}"`);
  if (vcl === source) throw new Error(`${VCL}: no \`.port = "8080";\` to point at the test server`);
  const vclPath = join(dir, 'default.vcl');
  writeFileSync(vclPath, vcl);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = spawn(varnishd, [
      '-F', // foreground: the PID we hold is the manager, which stops its cache child when it exits
      '-n', join(dir, `varnish-${attempt}`),
      '-a', `127.0.0.1:${port}`,
      '-T', 'none', // no management CLI listener
      '-f', vclPath,
      '-s', 'malloc,32m',
      '-p', 'vsl_space=4M', // a small shared-memory log (80 MB by default)
      '-p', 'thread_pool_min=5', // a few threads (100 per pool by default) to start quicker
      '-p', 'thread_pools=1',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(child);
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const exited = once(child, 'exit');
    const stop = async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      started.delete(child);
    };
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 30_000;
    let ready = false;
    while (!ready && child.exitCode === null && child.signalCode === null && Date.now() < deadline) {
      // The manager binds the port before its cache child runs: wait for an HTTP answer, not a connection.
      // "/" names no program, so tskvm answers 404 (not cacheable) without running a guest.
      if (await canConnect(port)) {
        ready = await request(`${url}/`, { headersTimeout: 2000, bodyTimeout: 2000 })
          .then(async (res) => { await res.body.dump(); return true; }, () => false);
      }
      if (!ready) await new Promise((r) => setTimeout(r, 100));
    }
    if (ready) return { url, child, output: () => output, stop };
    const why = child.exitCode !== null ? `exit ${child.exitCode}` : child.signalCode ?? 'no answer in 30 s';
    await stop();
    if (attempt < 3 && /Could not get socket.*Address already in use/i.test(output)) continue;
    throw new Error(`varnishd did not start (${why}):\n${output}`);
  }
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const res = await request(url, { headers });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/** Invocations of a program so far, asked of tskvm directly (not through Varnish). */
async function invocations(server: RunningServer, program: string): Promise<number> {
  const res = await get(`${server.url}/__tskvm/stats?program=^${program}$`, { authorization: `Bearer ${TOKEN}` });
  return JSON.parse(res.text).programs[program].stats?.totals.invocations ?? 0;
}

t.test('varnish/default.vcl in front of tskvm serve: cacheable answers are cached, the rest is not', async (t) => {
  if (!kvmAvailable(t)) return;
  const varnishd = findVarnishd();
  if (!varnishd) {
    const missing = 'varnishd not found (in PATH, /usr/sbin or /usr/local/sbin): install Debian\'s varnish (apt-get install varnish), as .ci/run does';
    if (process.env.TSKVM_SKIP_KVM === '1') t.skip(`${missing} (skipped: TSKVM_SKIP_KVM=1)`, () => {});
    else t.fail(missing);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-varnish-'));
  // Run as root, varnishd reads the VCL and its working directory as its own unprivileged user (-j unix).
  chmodSync(dir, 0o755);
  let server: RunningServer | undefined;
  let varnish: Varnish | undefined;
  t.teardown(async () => {
    await varnish?.stop();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const library = join(dir, 'library.json');
  writeFileSync(library, JSON.stringify({
    groups: { small: { max_memory: 64, concurrency: 2, max_request_time: 4 } },
    programs: {
      api: { filename: join(guestBinDir, 'req-api'), group: 'small' },
      hello: { filename: join(guestBinDir, 'req-hello'), group: 'small' },
    },
  }));
  const access: string[] = [];
  server = await startServer({ library, listen: '127.0.0.1:0', adminToken: TOKEN, accessLog: (l) => access.push(l), warn: () => {} });
  varnish = await startVarnish(varnishd, Number(new URL(server.url!).port), dir);

  // req-api: sys_set_cacheable(true, 10 s, grace 2 s) → Cache-Control: max-age=10, stale-while-revalidate=2.
  const miss = await get(`${varnish.url}/api/cached?x=1`);
  t.equal(miss.status, 200);
  t.equal(miss.headers['x-cache'], 'MISS', 'first request: a miss');
  t.equal(miss.headers['cache-control'], 'max-age=10, stale-while-revalidate=2');
  t.match(miss.text, /\nurl=\/api\/cached\?x=1\n/);
  t.equal(await invocations(server, 'api'), 1);
  const hit = await get(`${varnish.url}/api/cached?x=1`);
  t.equal(hit.status, 200);
  t.equal(hit.headers['x-cache'], 'HIT', 'second request: a hit');
  t.equal(hit.text, miss.text, 'the same body');
  t.equal(hit.headers['x-api-extra'], '1', 'guest headers are kept in the cache');
  t.equal(await invocations(server, 'api'), 1, 'the hit did not reach tskvm');
  const other = await get(`${varnish.url}/api/cached?x=2`);
  t.equal(other.headers['x-cache'], 'MISS', 'another URL is another object');
  t.equal(await invocations(server, 'api'), 2);
  t.equal((await get(`${varnish.url}/api/cached?x=1`)).headers['x-cache'], 'HIT', 'still cached');

  // req-hello: not cacheable → Cache-Control: no-store → every request reaches tskvm.
  for (let i = 1; i <= 3; i++) {
    const res = await get(`${varnish.url}/hello/x`);
    t.equal(res.status, 200);
    t.equal(res.text, 'Hello World!\n');
    t.equal(res.headers['cache-control'], 'no-store');
    t.equal(res.headers['x-cache'], 'MISS', `non-cacheable request ${i}: a miss`);
    t.equal(await invocations(server, 'hello'), i, `request ${i} reached tskvm`);
  }

  // Admin endpoints are passed, never cached; they still need the token on TCP.
  t.equal((await get(`${varnish.url}/__tskvm/stats`)).status, 401, 'no token through Varnish either');
  const statsA = await get(`${varnish.url}/__tskvm/stats?program=hello`, { authorization: `Bearer ${TOKEN}` });
  const statsB = await get(`${varnish.url}/__tskvm/stats?program=hello`, { authorization: `Bearer ${TOKEN}` });
  t.equal(statsA.status, 200);
  t.same([statsA.headers['x-cache'], statsB.headers['x-cache']], ['MISS', 'MISS'], '/__tskvm/stats is passed');
  t.equal(JSON.parse(statsB.text).programs.hello.stats.totals.invocations, 3);
  const metrics = await get(`${varnish.url}/metrics`, { authorization: `Bearer ${TOKEN}` });
  t.equal(metrics.status, 200);
  t.equal(metrics.headers['x-cache'], 'MISS', '/metrics is passed');

  // Every request the test made to Varnish that was not a hit shows up in tskvm's access log.
  t.equal(access.filter((l) => / GET \/api\/cached/.test(l)).length, 2, 'two api fetches (two URLs) for four api requests');
  t.equal(access.filter((l) => / GET \/hello\/x /.test(l)).length, 3, 'three hello fetches for three hello requests');
  t.equal(varnish.child.exitCode, null, 'varnishd still running');
});
