/**
 * ELF validation: turn the bytes of an x86-64 Linux executable into a loading plan
 * (`ElfImage`), or reject it with a typed error saying what is wrong.
 *
 * The file is hostile. Every field is checked before it is used, all arithmetic stays
 * far below 2^53 (anything at or above 2^47 — the top of the x86-64 user half — is
 * rejected first), and nothing but a `TskvmError` with a `TSKVM_ERR_ELF_…` code ever
 * leaves this module.
 *
 * Order of the checks (the first failure wins):
 *
 *   identification   magic, class, byte order        NOT_ELF, NOT_64BIT, NOT_LITTLE_ENDIAN, TRUNCATED
 *   ELF header       machine, type, phentsize/phnum  NOT_X86_64, NOT_EXECUTABLE, BAD_PROGRAM_HEADERS
 *   phdr table       inside the file                 TRUNCATED
 *   decoding         elfy                            MALFORMED
 *   PT_INTERP        one, a NUL-ended absolute path  BAD_INTERP
 *   each PT_LOAD     file range, sizes, alignment    SEGMENT_OUTSIDE_FILE, BAD_SEGMENT
 *   all PT_LOADs     some, none overlapping          NO_LOAD_SEGMENTS, SEGMENTS_OVERLAP
 *   placement        inside the guest's range        TOO_LARGE
 *   entry, AT_PHDR   inside what gets loaded         ENTRY_OUTSIDE_SEGMENT, BAD_PROGRAM_HEADERS
 *
 * Section headers are never read: the kernel ignores them, and a stripped or
 * sstripped program must load exactly as it does under Linux.
 */
import elfy from 'elfy';
import type { ElfyProgram } from 'elfy';
import { TskvmError, type ErrorCode } from '../errors.js';

export interface ElfLimits {
  /** Lowest guest address an image may occupy (everything below belongs to the hypervisor). */
  minAddress: number;
  /** First guest address an image may not occupy. */
  maxAddress: number;
  /** Where ET_DYN (static-pie) images are placed: their load bias. Page aligned. */
  pieBase: number;
}

export interface LoadSegment {
  /** Absolute guest address (the load bias is already added). */
  vaddr: number;
  memsz: number;
  fileOffset: number;
  filesz: number;
  readable: boolean;
  writable: boolean;
  executable: boolean;
}

export interface ElfImage {
  /** ET_EXEC ('static') or ET_DYN ('static-pie'), whether or not it names an interpreter. */
  kind: 'static' | 'static-pie';
  /** The PT_INTERP path (the dynamic loader) for a dynamically linked program; null for a static one. */
  interpreter: string | null;
  /** Load bias: 0 for ET_EXEC, `limits.pieBase` for ET_DYN. */
  base: number;
  /** Absolute entry point. */
  entry: number;
  /** PT_LOAD segments with a non-empty memory image, sorted by address. */
  segments: LoadSegment[];
  /** Guest address of the program header table once loaded (AT_PHDR). */
  phdrAddress: number;
  phentsize: number;
  phnum: number;
  /** Lowest segment address rounded down to a page. */
  start: number;
  /** Highest segment end rounded up to a page. */
  end: number;
  /** Where the program break begins (= end). */
  brkStart: number;
  /** PT_TLS, for information: the C library sets up its own thread pointer. */
  tls: { vaddr: number; memsz: number; filesz: number; align: number } | null;
  /** Size of the file in bytes. */
  size: number;
}

export const PAGE_SIZE = 4096;
/** x86-64 user addresses are below 2^47; no field of a loadable program can be larger. */
const ADDRESS_LIMIT = 2 ** 47;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
/** Generous (real programs have ~10) while keeping the work per file small. */
const MAX_PROGRAM_HEADERS = 256;

const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;
const EM_X86_64 = 62;
const ET_REL = 1;
const ET_EXEC = 2;
const ET_DYN = 3;
const ET_CORE = 4;

/** Names for the machines people are most likely to hand us by mistake. */
const MACHINE_NAMES: Record<number, string> = {
  3: 'i386 (32-bit x86)', 8: 'MIPS', 20: 'PowerPC', 21: 'PowerPC 64', 22: 'S/390',
  40: 'ARM (32-bit)', 183: 'AArch64 (arm64)', 243: 'RISC-V',
};

