/**
 * The process's view of its address space: which ranges are mapped (ELF image,
 * stack, mmap regions), where the program break is, and how memory is handed
 * out. Bookkeeping — the page tables map every guest address from the start
 * (docs/ARCHITECTURE.md, "Memory and mappings"); only whether a file mapping may be
 * executed reaches them, through mm.ts — plus one side effect: ranges the guest
 * gives back are released to the host and read as zero, as fresh mappings must.
 *
 *   userStart   image        brk→                 ←mmap (top-down)   stack   end
 *   |-----------[ELF]--[heap.....]     ........   [m3][m2][m1] guard [stack]|
 */
import { E } from '../host/errno.js';
import { PAGE, pageAlignUp } from '../paging/layout.js';

export interface Mapping {
  start: number;
  end: number;
  prot: number;
  /** What created it, for /proc/self/maps-style dumps and error messages. */
  label: string;
}

export interface AddressSpaceOptions {
  userStart: number;
  end: number;
  imageStart: number;
  brkStart: number;
  /** The dynamic loader's range, a second image, for a dynamically linked program (interpreter.ts). */
  loader?: [number, number];
  /**
   * PROT_EXEC of file mappings is what makes their pages executable (mm.ts, syncExecutable): true
   * where the CPU has NX and not every page is executable already (`executable_heap`).
   */
  fileExec?: boolean;
  stackTop: number;
  stackSize: number;
  /** Unmapped bytes below the stack (never handed out). */
  stackGuard: number;
  /**
   * Ranges above `end` that are memory too (remaps, at fixed high addresses): the program may place
   * mappings there by address (a hint or MAP_FIXED); nothing is placed there otherwise.
   */
  remaps?: Array<[number, number]>;
  /** Return [addr, addr+len) to the host; afterwards it reads as zero. */
  release: (addr: number, len: number) => void;
  /**
   * Memory for [start, end), about to be mapped: in a sparse address space, the pieces it reaches get
   * their memory slots (memory-slots.ts). False when the program's pieces are used up: ENOMEM.
   */
  back?: (start: number, end: number) => boolean;
}

export interface AddressSpaceSnapshot {
  mappings: Mapping[];
  brk: number;
}

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;

export class AddressSpace {
  readonly userStart: number;
  readonly end: number;
  readonly brkStart: number;
  readonly stackTop: number;
  readonly stackBottom: number;
  readonly fileExec: boolean;
  /**
   * Most bytes the heap and the mappings (guard excluded) may cover together:
   * a request's memory budget (max_request_memory beyond the frozen program).
   * Infinity for a process without one; the address space is then the limit.
   */
  limit = Infinity;
  /** Set when a request for memory was refused because of `limit` (the failure is then "out of memory"). */
  limitHit = false;
  private brkValue: number;
  /** Sorted, non-overlapping. */
  private mappings: Mapping[] = [];
  private readonly release: (addr: number, len: number) => void;
  private readonly back: (start: number, end: number) => boolean;
  private readonly remaps: ReadonlyArray<[number, number]>;

  constructor(o: AddressSpaceOptions) {
    this.userStart = o.userStart;
    this.end = o.end;
    this.brkStart = o.brkStart;
    this.brkValue = o.brkStart;
    this.stackTop = o.stackTop;
    this.stackBottom = o.stackTop - o.stackSize;
    this.fileExec = o.fileExec ?? false;
    this.release = o.release;
    this.back = o.back ?? (() => true);
    this.remaps = o.remaps ?? [];
    this.insert({ start: o.imageStart, end: o.brkStart, prot: PROT_READ | PROT_WRITE | PROT_EXEC, label: 'image' });
    if (o.loader) this.insert({ start: o.loader[0], end: o.loader[1], prot: PROT_READ | PROT_WRITE | PROT_EXEC, label: 'image' });
    this.insert({ start: this.stackBottom, end: o.stackTop, prot: PROT_READ | PROT_WRITE, label: 'stack' });
    this.insert({ start: this.stackBottom - o.stackGuard, end: this.stackBottom, prot: 0, label: 'guard' });
  }

  get brk(): number {
    return this.brkValue;
  }

  /** brk(2): returns the new break, or the old one when the request cannot be met. */
  setBrk(requested: number): number {
    if (requested < this.brkStart || requested > this.end) return this.brkValue;
    const oldTop = pageAlignUp(this.brkValue);
    const newTop = pageAlignUp(requested);
    if (newTop > oldTop && this.overlaps(oldTop, newTop)) return this.brkValue;
    if (newTop > oldTop && !this.withinLimit(newTop - oldTop)) return this.brkValue;
    if (newTop > oldTop && !this.back(oldTop, newTop)) return this.brkValue;
    if (newTop < oldTop) this.release(newTop, oldTop - newTop);
    this.brkValue = requested;
    return requested;
  }

