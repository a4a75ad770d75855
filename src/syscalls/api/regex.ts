/**
 * The regex hypercalls (0x10030–0x10035), the VMOD's way (docs/GUEST_ABI.md, "Regular expressions"):
 *
 *   int  sys_regex_compile(const char *pattern, size_t len)          → a handle, 0–63
 *   void sys_regex_free(int rgx)
 *   int  sys_regex_match(int rgx, const char *subject, size_t len)   → > 0 matched, -1 not
 *   long sys_regex_subst(int rgx, const char *buf, const char *subst, char *dst, size_t dstlen, int flags)
 *   int  sys_regex_copyto(int rgx, int srchp, int dsthp)              → fields copied
 *
 * The VMOD hands these to PCRE2 in the host, where a pattern like `(a*)*b` backtracks for as long as
 * the guest likes; here they run on regex-engine.ts, which cannot backtrack, with a step budget per
 * call. Results are the VMOD's (PCRE2's numbers for a match: -1 no match, -47 the budget ran out);
 * what the VMOD would fail the request for (a bad pattern, handle or pointer) is a negative errno.
 *
 * The handles are process state (process-state.ts, "regexes"): a request VM starts with those its
 * program compiled in main(), and its reset puts that table back, so what a request compiles or frees
 * never reaches the next request of an ephemeral program.
 */
import { E } from '../../host/errno.js';
import type { Process } from '../process.js';
import { HEADER_LIMITS } from './guest-api.js';
import { compileRegex, execRegex, matchCount, RegexBudgetError, RegexSyntaxError, REGEX_ENGINE_LIMITS, substituteRegex, type CompiledRegex, type RegexBudget } from './regex-engine.js';

export const REGEX_LIMITS = {
  /** Handles per VM (the VMOD's REGEX_MAX). */
  regexes: 64,
  /** Bytes of a pattern (the VMOD reads its length as 16 bits). */
  patternBytes: 65_535,
  /** Bytes of a subject given with its length (sys_regex_match). */
  inputBytes: 16 << 20,
  /** Bytes of sys_regex_subst's NUL-terminated text and replacement, each. */
  stringBytes: 1 << 20,
  /** Bytes sys_regex_subst's result may have. */
  outputBytes: 1 << 20,
  /**
   * Instructions and byte sets of a VM's regexes together (-ENOMEM past them), so that 64 handles of
   * the largest programs cannot take the host's memory: 1.2 MB of instructions and 1 MiB of sets.
   */
  instructions: 100_000,
  sets: 4_096,
} as const;

/** pcre2_match's answers that sys_regex_match passes on, as the VMOD does. */
export const PCRE2_ERROR_NOMATCH = -1;
export const PCRE2_ERROR_MATCHLIMIT = -47;
/** sys_regex_subst's flag: every match, not only the first. */
const SUBST_ALL = 0x1;

interface Entry {
  /** latin1: a pattern's bytes, as the frozen table keeps them. */
  pattern: string;
  regex: CompiledRegex;
}

/** The table as a fork saved it: entries are immutable, so a copy of the array is a snapshot. */
export type RegexSnapshot = ReadonlyArray<Entry | null>;
/** The table as the frozen program records it (plain data): each handle's pattern, or null for a free one. */
export type FrozenRegexes = Array<string | null>;

/** A VM's regex handles: an index into this table. */
export class RegexTable {
  private slots: Array<Entry | null> = [];

  /**
   * A handle for `pattern`: the one it already has, else a new one, appended while the table has
   * room and then in the first free slot (the VMOD's order). Throws RegexSyntaxError; -EMFILE when
   * full, -ENOMEM when the table's programs would be too large together.
   */
  compile(pattern: string): number {
    const known = this.slots.findIndex((e) => e?.pattern === pattern);
    if (known >= 0) return known;
    const free = this.slots.length < REGEX_LIMITS.regexes ? this.slots.length : this.slots.indexOf(null);
    if (free < 0) return -E.EMFILE;
    const regex = compileRegex(Buffer.from(pattern, 'latin1'));
    let instructions = regex.size, sets = regex.sets.length / 256;
    for (const e of this.slots) {
      instructions += e?.regex.size ?? 0;
      sets += (e?.regex.sets.length ?? 0) / 256;
    }
    if (instructions > REGEX_LIMITS.instructions || sets > REGEX_LIMITS.sets) return -E.ENOMEM;
    this.slots[free] = { pattern, regex };
    return free;
  }

  get(handle: number): CompiledRegex | null {
    return this.slots[handle]?.regex ?? null;
  }

  /** False when the handle names no regex (never one, or freed already). */
  free(handle: number): boolean {
    if (!this.slots[handle]) return false;
    this.slots[handle] = null;
    return true;
  }

  snapshot(): RegexSnapshot {
    return this.slots.slice();
  }

  restore(saved: RegexSnapshot): void {
    this.slots = saved.slice();
  }

  freeze(): FrozenRegexes {
    return this.slots.map((e) => e?.pattern ?? null);
  }