const hex = (n: number): string => '0x' + n.toString(16);

/** The ELF codes, without their TSKVM_ERR_ELF_ prefix. */
type ElfSuffix<C> = C extends `TSKVM_ERR_ELF_${infer S}` ? S : never;
type ElfCode = ElfSuffix<ErrorCode>;

function fail(code: ElfCode, message: string, details: Record<string, unknown> = {}): never {
  throw new TskvmError(`TSKVM_ERR_ELF_${code}`, message, details);
}

/**
 * Validates an ELF file and computes where each part goes in guest memory.
 * `source` names the file in error messages (a path, or a program name).
 */
export function parseElf(file: Uint8Array, limits: ElfLimits, source = 'the ELF file'): ElfImage {
  checkLimits(limits);
  const header = readHeader(file, source);
  const programs = decodeProgramHeaders(file, header, source);

  const interpreter = interpreterOf(file, programs, source);

  const kind = header.type === ET_DYN ? 'static-pie' : 'static';
  const base = kind === 'static-pie' ? limits.pieBase : 0;
  const segments = loadSegmentsOf(programs, file.length, base, source);

  const start = pageDown(segments[0]!.vaddr);
  const last = segments[segments.length - 1]!;
  const end = pageUp(last.vaddr + last.memsz);
  if (start < limits.minAddress || end > limits.maxAddress) {
    const placed = kind === 'static-pie' ? `placed at ${hex(base)}` : 'linked';
    fail('TOO_LARGE',
      start < limits.minAddress
        ? `${source} is ${placed} at ${hex(start)}, below the lowest address tskvm loads programs at ` +
          `(${hex(limits.minAddress)}); link it at the default address (gcc's 0x400000) or build it -static-pie`
        : `${source} needs guest memory up to ${hex(end)} but programs may only use ` +
          `[${hex(limits.minAddress)}, ${hex(limits.maxAddress)}); give the program more memory ` +
          '(max memory) or make it smaller',
      { start, end, minAddress: limits.minAddress, maxAddress: limits.maxAddress });
  }

  const entry = header.entry + base;
  if (!segments.some((s) => s.executable && entry >= s.vaddr && entry < s.vaddr + s.memsz)) {
    fail('ENTRY_OUTSIDE_SEGMENT',
      `${source} has its entry point at ${hex(entry)}, which is not inside any executable PT_LOAD ` +
      'segment; the file is corrupt or was not linked as a program — rebuild it',
      { entry });
  }

  return {
    kind,
    interpreter,
    base,
    entry,
    segments,
    phdrAddress: programHeaderAddress(programs, header, base, source),
    phentsize: PHDR_SIZE,
    phnum: header.phnum,
    start,
    end,
    brkStart: end,
    tls: tlsOf(programs, base, source),
    size: file.length,
  };
}

/**
 * The dynamic loader an ELF file names (PT_INTERP), or null for a static program, without the rest of
 * parseElf's checks: for deciding what a program needs before it is loaded. Throws as parseElf does.
 */
export function elfInterpreter(file: Uint8Array, source = 'the ELF file'): string | null {
  const header = readHeader(file, source);
  return interpreterOf(file, decodeProgramHeaders(file, header, source), source);
}

function checkLimits(limits: ElfLimits): void {
  const { minAddress, maxAddress, pieBase } = limits;
  const ok = [minAddress, maxAddress, pieBase].every(
    (v) => Number.isSafeInteger(v) && v >= 0 && v <= ADDRESS_LIMIT && v % PAGE_SIZE === 0);
  if (!ok || minAddress >= maxAddress) {
    fail('BAD_LIMITS',
      `ELF limits must be page-aligned addresses below 2^47 with minAddress < maxAddress ` +
      `(got minAddress ${minAddress}, maxAddress ${maxAddress}, pieBase ${pieBase})`,
      { minAddress, maxAddress, pieBase });
  }
}

interface Header {
  type: number;
  entry: number;
  phoff: number;
  phnum: number;
}