  /**
   * Reserves `len` bytes (page multiple) for an anonymous or file mapping.
   * `fixed`: exactly at `hint`, replacing what was there (MAP_FIXED);
   * `noReplace`: exactly at `hint` or -EEXIST (MAP_FIXED_NOREPLACE).
   * Otherwise `hint` is used if free, else the highest free gap below the stack.
   */
  map(hint: number, len: number, prot: number, mode: 'any' | 'fixed' | 'noreplace', label: string): number {
    if (len <= 0 || len > this.end) return -E.ENOMEM;
    if (!this.withinLimit(len)) return -E.ENOMEM;
    if (mode !== 'any') {
      if (hint % PAGE !== 0) return -E.EINVAL;
      if (!this.placeable(hint, hint + len)) return mode === 'fixed' ? -E.ENOMEM : -E.EEXIST;
      if (mode === 'noreplace' && this.overlaps(hint, hint + len)) return -E.EEXIST;
      if (this.mappings.some((m) => m.label === 'guard' && m.start < hint + len && m.end > hint)) return -E.ENOMEM;
      if (!this.back(hint, hint + len)) return -E.ENOMEM;
      this.unmapRange(hint, hint + len);
      this.insert({ start: hint, end: hint + len, prot, label });
      this.coalesce();
      return hint;
    }
    let at = hint % PAGE === 0 && this.placeable(hint, hint + len) && !this.overlaps(hint, hint + len) && this.back(hint, hint + len)
      ? hint : -1;
    if (at < 0) at = this.findGap(len);
    if (at < 0 || !this.back(at, at + len)) return -E.ENOMEM;
    this.insert({ start: at, end: at + len, prot, label });
    this.coalesce();
    return at;
  }

  /** munmap(2) on a page-aligned range: forget it and give the memory back. */
  unmap(addr: number, len: number): number {
    if (addr % PAGE !== 0 || len <= 0 || !this.placeable(addr, addr + pageAlignUp(len))) return -E.EINVAL;
    this.unmapRange(addr, addr + pageAlignUp(len));
    return 0;
  }

  /** madvise(MADV_DONTNEED): the range stays mapped but its pages read as zero again. */
  discard(addr: number, len: number): number {
    if (addr % PAGE !== 0 || len < 0) return -E.EINVAL;
    const end = addr + pageAlignUp(len);
    if (!this.isMapped(addr, end)) return -E.ENOMEM;
    this.release(addr, end - addr);
    return 0;
  }

  /**
   * mremap(2) bookkeeping: grow or shrink the mapping at [addr, addr+oldLen).
   * Returns the (possibly new) address; when it moved, `move(from, to, len)` is
   * called to carry the contents before the old range is released.
   */
  remap(addr: number, oldLen: number, newLen: number, mayMove: boolean, move: (from: number, to: number, len: number) => void): number {
    if (addr % PAGE !== 0 || newLen <= 0) return -E.EINVAL;
    oldLen = pageAlignUp(oldLen);
    newLen = pageAlignUp(newLen);
    const m = this.mappingAt(addr, addr + Math.max(oldLen, PAGE));
    if (!m || m.label === 'image' || m.label === 'stack' || m.label === 'guard') return -E.EFAULT;
    if (newLen <= oldLen) {
      if (newLen < oldLen) this.unmapRange(addr + newLen, addr + oldLen);
      return addr;
    }
    if (!this.withinLimit(newLen - oldLen)) return -E.ENOMEM;
    if (this.placeable(addr, addr + newLen) && !this.overlaps(addr + oldLen, addr + newLen) && this.back(addr + oldLen, addr + newLen)) {
      this.insert({ start: addr + oldLen, end: addr + newLen, prot: m.prot, label: m.label });
      this.coalesce();
      return addr;
    }
    if (!mayMove) return -E.ENOMEM;
    const to = this.findGap(newLen);
    if (to < 0 || !this.back(to, to + newLen)) return -E.ENOMEM;
    this.insert({ start: to, end: to + newLen, prot: m.prot, label: m.label });
    move(addr, to, oldLen);
    this.unmapRange(addr, addr + oldLen);
    this.coalesce();
    return to;
  }

