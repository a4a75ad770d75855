#!/usr/bin/env node
// Runs test files one after another, inside the lane's VM, and reports them as tap's runner does:
// each file's TAP as an indented subtest, then one `ok`/`not ok` line per file and a closing count.
//
//   node svm-lane/run-tests.mjs [--file-timeout S] test/a.test.ts test/b.test.ts ...
//
// The files run compiled (build/tests/, from tsconfig.tests.json), with plain node: tap's own
// runner would compile every TypeScript module again in each process and worker thread, which
// under an instruction emulator costs minutes per file. A file that outlives --file-timeout is
// killed and fails, so a guest or host that hangs gives a verdict, not a stalled lane.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
let fileTimeout = 600;
if (args[0] === '--file-timeout') {
  fileTimeout = Number(args[1]);
  args.splice(0, 2);
}

/** The `# { total: 9, pass: 5, skip: 4 }` line a tap test file ends with. */
function counts(output) {
  const m = output.match(/^# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?(?:, skip: (\d+))?(?:, todo: (\d+))?/m);
  if (!m) return null;
  return { total: +m[1], pass: +(m[2] ?? 0), fail: +(m[3] ?? 0), skip: +(m[4] ?? 0), todo: +(m[5] ?? 0) };
}

function runFile(file) {
  const compiled = join(root, 'build', 'tests', relative(root, resolve(root, file)).replace(/\.ts$/, '.js'));
  return new Promise((done) => {
    if (!existsSync(compiled)) {
      done({ ok: false, reason: `${compiled} does not exist (npm run build:tests)`, output: '', ms: 0 });
      return;
    }
    const started = Date.now();
    // TAP_TIMEOUT: without tap's runner (and its config) a file's own limit is tap's default, 30 s.
    const env = { ...process.env, TAP_TIMEOUT: String(fileTimeout) };
    const child = spawn(process.execPath, ['--enable-source-maps', compiled], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    const emit = (chunk) => {
      const text = chunk.toString();
      output += text;
      process.stdout.write(text.replace(/^(?=.)/gm, '    '));
    };
    child.stdout.on('data', emit);
    child.stderr.on('data', emit);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }, fileTimeout * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - started;
      const c = counts(output);
      const reason = timedOut ? `timed out after ${fileTimeout} s`
        : code !== 0 ? `exit ${code ?? signal}`
        : !c ? 'no closing count: the file ended early' : c.fail > 0 ? `${c.fail} failed` : '';
      done({ ok: reason === '', reason, counts: c, ms });
    });
  });
}

console.log('TAP version 14');
console.log(`1..${args.length}`);
const totals = { pass: 0, fail: 0, skip: 0 };
const failed = [];
for (const [i, file] of args.entries()) {
  console.log(`# Subtest: ${file}`);
  const r = await runFile(file);
  const c = r.counts ?? { pass: 0, fail: 0, skip: 0, todo: 0 };
  totals.pass += c.pass;
  totals.skip += c.skip;
  totals.fail += c.fail + (r.ok || c.fail > 0 ? 0 : 1);
  if (!r.ok) failed.push(`${file}: ${r.reason}`);
  console.log(`${r.ok ? 'ok' : 'not ok'} ${i + 1} - ${file}${r.ok ? '' : ` # ${r.reason}`} # time=${r.ms}ms`);
  console.log(`# lane: ${file}: ${(r.ms / 1000).toFixed(1)} s, ${c.pass} passed, ${c.fail} failed, ${c.skip} skipped`);
}
if (failed.length) console.log(`# lane: failed:\n${failed.map((f) => `#   ${f}`).join('\n')}`);
console.log(`# { total: ${totals.pass + totals.fail + totals.skip}, pass: ${totals.pass}, fail: ${totals.fail}, skip: ${totals.skip} }`);
process.exitCode = failed.length ? 1 : 0;