/** The checks on the fixed-size ELF header, done on the raw bytes before elfy sees them. */
function readHeader(file: Uint8Array, source: string): Header {
  if (file.length < 4 || file[0] !== 0x7f || file[1] !== 0x45 || file[2] !== 0x4c || file[3] !== 0x46) {
    const isScript = file[0] === 0x23 && file[1] === 0x21;
    fail('NOT_ELF',
      isScript
        ? `${source} is a script (it starts with "#!"), not an ELF program; tskvm runs compiled ` +
          'x86-64 Linux executables — run the interpreter\'s static build with the script as an argument'
        : `${source} is not an ELF file (it does not start with "\\x7fELF"); tskvm runs compiled ` +
          'x86-64 Linux executables — check that the path names the built program',
      { firstBytes: Array.from(file.subarray(0, 4)) });
  }
  if (file.length < 6) truncatedHeader(file, source);
  if (file[4] !== ELFCLASS64) {
    fail('NOT_64BIT',
      `${source} is a ${file[4] === 1 ? '32-bit' : `class-${file[4]}`} ELF file; tskvm runs 64-bit ` +
      'x86-64 programs only — rebuild it without -m32',
      { elfClass: file[4] });
  }
  if (file[5] !== ELFDATA2LSB) {
    fail('NOT_LITTLE_ENDIAN',
      `${source} is ${file[5] === 2 ? 'big-endian' : `of unknown byte order ${file[5]}`}; x86-64 ` +
      'programs are little-endian — it was built for another architecture',
      { elfData: file[5] });
  }
  if (file.length < EHDR_SIZE) truncatedHeader(file, source);

  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const type = view.getUint16(16, true);
  const machine = view.getUint16(18, true);
  const entry = readU64(view, 24);
  const phoff = readU64(view, 32);
  const phentsize = view.getUint16(54, true);
  const phnum = view.getUint16(56, true);

  if (machine !== EM_X86_64) {
    const name = MACHINE_NAMES[machine] ?? `machine ${machine}`;
    fail('NOT_X86_64',
      `${source} is built for ${name}, not x86-64; rebuild it for x86-64 Linux ` +
      '(e.g. with the host gcc, or a cross-compiler targeting x86_64-linux)',
      { machine });
  }
  if (type !== ET_EXEC && type !== ET_DYN) {
    const what = type === ET_REL ? 'a relocatable object file (.o)'
      : type === ET_CORE ? 'a core dump' : `an ELF file of type ${type}`;
    fail('NOT_EXECUTABLE',
      `${source} is ${what}, not an executable; link it into a program (e.g. \`gcc -static -o prog prog.o\`)`,
      { type });
  }
  if (phentsize !== PHDR_SIZE || phnum === 0 || phnum > MAX_PROGRAM_HEADERS || phoff === 0) {
    fail('BAD_PROGRAM_HEADERS',
      `${source} has an unusable program header table (${phnum} entries of ${phentsize} bytes at ` +
      `offset ${phoff}); an x86-64 program needs 1 to ${MAX_PROGRAM_HEADERS} entries of ${PHDR_SIZE} ` +
      'bytes — the file is corrupt, rebuild it',
      { phoff, phentsize, phnum });
  }
  if (phoff > file.length || phoff + phnum * PHDR_SIZE > file.length) {
    fail('TRUNCATED',
      `${source} is truncated: its program header table ends at byte ${phoff + phnum * PHDR_SIZE} ` +
      `but the file has ${file.length} bytes; copy the complete file again`,
      { phoff, phnum, size: file.length });
  }
  return { type, entry, phoff, phnum };
}

function truncatedHeader(file: Uint8Array, source: string): never {
  fail('TRUNCATED',
    `${source} is truncated: ${file.length} bytes, shorter than the ${EHDR_SIZE}-byte ELF header; ` +
    'copy the complete file again',
    { size: file.length });
}

/** Unsigned little-endian 64-bit field; exact below 2^53, which is all we ever accept. */
function readU64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 2 ** 32;
}

/**
 * Decodes the program headers with elfy. We call its header and program-header
 * parsers rather than `elfy.parse()`: that one also walks the section headers and
 * throws when there is no section-name table (a stripped program) — information the
 * loader never needs. The table is known to lie inside the file by now, but elfy is
 * still not trusted: anything it throws becomes MALFORMED.
 */