  /** mprotect(2): records the protection (splitting mappings as Linux does); every page stays accessible (see the header). */
  protect(addr: number, len: number, prot: number): number {
    if (addr % PAGE !== 0) return -E.EINVAL;
    const end = addr + pageAlignUp(len);
    if (!this.isMapped(addr, end)) return -E.ENOMEM;
    const out: Mapping[] = [];
    for (const m of this.mappings) {
      if (m.end <= addr || m.start >= end || m.label === 'image') {
        out.push(m);
        continue;
      }
      if (m.start < addr) out.push({ ...m, end: addr });
      out.push({ ...m, start: Math.max(m.start, addr), end: Math.min(m.end, end), prot });
      if (m.end > end) out.push({ ...m, start: end });
    }
    this.mappings = out;
    this.coalesce();
    return 0;
  }

  /** Whether [start, end) may hold mappings: within [userStart, end), or within one remap. */
  private placeable(start: number, end: number): boolean {
    return (start >= this.userStart && end <= this.end) || this.remaps.some(([s, e]) => start >= s && end <= e);
  }

  /** The mapping containing [start, end) entirely, if one does. */
  mappingAt(start: number, end = start + 1): Mapping | undefined {
    return this.mappings.find((m) => m.start <= start && end <= m.end);
  }

  /** True when every page of [start, end) belongs to some mapping or the heap. */
  isMapped(start: number, end: number): boolean {
    let at = start;
    if (at >= this.brkStart && at < pageAlignUp(this.brkValue)) at = Math.min(end, pageAlignUp(this.brkValue));
    for (const m of this.mappings) {
      if (m.end <= at) continue;
      if (m.start > at) break;
      at = m.end;
      if (at >= end) return true;
    }
    return at >= end;
  }

  /** True if [start, end) touches any mapping (the heap included). */
  overlaps(start: number, end: number): boolean {
    if (start < pageAlignUp(this.brkValue) && end > this.brkStart) return true;
    return this.mappings.some((m) => m.start < end && m.end > start);
  }

  /** Bytes the heap and the mappings cover, guard excluded (what `limit` bounds). */
  get committed(): number {
    let total = pageAlignUp(this.brkValue) - this.brkStart;
    for (const m of this.mappings) if (m.label !== 'guard') total += m.end - m.start;
    return total;
  }

  /** Whether `more` bytes fit under `limit`; records a refusal. */
  private withinLimit(more: number): boolean {
    if (this.limit === Infinity || this.committed + more <= this.limit) return true;
    this.limitHit = true;
    return false;
  }

  list(): readonly Mapping[] {
    return this.mappings;
  }

  snapshot(): AddressSpaceSnapshot {
    return { mappings: this.mappings.map((m) => ({ ...m })), brk: this.brkValue };
  }

  restore(s: AddressSpaceSnapshot): void {
    this.mappings = s.mappings.map((m) => ({ ...m }));
    this.brkValue = s.brk;
    this.limitHit = false;
  }

  private findGap(len: number): number {
    // Top-down from below the stack's guard, like Linux's default mmap layout.
    let top = this.stackBottom;
    const floor = pageAlignUp(this.brkValue) + PAGE;
    for (let i = this.mappings.length - 1; i >= 0; i--) {
      const m = this.mappings[i]!;
      if (m.start >= top) {
        top = Math.min(top, m.start);
        continue;
      }
      if (m.end <= top && top - Math.max(m.end, floor) >= len) return top - len;
      top = Math.min(top, m.start);
      if (top <= floor) return -1;
    }
    return top - len >= floor ? top - len : -1;
  }

  /** Merges neighbours with the same protection and origin, as Linux merges compatible VMAs. */
  private coalesce(): void {
    const out: Mapping[] = [];
    for (const m of this.mappings) {
      const last = out[out.length - 1];
      if (last && last.end === m.start && last.prot === m.prot && last.label === m.label) last.end = m.end;
      else out.push({ ...m });
    }
    this.mappings = out;
  }

  private insert(m: Mapping): void {
    let i = 0;
    while (i < this.mappings.length && this.mappings[i]!.start < m.start) i++;
    this.mappings.splice(i, 0, m);
  }

  private unmapRange(start: number, end: number): void {
    const kept: Mapping[] = [];
    for (const m of this.mappings) {
      if (m.end <= start || m.start >= end) {
        kept.push(m);
        continue;
      }
      if (m.start < start) kept.push({ ...m, end: start });
      if (m.end > end) kept.push({ ...m, start: end });
    }
    this.mappings = kept;
    this.release(start, end - start);
  }
}
