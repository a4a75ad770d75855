#!/usr/bin/env node
// Soak: `tskvm serve` under a mix of healthy, crashing and looping programs for a while (default
// 2 minutes). Checks that no request is lost or answered twice (every request carries an id the echo
// program sends back) and samples the server's RSS and open fds: after warm-up they must stay flat.
//
//   npm run build && make -C test/guests && node bench/serve-soak.mjs [--duration S] [--clients N] [--json FILE]
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? fallback : process.argv[i + 1];
};
const durationS = Number(arg('--duration', 120));
const clients = Number(arg('--clients', 16));
const jsonOut = arg('--json', null);

// The mix: mostly healthy requests, some crashing, a few looping into max_request_time.
const MIX = [
  { weight: 60, name: 'hello', path: () => '/hello/x', check: (s, b) => s === 200 && b === 'Hello World!\n' },
  { weight: 25, name: 'echo', path: (id) => `/echo/soak?id=${id}`, check: (s, b, id) => s === 200 && b.includes(`url=/echo/soak?id=${id}\n`) },
  { weight: 12, name: 'crash', path: () => '/crash', host: 'faults.test', check: (s, b) => s === 503 && b.startsWith('on_error:') },
  { weight: 3, name: 'loop', path: () => '/loop', host: 'faults.test', check: (s, b) => s === 503 && b.startsWith('on_error:timeout') },
];
const totalWeight = MIX.reduce((a, m) => a + m.weight, 0);
const pick = (r) => {
  let x = r % totalWeight;
  for (const m of MIX) if ((x -= m.weight) < 0) return m;
  return MIX[0];
};

const dir = mkdtempSync(join(tmpdir(), 'tskvm-soak-'));
const library = join(dir, 'library.json');
const bin = (n) => join(root, 'test', 'guests', 'bin', n);
writeFileSync(library, JSON.stringify({
  groups: { soak: { max_memory: 64, concurrency: 2, max_request_time: 1, max_queue: 1000, queue_timeout: 30 } },
  programs: {
    hello: { filename: bin('req-hello'), group: 'soak' },
    echo: { filename: bin('req-echo'), group: 'soak' },
    faults: { filename: bin('req-faults'), group: 'soak' },
  },
  hosts: { 'faults.test': 'faults' },
}));

const port = 18000 + (process.pid % 1000);
const server = spawn(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'serve', '--library', library, '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
let serverErr = '';
server.stderr.on('data', (d) => { serverErr += d; });
const base = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  try {
    await request(`${base}/hello/x`).then((r) => r.body.dump());
    break;
  } catch {
    if (i > 100) throw new Error(`tskvm serve did not start:\n${serverErr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const sample = () => ({
  rssMiB: Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))[1]) / 1024,
  fds: readdirSync(`/proc/${server.pid}/fd`).length,
});

const agent = new Agent({ connections: clients, pipelining: 1 });
const counts = Object.fromEntries(MIX.map((m) => [m.name, { sent: 0, ok: 0, wrong: 0 }]));
const answered = new Set();
let nextId = 1;
let duplicates = 0;
let lost = 0;
const samples = [];
const started = performance.now();
const warmupMs = Math.min(20_000, durationS * 1000 / 4);
const timer = setInterval(() => samples.push({ t: (performance.now() - started) / 1000, ...sample() }), 2_000);

async function client(seed) {
  let r = seed;
  while (performance.now() - started < durationS * 1000) {
    r = (r * 1103515245 + 12345) >>> 0;
    const kind = pick(r >>> 8);
    const id = nextId++;
    counts[kind.name].sent++;
    try {
      const res = await request(`${base}${kind.path(id)}`, { dispatcher: agent, headers: kind.host ? { host: kind.host } : {} });
      const body = await res.body.text();
      if (answered.has(id)) duplicates++;
      answered.add(id);
      if (kind.check(res.statusCode, body, id)) counts[kind.name].ok++;
      else if (counts[kind.name].wrong++ < 3) console.error(`${kind.name} #${id}: ${res.statusCode} ${body.slice(0, 120)}`);
    } catch (e) {
      lost++;
      if (lost < 4) console.error(`#${id}: ${e.message}`);
    }
  }
}

await Promise.all(Array.from({ length: clients }, (_, i) => client(i + 1)));
clearInterval(timer);
const end = sample();
server.kill('SIGTERM');
await new Promise((r) => server.once('exit', r));
await agent.close();

const afterWarmup = samples.find((s) => s.t * 1000 >= warmupMs) ?? samples[0];
const sent = Object.values(counts).reduce((a, c) => a + c.sent, 0);
const rows = [
  ['duration', `${durationS} s, ${clients} clients`],
  ...MIX.map((m) => [`${m.name} (${m.weight} %)`, `${counts[m.name].sent} sent, ${counts[m.name].ok} right, ${counts[m.name].wrong} wrong`]),
  ['requests sent / answered', `${sent} / ${answered.size}`],
  ['lost (no answer) / answered twice', `${lost} / ${duplicates}`],
  [`server RSS after warm-up (${(afterWarmup.t).toFixed(0)} s) → end`, `${afterWarmup.rssMiB.toFixed(1)} → ${end.rssMiB.toFixed(1)} MiB`],
  ['server RSS min / max after warm-up', (() => {
    const later = samples.filter((s) => s.t >= afterWarmup.t).map((s) => s.rssMiB);
    return `${Math.min(...later).toFixed(1)} / ${Math.max(...later).toFixed(1)} MiB`;
  })()],
  ['server open fds after warm-up → end', `${afterWarmup.fds} → ${end.fds}`],
];
console.log(`\ntskvm serve soak — node ${process.version}\n\n| measurement | value |\n|---|---|`);
for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ durationS, clients, counts, sent, answered: answered.size, lost, duplicates, samples, end }, null, 2));
const wrong = Object.values(counts).reduce((a, c) => a + c.wrong, 0);
process.exitCode = lost || duplicates || wrong || answered.size !== sent ? 1 : 0;