function decodeProgramHeaders(file: Uint8Array, header: Header, source: string): ElfyProgram[] {
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  let programs: ElfyProgram[];
  try {
    const parser = new elfy.Parser();
    programs = parser.parsePrograms(buf, parser.parseHeader(buf));
  } catch (err) {
    fail('MALFORMED',
      `${source} could not be decoded (${(err as Error)?.message ?? String(err)}); the file is corrupt — rebuild it`,
      { cause: String(err) });
  }
  if (!Array.isArray(programs) || programs.length !== header.phnum) {
    fail('MALFORMED',
      `${source} could not be decoded (expected ${header.phnum} program headers); the file is corrupt — rebuild it`);
  }
  return programs;
}

/** Linux refuses a PT_INTERP of more than PATH_MAX bytes or fewer than 2 (binfmt_elf.c). */
const PATH_MAX = 4096;

/**
 * The path PT_INTERP names, checked as Linux checks it: one PT_INTERP, its bytes inside the file,
 * 2 to PATH_MAX of them, the last a NUL and no NUL before it. tskvm also wants it absolute (the
 * guest has no cwd yet at exec) and printable, since it ends up in error messages.
 */
function interpreterOf(file: Uint8Array, programs: ElfyProgram[], source: string): string | null {
  const interps = programs.filter((p) => p.type === 'interp');
  if (interps.length === 0) return null;
  const bad = (why: string, details: Record<string, unknown> = {}): never => fail('BAD_INTERP',
    `${source}: its PT_INTERP (the dynamic loader's path) ${why}; the file is corrupt — rebuild it`, details);
  if (interps.length > 1) bad(`appears ${interps.length} times`);
  const { offset, filesz } = interps[0]!;
  if (filesz < 2 || filesz > PATH_MAX) bad(`is ${filesz} bytes long (2 to ${PATH_MAX} allowed)`, { filesz });
  if (offset > file.length || offset + filesz > file.length) {
    bad(`takes bytes ${offset} to ${offset + filesz}, past the end of the ${file.length}-byte file`, { offset, filesz });
  }
  const bytes = file.subarray(offset, offset + filesz);
  const nul = bytes.indexOf(0);
  if (nul !== filesz - 1) bad(nul < 0 ? 'does not end with a NUL' : 'has a NUL before its end', { filesz, nul });
  let path = '';
  for (const byte of bytes.subarray(0, nul)) {
    if (byte < 0x20 || byte >= 0x7f) bad('holds a byte that is not printable ASCII', { byte });
    path += String.fromCharCode(byte);
  }
  if (!path.startsWith('/')) bad(`is "${path}", not an absolute path`, { interpreter: path });
  return path;
}

/** Validates every PT_LOAD and returns the non-empty ones, biased and sorted by address. */
function loadSegmentsOf(programs: ElfyProgram[], fileSize: number, base: number, source: string): LoadSegment[] {
  const segments: LoadSegment[] = [];
  programs.forEach((p, index) => {
    if (p.type !== 'load') return;
    const { offset, vaddr, filesz, memsz } = p;
    const at = `PT_LOAD (program header ${index})`;
    const details = { index, offset, vaddr, filesz, memsz };
    // A pure .bss segment (filesz 0) reads nothing, so its offset may point past the
    // end (linkers leave it there after the last file bytes); the kernel accepts that.
    if (offset > ADDRESS_LIMIT || filesz > ADDRESS_LIMIT || (filesz > 0 && offset + filesz > fileSize)) {
      fail('SEGMENT_OUTSIDE_FILE',
        `${source}: ${at} takes ${filesz} bytes from offset ${offset}, past the end of the ` +
        `${fileSize}-byte file; the file is truncated or corrupt — copy or rebuild it`,
        details);
    }
    if (vaddr >= ADDRESS_LIMIT || memsz > ADDRESS_LIMIT || vaddr + memsz > ADDRESS_LIMIT) {
      fail('BAD_SEGMENT',
        `${source}: ${at} at ${hex(vaddr)} with ${memsz} bytes reaches past the 2^47 user address ` +
        'space; the file is corrupt — rebuild it',
        details);
    }
    if (filesz > memsz) {
      fail('BAD_SEGMENT',
        `${source}: ${at} has more bytes in the file (${filesz}) than in memory (${memsz}); ` +
        'the file is corrupt — rebuild it',
        details);
    }
    if (vaddr % PAGE_SIZE !== offset % PAGE_SIZE) {
      fail('BAD_SEGMENT',
        `${source}: ${at} has address ${hex(vaddr)} and file offset ${hex(offset)} that differ ` +
        'within a page, so it cannot be mapped; the file is corrupt — rebuild it',
        details);
    }
    // An empty PT_LOAD maps nothing (linkers emit them for empty output sections).
    if (memsz === 0) return;
    segments.push({
      vaddr: vaddr + base,
      memsz,
      fileOffset: offset,
      filesz,
      readable: p.flags.r === true,
      writable: p.flags.w === true,
      executable: p.flags.x === true,
    });
  });

  if (segments.length === 0) {
    fail('NO_LOAD_SEGMENTS',
      `${source} has no loadable (PT_LOAD) segment, so there is nothing to run; ` +
      'it is not a program — link it as an executable');
  }
  // Linkers emit PT_LOADs in address order; sorting costs nothing and makes
  // overlapping pairs neighbours. Segments may share a page (text end and data start
  // with -z noseparate-code, custom scripts): only overlapping bytes are an error.
  segments.sort((a, b) => a.vaddr - b.vaddr);
  for (let i = 1; i < segments.length; i++) {
    const prev = segments[i - 1]!;
    const next = segments[i]!;
    if (prev.vaddr + prev.memsz > next.vaddr) {
      fail('SEGMENTS_OVERLAP',
        `${source}: PT_LOAD segments [${hex(prev.vaddr)}, ${hex(prev.vaddr + prev.memsz)}) and ` +
        `[${hex(next.vaddr)}, ${hex(next.vaddr + next.memsz)}) overlap; the file is corrupt — rebuild it`,
        { first: prev, second: next });
    }
  }
  return segments;
}

