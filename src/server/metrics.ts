/**
 * The server's statistics: the VMOD's global counters and tskvm's own (busy_refusals), kept here across program reloads, and
 * each program's Program.stats(), as JSON (GET /__tskvm/stats) and as Prometheus text (GET /metrics).
 *
 * Prometheus names: `tskvm_program_<field>_total{program="…"}` for each counter of a program's
 * totals (fields ending in `_time` are seconds: `…_seconds_total`), gauges for what is not a count
 * of events (queued, active, dirty_pages, boot time, whether it is loaded), and `tskvm_<counter>_total`
 * for the global counters. A program's counters restart from 0 when it is reloaded, which Prometheus
 * reads as a counter reset.
 */
import type { ProgramResponse, ProgramStats } from '../runtime/program.js';
import type { ProgramSlot, SlotState } from './program-slot.js';

export class GlobalCounters {
  program_notfound = 0;
  program_exception = 0;
  program_timeout = 0;
  program_status_4xx = 0;
  program_status_5xx = 0;
  /** Requests refused with 503 because the server held max_buffered_bytes of bodies already. */
  busy_refusals = 0;
  /** Seconds in request VMs, every program. */
  cpu_time = 0;
  /** Seconds programs waited in sys_fetch (outbound requests and self-requests). */
  fetch_time = 0;
  self_requests = 0;
  self_requests_failed = 0;

  /** Counts one answer of a program (its own, on_error's or a failure's). */
  record(res: ProgramResponse): void {
    this.cpu_time += res.timeMs / 1000;
    if (res.status >= 400 && res.status < 500) this.program_status_4xx++;
    if (res.status >= 500) this.program_status_5xx++;
    if (res.error?.code === 'TSKVM_ERR_GUEST_TIMEOUT') this.program_timeout++;
    else if (res.error) this.program_exception++;
  }
}

export interface ProgramReport {
  state: SlotState;
  group: string;
  /** New programs installed while serving (admin update, POST with X-LiveUpdate); kept across reloads. */
  live_updates: number;
  /** Set while a failed start waits for its retry. */
  error?: { code: string; message: string; retry_in: number };
  stats: ProgramStats | null;
}

export interface StatsReport {
  global: GlobalCounters;
  programs: Record<string, ProgramReport>;
}

export function statsReport(counters: GlobalCounters, slots: Iterable<ProgramSlot>): StatsReport {
  const programs: Record<string, ProgramReport> = {};
  for (const slot of slots) {
    const report: ProgramReport = { state: slot.state, group: slot.entry.group, live_updates: slot.updates, stats: slot.current?.stats() ?? null };
    const failure = slot.lastFailure;
    if (failure) report.error = { code: failure.code, message: failure.message, retry_in: failure.retryIn };
    programs[slot.entry.name] = report;
  }
  return { global: counters, programs };
}

const GAUGES = new Set(['dirty_pages', 'vm_bank_current', 'vm_address_space', 'vm_main_memory', 'vm_bank_capacity', 'vm_bank_highest']);

export function prometheusText(report: StatsReport): string {
  const families = new Map<string, { type: 'counter' | 'gauge'; samples: string[] }>();
  const sample = (name: string, type: 'counter' | 'gauge', labels: string, value: number): void => {
    let family = families.get(name);
    if (!family) families.set(name, (family = { type, samples: [] }));
    family.samples.push(`${name}${labels} ${value}`);
  };
  const counterName = (field: string): string => (field.endsWith('_time') ? `${field.slice(0, -5)}_seconds_total` : `${field}_total`);

  for (const [field, value] of Object.entries(report.global)) sample(`tskvm_${counterName(field)}`, 'counter', '', value as number);
  for (const [name, p] of Object.entries(report.programs)) {
    const labels = `{program="${escapeLabel(name)}"}`;
    sample('tskvm_program_loaded', 'gauge', labels, p.stats ? 1 : 0);
    sample('tskvm_program_live_updates_total', 'counter', labels, p.live_updates);
    if (!p.stats) continue;
    sample('tskvm_program_boot_time_seconds', 'gauge', labels, p.stats.program.boot_time);
    sample('tskvm_program_queued', 'gauge', labels, p.stats.queued);
    sample('tskvm_program_active', 'gauge', labels, p.stats.active);
    for (const [field, value] of Object.entries(p.stats.totals)) {
      if (GAUGES.has(field)) sample(`tskvm_program_${field}`, 'gauge', labels, value);
      else sample(`tskvm_program_${counterName(field)}`, 'counter', labels, value);
    }
  }
  let text = '';
  for (const [name, { type, samples }] of families) text += `# TYPE ${name} ${type}\n${samples.join('\n')}\n`;
  return text;
}

function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}
