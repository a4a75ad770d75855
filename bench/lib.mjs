// Helpers shared by the benchmarks (core.mjs, requests.mjs): medians, timing
// guest loops with their startup cancelled out, the bare-C KVM exit floor, and
// the markdown table / JSON output.
import { spawnSync } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Machine } from '../dist/index.js';
import { StdioFile } from '../dist/syscalls/open-files/host-file.js';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const quick = process.argv.includes('--quick');

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
export const now = () => performance.now();

let devnull = -1;
/** stdio for guests whose output is not wanted. */
export const quiet = () => {
  if (devnull < 0) devnull = openSync('/dev/null', 'w');
  return [new StdioFile(0), new StdioFile(devnull), new StdioFile(devnull)];
};

/** Wall time of one in-process create + run + close, in ms. */
export function runInProcess(bin, args, options = {}) {
  const t0 = now();
  const m = Machine.fromFile(bin, { args, stdio: quiet(), ...options });
  const r = m.run();
  m.close();
  const ms = now() - t0;
  if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} exited with ${r.status}: ${r.message ?? ''}`);
  return ms;
}

/**
 * Per-iteration cost of a guest loop, startup cancelled out: time(N2) - time(N1)
 * over N2 - N1 iterations, median of several rounds.
 */
export function perIteration(bin, n1, n2, rounds, options = {}) {
  const samples = [];
  for (let i = 0; i < rounds; i++) {
    const a = runInProcess(bin, [String(n1)], options);
    const b = runInProcess(bin, [String(n2)], options);
    samples.push(((b - a) * 1000) / (n2 - n1));
  }
  return median(samples);
}

/** Compiles a one-file C program into bench/out/NAME (gcc -O2, plus `flags`); returns its path. */
export function buildC(source, name, flags = []) {
  const out = join(root, 'bench/out', name);
  mkdirSync(dirname(out), { recursive: true });
  const cc = spawnSync('gcc', ['-O2', ...flags, '-o', out, source], { stdio: 'inherit' });
  if (cc.status !== 0) throw new Error(`cannot build ${source}`);
  return out;
}

let floorPath = null;
/** bench/kvm-floor.c, built once per run: `kvm-floor N` prints µs per bare guest `out` exit. */
export function floorBinary() {
  floorPath ??= buildC(join(root, 'bench/kvm-floor.c'), 'kvm-floor');
  return floorPath;
}

/**
 * The bare KVM exit floor in µs: a C program that times a guest `out` loop
 * with no tskvm in the way. Median of `rounds` runs of `n` exits.
 */
export function bareFloorUs(n, rounds) {
  return median(Array.from({ length: rounds }, () => Number(spawnSync(floorBinary(), [String(n)], { encoding: 'utf8' }).stdout)));
}

export const fmt = (v) => (v === null ? '—' : v < 10 ? v.toFixed(2) : v.toFixed(1));

export function printTable(header, lines) {
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => '---').join('|')}|`);
  for (const cells of lines) console.log(`| ${cells.join(' | ')} |`);
}

/** Writes `data` as JSON to the file named after `--json`, if given. */
export function writeJsonOption(data) {
  const at = process.argv.indexOf('--json');
  if (at < 0) return;
  const file = process.argv[at + 1];
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(data, null, 2));
}