/**
 * The address of the loaded program header table, which libc finds through AT_PHDR
 * (glibc and musl read PT_TLS from it). Like Linux since 5.18, it is derived from the
 * PT_LOAD whose file bytes contain the table; a PT_PHDR, when present, must agree.
 * A program whose table is not loaded could not find its own TLS, so it is refused.
 */
function programHeaderAddress(programs: ElfyProgram[], header: Header, base: number, source: string): number {
  const tableEnd = header.phoff + header.phnum * PHDR_SIZE;
  // All PT_LOAD fields are validated (< 2^47, inside the file) by now.
  const holder = programs.find((p) =>
    p.type === 'load' && p.offset <= header.phoff && tableEnd <= p.offset + p.filesz);
  if (holder === undefined) {
    fail('BAD_PROGRAM_HEADERS',
      `${source}: the program header table (file offset ${header.phoff}) is not inside any PT_LOAD ` +
      'segment, so the program could not find it at run time (AT_PHDR); the file is corrupt — rebuild it',
      { phoff: header.phoff });
  }
  const address = holder.vaddr + base + (header.phoff - holder.offset);
  const phdr = programs.find((p) => p.type === 'phdr');
  if (phdr !== undefined && phdr.vaddr + base !== address) {
    fail('BAD_PROGRAM_HEADERS',
      `${source}: PT_PHDR says the program header table is at ${hex(phdr.vaddr + base)} but the ` +
      `PT_LOAD holding it puts it at ${hex(address)}; the file is corrupt — rebuild it`,
      { phdrVaddr: phdr.vaddr + base, loadedAt: address });
  }
  return address;
}

function tlsOf(programs: ElfyProgram[], base: number, source: string): ElfImage['tls'] {
  const tls = programs.find((p) => p.type === 'tls');
  if (tls === undefined) return null;
  const { vaddr, memsz, filesz, align } = tls;
  if (vaddr >= ADDRESS_LIMIT || memsz > ADDRESS_LIMIT || vaddr + memsz > ADDRESS_LIMIT ||
      filesz > memsz || align > ADDRESS_LIMIT) {
    fail('BAD_SEGMENT',
      `${source}: the PT_TLS segment (address ${hex(vaddr)}, ${filesz} of ${memsz} bytes from the file, ` +
      `alignment ${align}) is impossible; the file is corrupt — rebuild it`,
      { vaddr, memsz, filesz, align });
  }
  return { vaddr: vaddr + base, memsz, filesz, align };
}

export function pageDown(address: number): number {
  return address - (address % PAGE_SIZE);
}

export function pageUp(address: number): number {
  return pageDown(address + PAGE_SIZE - 1);
}
