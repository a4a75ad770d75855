/**
 * What `tskvm bench` prints: the machine, a summary table (p50 per mode and its ratio to the native
 * loop), the full table (p50, p99, requests/s, ratio, per case and mode), and the targets of the
 * benchmark issue checked against this run's numbers. Markdown, so it can go in a README as is.
 */
import { MODE_LABELS, MODES } from './cases.js';
import type { BenchResult, CaseResult, ModeResult } from './harness.js';

export interface Target {
  what: string;
  /** null: this run has no case the target is about. */
  met: boolean | null;
  detail: string;
}

const SUMMARY_MODES = MODES.filter((m) => m !== 'reference');

export function time(us: number): string {
  if (!Number.isFinite(us)) return '—';
  if (us < 1000) return `${us < 10 ? us.toFixed(2) : us < 100 ? us.toFixed(1) : us.toFixed(0)} µs`;
  return `${us < 10_000 ? (us / 1000).toFixed(2) : (us / 1000).toFixed(1)} ms`;
}

const ratio = (r: ModeResult | undefined): string => (r?.ratio == null ? '' : ` (×${r.ratio < 10 ? r.ratio.toFixed(2) : r.ratio.toFixed(0)})`);
const mode = (c: CaseResult, m: string): ModeResult | undefined => c.modes.find((x) => x.mode === m);
const cell = (r: ModeResult | undefined): string => (!r ? '' : r.error ? '✘ failed' : `${time(r.p50_us)}${ratio(r)}`);

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function machineLine(r: BenchResult): string {
  const m = r.machine;
  return `${m.cpu}, ${m.cores} cores, ${m.memory_gib} GiB; Linux ${m.kernel}; Node ${m.node}; KVM: ${m.kvm}`;
}

/** p50 per mode with its ratio to the native loop; a reference process in its own column when any case has one. */
function summaryTable(r: BenchResult): string {
  const hasReference = r.cases.some((c) => mode(c, 'reference'));
  const header = ['example', ...SUMMARY_MODES.map((m) => MODE_LABELS[m]), ...(hasReference ? ['reference process'] : [])];
  const rows = r.cases.map((c) => {
    const ref = mode(c, 'reference');
    return [c.name, ...SUMMARY_MODES.map((m) => cell(mode(c, m))), ...(hasReference ? [ref ? `${cell(ref)} ${ref.label}` : ''] : [])];
  });
  return table(header, rows);
}

function fullTable(r: BenchResult): string {
  const rows: string[][] = [];
  for (const c of r.cases) {
    for (const m of c.modes) {
      rows.push([
        c.name, m.label ?? MODE_LABELS[m.mode], String(m.requests), time(m.p50_us), time(m.p99_us),
        Number.isFinite(m.rps) ? m.rps.toFixed(m.rps < 100 ? 1 : 0) : '—', m.ratio == null ? '—' : `×${m.ratio.toFixed(2)}`,
        m.vm_p50_us === undefined ? '' : time(m.vm_p50_us), m.error ? `✘ ${m.error}` : `same ${m.check}`,
      ]);
    }
  }
  return table(['example', 'mode', 'requests', 'p50', 'p99', 'req/s', 'p50 / native loop', 'in VM p50', 'answer'], rows);
}

/**
 * The targets: work of 1 ms or more natively costs at most 1.15× in an ephemeral fork; an
 * ephemeral request costs at most half a native process per request, for every example; and the Lua
 * case beats spawning the reference interpreter.
 */
export function targets(r: BenchResult): Target[] {
  const out: Target[] = [];
  const heavy = r.cases.filter((c) => mode(c, 'native-loop')!.p50_us >= 1000 && mode(c, 'tskvm-ephemeral'));
  const over = heavy.filter((c) => !(mode(c, 'tskvm-ephemeral')!.ratio! <= 1.15));
  out.push({
    what: 'work of ≥ 1 ms natively: tskvm ephemeral ≤ 1.15× the native loop',
    met: heavy.length ? over.length === 0 : null,
    detail: heavy.map((c) => `${c.name} ×${mode(c, 'tskvm-ephemeral')!.ratio?.toFixed(2) ?? '✘'}`).join(', '),
  });
  const both = r.cases.filter((c) => mode(c, 'native-spawn') && mode(c, 'tskvm-ephemeral'));
  const perSpawn = (c: CaseResult): number => mode(c, 'tskvm-ephemeral')!.p50_us / mode(c, 'native-spawn')!.p50_us;
  out.push({
    what: 'every example: tskvm ephemeral ≤ 0.5× a native process per request',
    met: both.length ? both.every((c) => perSpawn(c) <= 0.5) : null,
    detail: both.map((c) => `${c.name} ×${Number.isFinite(perSpawn(c)) ? perSpawn(c).toFixed(2) : '✘'}`).join(', '),
  });
  for (const c of r.cases.filter((x) => mode(x, 'reference') && mode(x, 'tskvm-ephemeral'))) {
    const ref = mode(c, 'reference')!;
    const eph = mode(c, 'tskvm-ephemeral')!;
    const vs = eph.p50_us / ref.p50_us;
    out.push({
      what: `${c.name}: tskvm ephemeral faster than a ${ref.label}`,
      met: vs < 1,
      detail: `${time(eph.p50_us)} against ${time(ref.p50_us)} (×${Number.isFinite(vs) ? vs.toFixed(2) : '✘'})`,
    });
  }
  return out;
}

export function failures(r: BenchResult): string[] {
  return r.cases.flatMap((c) => c.modes.filter((m) => m.error).map((m) => `${c.name}, ${m.label ?? MODE_LABELS[m.mode]}: ${m.error}`));
}

export function textReport(r: BenchResult): string {
  const lines = [
    `tskvm bench, ${r.date}`,
    `machine: ${machineLine(r)}`,
    '',
    'p50 per request, one request at a time (× the native loop):',
    '',
    summaryTable(r),
    '',
    fullTable(r),
    '',
    'targets:',
    ...targets(r).map((t) => `  ${t.met === null ? '–' : t.met ? '✔' : '✘'} ${t.what}: ${t.detail || 'no case'}`),
  ];
  const failed = failures(r);
  if (failed.length) lines.push('', 'failed:', ...failed.map((f) => `  ✘ ${f}`));
  return lines.join('\n') + '\n';
}
