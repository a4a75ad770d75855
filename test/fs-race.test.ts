// The file sandbox against a concurrent swap (test/guests/requests/req-fsrace.c). Two forks of one
// program run at once on two worker threads and share a writable root: one swaps the directory d for
// a symlink out of the root and back, again and again, while the other makes every path-taking syscall
// through d/. Nothing outside the root may change, and no read may see what lies there: the sentinel
// directory beside the root (and the root's parent) is compared with a snapshot after every pair.
//
// TSKVM_FSRACE_ATTEMPTS scales the attempts (path syscalls) down where every exit is slow.
import t from 'tap';
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Program } from '../src/index.js';
import { guestPath, kvmAvailable } from './helpers/differential.js';

const ATTEMPTS = Number(process.env.TSKVM_FSRACE_ATTEMPTS ?? 100_000);
const PAIRS = 4;
/** Path syscalls in one round of /attack (req-fsrace.c), at least. */
const PER_ROUND = 20;

/** Everything about `dir` and below that a write could change, `skip` left out. */
function snapshot(dir: string, skip: string): string {
  const lines: string[] = [];
  const walk = (p: string): void => {
    const st = fs.lstatSync(p, { bigint: true });
    const content = st.isFile() ? createHash('sha256').update(fs.readFileSync(p)).digest('hex') : st.isSymbolicLink() ? fs.readlinkSync(p) : '';
    lines.push(`${p} ${st.mode.toString(8)} ${st.size} ${st.nlink} ${st.ino} ${st.mtimeNs} ${st.ctimeNs} ${content}`);
    if (st.isDirectory()) for (const name of fs.readdirSync(p).sort()) if (join(p, name) !== skip) walk(join(p, name));
  };
  walk(dir);
  return lines.join('\n');
}

t.test(`${ATTEMPTS} path syscalls raced against a directory swapped for a symlink out of the root: no escape`, async (t) => {
  if (!kvmAvailable(t)) return;
  const top = fs.realpathSync(fs.mkdtempSync(join(tmpdir(), 'tskvm-race-')));
  t.teardown(() => fs.rmSync(top, { recursive: true, force: true }));
  const root = join(top, 'root');
  const sentinel = join(top, 'sentinel');
  // The sentinel, again after an escape (anything the escape left beside the root goes too).
  const plant = (): void => {
    for (const name of fs.readdirSync(top)) if (name !== 'root') fs.rmSync(join(top, name), { recursive: true, force: true });
    fs.mkdirSync(sentinel, { mode: 0o755 });
    fs.writeFileSync(join(sentinel, 'victim'), 's'.repeat(777), { mode: 0o644 });
    fs.writeFileSync(join(sentinel, 'secret'), 'sentinel secret', { mode: 0o644 });
  };
  plant();
  fs.mkdirSync(join(root, 'd'), { recursive: true });
  fs.writeFileSync(join(root, 'd', 'victim'), 'root');
  fs.writeFileSync(join(root, 'd', 'secret'), 'root secret');
  fs.writeFileSync(join(root, 'file'), 'file');
  let before = snapshot(top, root);

  const program = await Program.load(guestPath('req-fsrace'), {
    concurrency: 2, sharedMemory: 2, maxMemory: 64, maxRequestTime: 300,
    allowedPaths: [{ real: root, writable: true }], currentWorkingDirectory: root, onLog: () => {},
  });
  const rounds = Math.ceil(ATTEMPTS / PER_ROUND / PAIRS);
  const targets = [sentinel, '../sentinel', '..'].join(':');
  let attempts = 0;
  let escapes = 0;
  let leaks = 0;
  const started = performance.now();
  try {
    for (let g = 1; g <= PAIRS; g++) {
      const [swapper, attacker] = await Promise.all([
        program.request({ url: `/swap/${g}`, arg: targets }),
        program.request({ url: `/attack/${g}`, arg: String(rounds) }),
      ]);
      const swaps = /^swaps=(\d+)$/.exec(swapper.body.toString());
      const attack = /^attempts=(\d+) leaks=(\d+) raced=1$/.exec(attacker.body.toString());
      if (!swaps || !attack) {
        t.fail(`pair ${g}: swapper "${swapper.body}", attacker "${attacker.body}"`);
        break;
      }
      attempts += Number(attack[1]);
      leaks += Number(attack[2]);
      t.ok(Number(swaps[1]) > 0, `pair ${g}: ${swaps[1]} swaps ran meanwhile`);
      const after = snapshot(top, root);
      if (after !== before) {
        const changed = after.split('\n').filter((line) => !before.includes(line));
        if (escapes === 0) t.comment(`pair ${g} changed outside the root:\n${changed.slice(0, 5).join('\n')}`);
        escapes++;
        plant();
        before = snapshot(top, root);
      }
    }
  } finally {
    await program.close();
  }
  const seconds = (performance.now() - started) / 1000;
  t.comment(`${attempts} attempts in ${seconds.toFixed(1)} s: ${escapes} pairs changed the host outside the root, ${leaks} reads saw it`);
  t.ok(attempts >= ATTEMPTS, `${attempts} attempts`);
  t.equal(escapes, 0, 'nothing outside the root changed');
  t.equal(leaks, 0, 'no read saw anything outside the root');
  t.ok(fs.lstatSync(join(root, 'd')).isDirectory(), 'the swapped directory is back');
});
