/**
 * The SVG chart of a `tskvm bench` run: for each example a group of horizontal bars, one per mode,
 * the length being the p50 time per request on a logarithmic axis (the examples span 0.1 µs to tens
 * of milliseconds), labelled with the time and its ratio to the native loop. Plain SVG 1.1 with no
 * script or external font, so that GitHub renders it in a README.
 */
import { MODE_LABELS, MODES, type Mode } from './cases.js';
import type { BenchResult } from './harness.js';
import { machineLine, time } from './report.js';

const COLORS: Record<Mode, string> = {
  'native-loop': '#4d4d4d',
  'native-spawn': '#b0b0b0',
  reference: '#d9a441',
  'tskvm-ephemeral': '#2f6fbf',
  'tskvm-persistent': '#7fa8dc',
  'tskvm-http': '#3a9a6a',
};

const BAR = 12;
const GROUP_GAP = 14;
const LABEL_W = 150;
const PLOT_W = 520;
const VALUE_W = 130;
const TOP = 58;

const escape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function chartSvg(r: BenchResult): string {
  const times = r.cases.flatMap((c) => c.modes.filter((m) => !m.error).map((m) => m.p50_us));
  const lo = Math.floor(Math.log10(Math.max(0.01, Math.min(...times, 1))));
  const hi = Math.ceil(Math.log10(Math.max(...times, 10)));
  const x = (us: number): number => LABEL_W + ((Math.log10(Math.max(us, 10 ** lo)) - lo) / (hi - lo)) * PLOT_W;
  const used = MODES.filter((m) => r.cases.some((c) => c.modes.some((x) => x.mode === m)));

  const out: string[] = [];
  let y = TOP;
  for (const c of r.cases) {
    const groupTop = y;
    for (const m of c.modes) {
      const label = m.label ?? MODE_LABELS[m.mode];
      if (m.error) {
        out.push(`<text x="${LABEL_W + 4}" y="${y + BAR - 2}" class="v">${escape(label)}: failed</text>`);
      } else {
        const w = Math.max(1, x(m.p50_us) - LABEL_W);
        const ratio = m.ratio == null ? '' : ` ×${m.ratio < 10 ? m.ratio.toFixed(2) : m.ratio.toFixed(0)}`;
        out.push(`<rect class="bar" x="${LABEL_W}" y="${y}" width="${w.toFixed(1)}" height="${BAR - 2}" fill="${COLORS[m.mode]}"><title>${escape(`${c.name}, ${label}: p50 ${time(m.p50_us)}, p99 ${time(m.p99_us)}`)}</title></rect>`);
        out.push(`<text x="${(LABEL_W + w + 4).toFixed(1)}" y="${y + BAR - 3}" class="v">${escape(time(m.p50_us) + ratio)}</text>`);
      }
      y += BAR;
    }
    out.push(`<text x="${LABEL_W - 8}" y="${((groupTop + y) / 2 + 4).toFixed(1)}" class="l" text-anchor="end">${escape(c.name)}</text>`);
    y += GROUP_GAP;
  }
  const bottom = y;

  const axis: string[] = [];
  const units = ['µs', 'ms', 's'];
  for (let d = lo; d <= hi; d++) {
    const us = 10 ** d;
    const label = d < 0 ? `${us} µs` : `${10 ** (d % 3)} ${units[Math.floor(d / 3)]}`;
    axis.push(`<line x1="${x(us).toFixed(1)}" y1="${TOP - 6}" x2="${x(us).toFixed(1)}" y2="${bottom - GROUP_GAP + 2}" class="g"/>`);
    axis.push(`<text x="${x(us).toFixed(1)}" y="${TOP - 10}" class="a" text-anchor="middle">${label}</text>`);
  }
  const legend = used.map((m, i) => {
    const lx = LABEL_W + (i % 3) * 180;
    const ly = bottom + 6 + Math.floor(i / 3) * 16;
    return `<rect x="${lx}" y="${ly}" width="10" height="10" fill="${COLORS[m]}"/><text x="${lx + 14}" y="${ly + 9}" class="v">${escape(MODE_LABELS[m])}</text>`;
  });
  const height = bottom + 10 + Math.ceil(used.length / 3) * 16 + 18;
  const width = LABEL_W + PLOT_W + VALUE_W;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    '<style>.l{font-size:12px;fill:#222}.v{font-size:10px;fill:#333}.a{font-size:10px;fill:#666}.t{font-size:13px;font-weight:bold;fill:#222}.s{font-size:10px;fill:#666}.g{stroke:#e3e3e3;stroke-width:1}</style>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="8" y="16" class="t">tskvm bench: p50 time per request (log scale; × the native loop)</text>`,
    `<text x="8" y="30" class="s">${escape(machineLine(r))}</text>`,
    ...axis,
    ...out,
    ...legend,
    `<text x="8" y="${height - 6}" class="s">${escape(`${r.date.slice(0, 10)}, one request at a time; the native loop calls the same C handler in-process`)}</text>`,
    '</svg>',
  ].join('\n') + '\n';
}
