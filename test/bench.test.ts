// `tskvm bench` (src/bench/) and its native drivers (guest/bench/): every mode runs and answers what
// the native loop answers, a mode that answers differently fails the run, the examples' heaps stay
// flat over repeated requests (what makes the native loop and `ephemeral: false` honest), and bad
// cases files get a coded error. Times are never asserted here: bench/ and `npm run bench` report them.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSuite } from '../src/bench/cases.js';
import type { BenchResult } from '../src/bench/harness.js';
import { runNativeLoop } from '../src/bench/native.js';
import { kvmAvailable, repoRoot } from './helpers/differential.js';

const cli = join(repoRoot, 'dist', 'cli', 'main.js');
const examples = join(repoRoot, 'guest', 'examples');
const bundled = join(examples, 'bench.json');
const scratch = mkdtempSync(join(tmpdir(), 'tskvm-bench-test-'));

function bench(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, 'bench', ...args], { encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A cases file in the scratch directory, over the bundled library and native builds. */
function casesFile(name: string, cases: unknown[]): string {
  const file = join(scratch, name);
  writeFileSync(file, JSON.stringify({
    library: join(examples, 'library.json'), loop_dir: join(examples, 'bin', 'loop'), spawn_loop: join(examples, 'bin', 'spawn-loop'), cases,
  }));
  return file;
}

t.test('every mode runs and answers what the native loop answers', async (t) => {
  if (!kvmAvailable(t)) return;
  const chart = join(scratch, 'chart.svg');
  const r = bench(['--program', 'hello,echo,lua,counter,zstd', '--requests', '3', '--warmup', '1', '--json', '--chart', chart]);
  t.equal(r.status, 0, r.stderr);
  const result = JSON.parse(r.stdout) as BenchResult;
  t.same(result.cases.map((c) => c.name), ['hello', 'echo', 'lua', 'counter', 'zstd 1 MiB']);
  t.match(result.machine, { cores: Number, kvm: String, node: process.version });
  for (const c of result.cases) {
    const modes = c.modes.map((m) => m.mode);
    t.same(modes, ['native-loop', 'native-spawn', ...(c.name === 'lua' ? ['reference'] : []), 'tskvm-ephemeral', 'tskvm-persistent', 'tskvm-http'], `${c.name}: the modes, in order`);
    for (const m of c.modes) {
      t.notOk(m.error, `${c.name} ${m.mode}: no error`);
      t.equal(m.requests, 3, `${c.name} ${m.mode}: three timed requests`);
      t.ok(m.p50_us > 0 && m.p99_us >= m.p50_us && m.rps > 0, `${c.name} ${m.mode}: times`);
      t.equal(m.ratio, m.p50_us / c.modes[0]!.p50_us, `${c.name} ${m.mode}: ratio to the native loop`);
    }
    t.equal(c.response.status, 200, `${c.name}: the native loop's answer is a 200`);
  }
  const zstd = result.cases.find((c) => c.program === 'zstd')!;
  t.equal(zstd.request.body_bytes, 1 << 20, 'the generated 1 MiB input');
  t.equal(zstd.request.url, '/zstd/?arg=compress', "the arg travels as the library's arg_query");
  t.equal(result.cases.find((c) => c.name === 'lua')!.modes[2]!.label, 'lua5.4 process');
  t.same(result.cases.find((c) => c.name === 'counter')!.modes.map((m) => m.check), Array(5).fill('status'), "the counter's answer changes: status only");

  const svg = readFileSync(chart, 'utf8');
  t.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  t.ok(svg.trimEnd().endsWith('</svg>'));
  for (const c of result.cases) t.ok(svg.includes(`>${c.name}</text>`), `the chart labels ${c.name}`);
  t.equal(svg.match(/<rect class="bar"/g)?.length, result.cases.reduce((n, c) => n + c.modes.length, 0), 'one bar per case and mode');
});

t.test('the text report has the tables and the targets', async (t) => {
  if (!kvmAvailable(t)) return;
  const saved = join(scratch, 'report.md');
  const r = bench(['--program', 'markdown', '--requests', '2', '--warmup', '1', '--mode', 'tskvm-ephemeral', '--report', saved]);
  t.equal(r.status, 0, r.stderr);
  t.equal(readFileSync(saved, 'utf8'), r.stdout, '--report saves what is printed');
  t.match(r.stdout, /^machine: .+ cores, \d+ GiB; Linux .+; Node v\d+.+; KVM: /m);
  t.match(r.stdout, /\| example \| native loop \| process per request \| tskvm ephemeral \|/);
  t.match(r.stdout, /\| markdown 100 KiB \| native loop \| 2 \|/);
  t.match(r.stdout, /\| markdown 100 KiB \| tskvm ephemeral \| 2 \| .* same body \|/);
  t.match(r.stdout, /targets:\n {2}[✔✘] work of ≥ 1 ms natively: tskvm ephemeral ≤ 1\.15× the native loop: markdown 100 KiB ×\d/);
  t.match(r.stderr, /markdown 100 KiB: tskvm-ephemeral: p50 /, 'progress on stderr');
});

t.test('a mode whose answer differs from the native loop fails the run', async (t) => {
  if (!kvmAvailable(t)) return;
  // hello prints the URL it gets: natively it is given another one, so the process mode differs.
  const file = casesFile('differs.json', [{
    name: 'hello', program: 'hello', path: '/hello/a', native_args: ['/hello/b'],
    reference: { label: 'missing process', command: ['no-such-command-tskvm'] },
  }]);
  const r = bench(['--cases', file, '--requests', '2', '--warmup', '0', '--json', '--mode', 'native-spawn', '--mode', 'reference', '--mode', 'tskvm-ephemeral']);
  t.equal(r.status, 1, 'exit status 1');
  const result = JSON.parse(r.stdout) as BenchResult;
  const [loop, spawn, reference, ephemeral] = result.cases[0]!.modes;
  t.match(reference, { mode: 'reference', label: 'missing process', error: /no-such-command-tskvm is not installed/ }, 'a missing reference command fails its mode only');
  t.notOk(loop!.error);
  t.match(spawn!.error, /the body differs from the native loop's \(31 bytes against 31\)/);
  t.equal(spawn!.requests, 0, 'no times for a wrong answer');
  t.notOk(ephemeral!.error, 'tskvm answers what the native loop answers');
});

t.test('bad cases files and options get TSKVM_ERR_BENCH or a usage error', async (t) => {
  const missing = bench(['--cases', join(scratch, 'none.json')]);
  t.equal(missing.status, 125);
  t.match(missing.stderr, /TSKVM_ERR_BENCH.*cannot read the cases file/);
  const badProgram = bench(['--cases', casesFile('bad-program.json', [{ program: 'nope' }])]);
  t.equal(badProgram.status, 125);
  t.match(badProgram.stderr, /TSKVM_ERR_BENCH.*case 1 \(nope\): no program "nope"/);
  const badCheck = bench(['--cases', casesFile('bad-check.json', [{ program: 'hello', check: { 'tskvm-http': 'bytes' } }])]);
  t.match(badCheck.stderr, /TSKVM_ERR_BENCH.*"check" maps a mode/);
  const noBody = bench(['--cases', casesFile('no-body.json', [{ program: 'zstd', body: 'missing.bin' }])]);
  t.match(noBody.stderr, /TSKVM_ERR_BENCH.*cannot read the body/);
  const unknownCase = bench(['--program', 'no-such-example']);
  t.match(unknownCase.stderr, /TSKVM_ERR_BENCH.*no case or program named no-such-example/);
  const badMode = bench(['--mode', 'fast']);
  t.equal(badMode.status, 2);
  t.match(badMode.stderr, /unknown mode "fast"/);
  t.match(bench(['--requests', '0']).stderr, /--requests needs a whole number ≥ 1/);
});

t.test('the native loop: every example answers the same each time and keeps a flat heap', async (t) => {
  // No KVM here: the loop host runs the handlers natively. A leak of one response per request (what
  // respond.h prevents) would grow the heap by the response size each time: 300 KiB for zstd.
  const suite = await loadSuite(bundled, { requests: 30, warmup: 2 });
  t.equal(suite.cases.length, 14, 'a case per example');
  for (const c of suite.cases) {
    const run = runNativeLoop(suite, c);
    t.notOk(run.error, `${c.name}: 32 requests, each answered like the first`);
    t.equal(run.status, 200, `${c.name}: status 200`);
    t.equal(run.samples.length, 30);
    const growth = run.heap!.after - run.heap!.before;
    t.ok(growth < 64 << 10, `${c.name}: the heap grew by ${growth} bytes over 30 requests`);
  }
});

t.test('the loop host checks each answer against the first, or only its status', async (t) => {
  const suite = await loadSuite(casesFile('loop.json', [
    { name: 'counter by body', program: 'counter', check: { all: 'body' } },
    { name: 'counter by status', program: 'counter', check: { all: 'status' } },
  ]), { requests: 3, warmup: 0 });
  const byBody = runNativeLoop(suite, suite.cases[0]!);
  t.equal(byBody.error, 'a response differed from the first one');
  const byStatus = runNativeLoop(suite, suite.cases[1]!);
  t.notOk(byStatus.error);
  t.equal(byStatus.output.toString(), 'total=3 mine=3\n', 'the last of three requests, counted in shared memory');
});