  /** The frozen program's table, compiled again in this thread (each compiled once already). */
  thaw(frozen: FrozenRegexes): void {
    this.slots = frozen.map((pattern) => (pattern === null ? null : { pattern, regex: compileRegex(Buffer.from(pattern, 'latin1')) }));
  }
}

const bytes = (p: Process, at: number, len: number): Uint8Array => (len === 0 ? new Uint8Array(0) : p.mem.read(at, len));
const newBudget = (): RegexBudget => ({ steps: REGEX_ENGINE_LIMITS.steps });

/** Runs `run`, or answers PCRE2_ERROR_MATCHLIMIT when its budget ran out. */
function bounded(run: () => number): number {
  try {
    return run();
  } catch (e) {
    if (e instanceof RegexBudgetError) return PCRE2_ERROR_MATCHLIMIT;
    throw e;
  }
}

/** sys_regex_compile(pattern, len): the pattern ends at len or at a NUL before it (the VMOD compiles it as a C string). */
export function regexCompile(p: Process, a: Float64Array): number {
  const [at, len] = [a[0]!, a[1]!];
  if (len < 0 || len > REGEX_LIMITS.patternBytes) return -E.E2BIG;
  const raw = bytes(p, at, len);
  const nul = raw.indexOf(0);
  const pattern = Buffer.from(nul < 0 ? raw : raw.subarray(0, nul)).toString('latin1');
  try {
    return p.regexes.compile(pattern);
  } catch (e) {
    if (!(e instanceof RegexSyntaxError)) throw e;
    p.warn(`sys_regex_compile: ${JSON.stringify(pattern.slice(0, 200))}: ${e.message}`);
    return e.kind === 'too-large' ? -E.E2BIG : -E.EINVAL;
  }
}

export function regexFree(p: Process, a: Float64Array): number {
  return p.regexes.free(a[0]! | 0) ? 0 : -E.EBADF;
}

/** sys_regex_match(rgx, subject, len): pcre2_match's answer, 1 + the highest group that took part, or -1. */
export function regexMatch(p: Process, a: Float64Array): number {
  const regex = p.regexes.get(a[0]! | 0);
  const len = a[2]!;
  if (!regex) return -E.EBADF;
  if (len < 0 || len > REGEX_LIMITS.inputBytes) return -E.E2BIG;
  const subject = bytes(p, a[1]!, len);
  return bounded(() => {
    const slots = execRegex(regex, subject, { budget: newBudget() });
    return slots ? matchCount(slots) : PCRE2_ERROR_NOMATCH;
  });
}

/**
 * sys_regex_subst(rgx, buf, subst, dst, dstlen, flags): Varnish's regsub of the NUL-terminated buf
 * (the text itself when nothing matches), copied into dst with its NUL as far as dstlen goes; returns
 * the bytes copied, min(dstlen, length + 1), as the VMOD does (so a result cut at dstlen has no NUL).
 */
export function regexSubst(p: Process, a: Float64Array): number {
  const regex = p.regexes.get(a[0]! | 0);
  const [dst, dstLen, flags] = [a[3]!, a[4]!, a[5]!];
  if (!regex) return -E.EBADF;
  if (dstLen < 0) return -E.EINVAL;
  const text = p.mem.cBytes(a[1]!, REGEX_LIMITS.stringBytes);
  const replacement = p.mem.cBytes(a[2]!, REGEX_LIMITS.stringBytes);
  if (!text || !replacement) return -E.E2BIG;
  const room = Math.min(dstLen, REGEX_LIMITS.outputBytes);
  return bounded(() => {
    const { output, cut } = substituteRegex(regex, text, replacement, (flags & SUBST_ALL) !== 0, room, newBudget());
    if (cut && dstLen > REGEX_LIMITS.outputBytes) return -E.E2BIG;
    const n = Math.min(dstLen, output.length + 1);
    if (n > 0) {
      const into = p.mem.write(dst, n);
      into.set(output.subarray(0, n));
      if (n > output.length) into[output.length] = 0;
    }
    return n;
  });
}

/**
 * sys_regex_copyto(rgx, srchp, dsthp): appends every field of one header list (0 the request's, 1 the
 * response's) that matches to the other; returns how many. The fields are counted before any is
 * added, so copying a list onto itself ends; a full list takes no more, and those are not counted
 * (the VMOD's http_header_append).
 */
export function regexCopyto(p: Process, a: Float64Array): number {
  const regex = p.regexes.get(a[0]! | 0);
  const from = p.api.headerList(a[1]! | 0);
  const to = p.api.headerList(a[2]! | 0);
  if (!regex) return -E.EBADF;
  if (!from || !to) return -E.EINVAL;
  const budget = newBudget();
  return bounded(() => {
    let copied = 0;
    for (const field of from.slice()) {
      if (!execRegex(regex, Buffer.from(field, 'latin1'), { test: true, budget })) continue;
      if (to.length >= HEADER_LIMITS.count) continue;
      to.push(field);
      copied++;
    }
    return copied;
  });
}
