// Load benchmark of `tskvm serve`: wrk against the bundled hello program, side by side in one run with a
// plain node:http server whose handler returns the same bytes, directly and through Varnish with caching
// disabled (a VCL that passes every request).
//
//   npm run build && make -C guest/examples
//   node bench/serve-load.mjs [--duration SECONDS] [--quick] [--connections N] [--threads N] [--json FILE]
//
// Needs Debian's `wrk` and `varnish` (apt-get install -y wrk varnish); /dev/kvm for tskvm.
// Each target gets a short warm-up run (not counted), then `wrk -tTHREADS -cCONNECTIONS -dDURATION --latency`
// on /hello/x (default -t2 -c64 -d30s; --quick: 5 s). Targets:
//
//   plain node          node:http, "Hello from tskvm: GET /hello/x\n", text/plain, Cache-Control: no-store
//   tskvm               node dist/cli/main.js serve --library guest/examples/library.json (access log → /dev/null)
//   varnish → plain     varnishd (return (pass)) in front of the plain server
//   varnish → tskvm     varnishd (return (pass)) in front of tskvm
//
// Targets: tskvm ≥ 0.8× the plain server's requests/s; 0 socket errors and 0 non-2xx answers everywhere.
// Every child (servers, varnishd) is stopped by its PID at the end, and on an error or Ctrl-C.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createServer } from 'node:net';
import { printTable, root, writeJsonOption } from './lib.mjs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at < 0 ? fallback : args[at + 1];
};
const quick = args.includes('--quick');
const duration = Number(option('--duration', quick ? 5 : 30));
const connections = Number(option('--connections', 64));
const threads = Number(option('--threads', 2));
const warmup = Math.min(3, Math.max(1, Math.round(duration / 10)));
const PATH = '/hello/x';
const HELLO = `Hello from tskvm: GET ${PATH}\n`;
const TOKEN = 'serve-load';
const TARGET_RATIO = 0.8;
for (const [name, v] of [['--duration', duration], ['--connections', connections], ['--threads', threads]]) {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name}: expected a positive integer`);
}

function which(name, extra = []) {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), ...extra].filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  throw new Error(`${name} not found: apt-get install -y wrk varnish`);
}
const wrk = which('wrk');
const varnishd = which('varnishd', ['/usr/sbin', '/usr/local/sbin']);
const cli = join(root, 'dist/cli/main.js');
try {
  accessSync(cli);
} catch {
  throw new Error(`${cli} is missing: npm run build first`);
}
if (spawnSync('make', ['-s', '-C', join(root, 'guest/examples')], { stdio: 'inherit' }).status !== 0) throw new Error('cannot build guest/examples');

const dir = mkdtempSync(join(tmpdir(), 'tskvm-serve-load-'));
spawnSync('chmod', ['755', dir]); // varnishd (as root) reads its VCL and work directory as its own user
const children = new Set();

function stopAll() {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
}
process.on('exit', stopAll);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

/** Spawns a server; resolves with its URL once `ready(stderr)` finds it (or at once when `ready` is the URL). */
function startChild(name, command, argv, ready, stdout = 'ignore') {
  const child = spawn(command, argv, { stdio: ['ignore', stdout, 'pipe'] });
  children.add(child);
  let output = '';
  if (typeof ready === 'string') {
    // The URL is known (varnishd): the caller polls it.
    child.stderr.on('data', (d) => (output += d));
    return Promise.resolve({ name, child, url: ready, output: () => output });
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in 30 s:\n${output}`)), 30_000);
    child.stderr.on('data', (d) => {
      output += d;
      const url = ready(output);
      if (url) {
        clearTimeout(timer);
        resolve({ name, child, url, output: () => output });
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}):\n${output}`));
    });
  });
}

async function stop(server) {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const PLAIN = `
import { createServer } from 'node:http';
const server = createServer((req, res) => {
  const body = Buffer.from('Hello from tskvm: ' + req.method + ' ' + req.url + '\\n');
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-store', 'Content-Length': body.length });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => process.stderr.write('listening on http://127.0.0.1:' + server.address().port + '\\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

const listening = (out) => /listening on (http:\/\/[^\s]+)/.exec(out)?.[1];

async function startVarnish(name, backendUrl) {
  const { hostname, port } = new URL(backendUrl);
  const vcl = join(dir, `${name}.vcl`);
  writeFileSync(vcl, `vcl 4.1;
backend default { .host = "${hostname}"; .port = "${port}"; }
sub vcl_recv { return (pass); }
`);
  const vport = await freePort();
  const server = await startChild(name, varnishd, [
    '-F', '-n', join(dir, name), '-a', `127.0.0.1:${vport}`, '-T', 'none', '-f', vcl, '-s', 'malloc,64m', '-p', 'vsl_space=16M',
  ], `http://127.0.0.1:${vport}`, 'pipe');
  server.child.stdout.on('data', () => {}); // -F logs on stdout too
  await waitForHello(server.url, server);
  return server;
}

/** The answer must be the hello text: the servers are compared on the same bytes. */
async function waitForHello(url, server) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (server && (server.child.exitCode !== null || server.child.signalCode !== null)) throw new Error(`${server.name} exited:\n${server.output()}`);
    try {
      const res = await fetch(url + PATH);
      const text = await res.text();
      if (res.status === 200 && text === HELLO) return;
      if (Date.now() > deadline) throw new Error(`${url}${PATH}: ${res.status} ${JSON.stringify(text)}, not ${JSON.stringify(HELLO)}`);
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const UNIT = { us: 1e-3, ms: 1, s: 1000, m: 60_000 };
const ms = (s) => {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s);
  if (!m) throw new Error(`wrk: cannot read the duration ${s}`);
  return Number(m[1]) * UNIT[m[2]];
};

/** Runs wrk and reads its summary. */
function runWrk(url, seconds) {
  const r = spawnSync(wrk, [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--latency', url], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`wrk ${url} failed (${r.status}): ${r.stderr}${r.stdout}`);
  const out = r.stdout;
  const num = (re, fallback) => {
    const m = re.exec(out);
    if (!m) {
      if (fallback !== undefined) return fallback;
      throw new Error(`wrk output has no ${re}:\n${out}`);
    }
    return m.slice(1).map(Number);
  };
  const latency = (pct) => ms(new RegExp(`^\\s+${pct}%\\s+(\\S+)`, 'm').exec(out)?.[1] ?? 'NaN');
  const [requests] = num(/(\d+) requests in/);
  const [connect, read, write, timeout] = num(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/, [0, 0, 0, 0]);
  const [non2xx] = num(/Non-2xx or 3xx responses: (\d+)/, [0]);
  return {
    requests,
    rps: num(/Requests\/sec:\s+([\d.]+)/)[0],
    p50: latency(50),
    p99: latency(99),
    socketErrors: { connect, read, write, timeout },
    errors: connect + read + write + timeout,
    non2xx,
    raw: out,
  };
}

async function measure(label, url) {
  process.stderr.write(`${label}: warm-up ${warmup} s, then ${duration} s … `);
  runWrk(url + PATH, warmup);
  const r = runWrk(url + PATH, duration);
  process.stderr.write(`${r.rps.toFixed(0)} req/s\n`);
  return { label, url: url + PATH, ...r };
}

async function adminStats(url) {
  const res = await fetch(`${url}/__tskvm/stats?program=^hello$`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return res.json();
}

const results = {};
let tskvmStats = null;
try {
  const plain = await startChild('plain node', process.execPath, ['--input-type=module', '-e', PLAIN], listening);
  const devnull = openSync('/dev/null', 'w');
  const tskvm = await startChild('tskvm', process.execPath, [
    cli, 'serve', '--library', join(root, 'guest/examples/library.json'), '--listen', '127.0.0.1:0', '--admin-token', TOKEN,
  ], listening, devnull);
  await waitForHello(plain.url);
  await waitForHello(tskvm.url);

  results.plain = await measure('plain node', plain.url);
  results.tskvm = await measure('tskvm', tskvm.url);
  const before = await adminStats(tskvm.url);
  const vPlain = await startVarnish('varnish-plain', plain.url);
  results.varnishPlain = await measure('varnish → plain node', vPlain.url);
  await stop(vPlain);
  const vTskvm = await startVarnish('varnish-tskvm', tskvm.url);
  results.varnishTskvm = await measure('varnish → tskvm', vTskvm.url);
  await stop(vTskvm);
  tskvmStats = { before: before.programs.hello.stats?.totals, after: (await adminStats(tskvm.url)).programs.hello.stats?.totals, global: before.global };
  await stop(tskvm);
  await stop(plain);
} finally {
  stopAll();
  rmSync(dir, { recursive: true, force: true });
}

const ratio = (a, b) => a.rps / b.rps;
const f0 = (v) => v.toFixed(0);
const f2 = (v) => v.toFixed(2);
const rows = [
  [results.plain, null],
  [results.tskvm, ratio(results.tskvm, results.plain)],
  [results.varnishPlain, null],
  [results.varnishTskvm, ratio(results.varnishTskvm, results.varnishPlain)],
];
console.log(`\nwrk -t${threads} -c${connections} -d${duration}s --latency ${PATH} — ${cpus().length} × ${cpus()[0]?.model.trim()}, node ${process.version}\n`);
printTable(
  ['target', 'requests/s', 'p50 ms', 'p99 ms', 'requests', 'socket errors (c/r/w/t)', 'non-2xx', 'vs plain node, same path'],
  rows.map(([r, x]) => [
    r.label, f0(r.rps), f2(r.p50), f2(r.p99), String(r.requests),
    `${r.errors} (${r.socketErrors.connect}/${r.socketErrors.read}/${r.socketErrors.write}/${r.socketErrors.timeout})`,
    String(r.non2xx), x === null ? '—' : `${f2(x)}× ${x >= TARGET_RATIO ? '(≥ 0.8 ✓)' : '(< 0.8 ✗)'}`,
  ]),
);
const allClean = Object.values(results).every((r) => r.errors === 0 && r.non2xx === 0);
console.log(`\nerrors: ${allClean ? '0 socket errors and 0 non-2xx answers everywhere ✓' : 'SOME ✗ (see the table)'}`);
if (tskvmStats?.before && tskvmStats?.after) {
  // The tskvm run: wrk's completed requests vs what the program counted (warm-up and probes included).
  console.log(`tskvm hello invocations: ${tskvmStats.before.invocations} after the direct run, ${tskvmStats.after.invocations} after the Varnish run`);
}

writeJsonOption({
  settings: { threads, connections, duration, warmup, path: PATH, cpus: cpus().length, cpu: cpus()[0]?.model.trim(), node: process.version },
  results: Object.fromEntries(Object.entries(results).map(([k, { raw, ...r }]) => [k, r])),
  ratios: { tskvm: ratio(results.tskvm, results.plain), varnishTskvm: ratio(results.varnishTskvm, results.varnishPlain) },
  tskvmStats,
});
