import t, { type Test } from 'tap';
import elfy from 'elfy';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TskvmError } from '../src/errors.js';
import { loadSegments } from '../src/elf/load-elf.js';
import { parseElf, type ElfImage, type ElfLimits } from '../src/elf/parse-elf.js';
import { compileC, hasCommand } from './helpers/elf-test-programs.js';

const limits: ElfLimits = { minAddress: 0x200000, maxAddress: 256 << 20, pieBase: 0x400000 };
const fixtureDir = fileURLToPath(new URL('./fixtures/elf', import.meta.url));
const generator = fileURLToPath(new URL('./fixtures/make-bad-elfs.mjs', import.meta.url));
// Plain Uint8Array copies: Buffer#slice would share memory, and the helpers below copy with slice().
const fixture = (name: string): Uint8Array => new Uint8Array(readFileSync(join(fixtureDir, name)));

/** Runs `fn` and returns the TskvmError it throws (failing the test for anything else). */
function elfError(t: Test, fn: () => unknown): TskvmError | undefined {
  try {
    fn();
  } catch (err) {
    t.ok(err instanceof TskvmError, `throws a TskvmError (got ${String(err)})`);
    return err instanceof TskvmError ? err : undefined;
  }
  t.fail('expected an error');
  return undefined;
}

function rejects(t: Test, bytes: Uint8Array, code: string, lim: ElfLimits = limits): TskvmError | undefined {
  const err = elfError(t, () => parseElf(bytes, lim));
  t.equal(err?.code, code);
  t.ok((err?.message.length ?? 0) > 20, 'message explains the problem');
  return err;
}

/** The fixture table from the generated README: file → expected code (null: parses). */
function readmeTable(): Map<string, string | null> {
  const table = new Map<string, string | null>();
  for (const line of readFileSync(join(fixtureDir, 'README.md'), 'utf8').split('\n')) {
    const m = /^\| `([^`]+\.elf)` \| (?:`(TSKVM_ERR_\w+)`|parses) \|/.exec(line);
    if (m) table.set(m[1]!, m[2] ?? null);
  }
  return table;
}

// Little-endian field writers for hand-made variants.
function withU16(bytes: Uint8Array, offset: number, value: number): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint16(offset, value, true);
  return copy;
}
function withU64(bytes: Uint8Array, offset: number, value: bigint | number): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setBigUint64(offset, BigInt(value), true);
  return copy;
}

/** A copy of `bytes` with program headers appended in a fresh table at the end of the file. */
function withProgramHeaders(bytes: Uint8Array, phdrs: Array<{ type: number; flags: number; offset: number; vaddr: number; filesz: number; memsz: number }>): Uint8Array {
  const out = new Uint8Array(bytes.length + phdrs.length * 56);
  out.set(bytes);
  const view = new DataView(out.buffer);
  const phoff = bytes.length;
  view.setBigUint64(32, BigInt(phoff), true);
  view.setUint16(56, phdrs.length, true);
  phdrs.forEach((p, i) => {
    const at = phoff + i * 56;
    view.setUint32(at, p.type, true);
    view.setUint32(at + 4, p.flags, true);
    view.setBigUint64(at + 8, BigInt(p.offset), true);
    view.setBigUint64(at + 16, BigInt(p.vaddr), true);
    view.setBigUint64(at + 24, BigInt(p.vaddr), true);
    view.setBigUint64(at + 32, BigInt(p.filesz), true);
    view.setBigUint64(at + 40, BigInt(p.memsz), true);
    view.setBigUint64(at + 48, 0x1000n, true);
  });
  return out;
}

t.test('the checked-in fixtures are exactly what the generator produces', (t) => {
  const out = mkdtempSync(join(tmpdir(), 'tskvm-fixtures-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  execFileSync(process.execPath, [generator, out]);
  const generated = readdirSync(out).sort();
  t.same(readdirSync(fixtureDir).sort(), generated, 'same file names');
  for (const name of generated) {
    t.ok(Buffer.compare(readFileSync(join(out, name)), readFileSync(join(fixtureDir, name))) === 0, `${name} is identical`);
  }
  t.end();
});

t.test('every fixture gives the code its README row names', (t) => {
  const table = readmeTable();
  const files = readdirSync(fixtureDir).filter((f) => f.endsWith('.elf'));
  t.same([...table.keys()].sort(), files.sort(), 'every fixture has a README row');
  for (const [name, code] of table) {
    if (code === null) {
      t.doesNotThrow(() => parseElf(fixture(name), limits), `${name} parses`);
    } else {
      t.test(name, (t) => {
        rejects(t, fixture(name), code);
        t.end();
      });
    }
  }
  t.end();
});

t.test('the tiny static ELF', (t) => {
  const image = parseElf(fixture('tiny-exit7.elf'), limits);
  t.same(image, {
    kind: 'static',
    interpreter: null,
    base: 0,
    entry: 0x400078,
    segments: [{ vaddr: 0x400000, memsz: 132, fileOffset: 0, filesz: 132, readable: true, writable: false, executable: true }],
    phdrAddress: 0x400040,
    phentsize: 56,
    phnum: 1,
    start: 0x400000,
    end: 0x401000,
    brkStart: 0x401000,
    tls: null,
    size: 132,
  });
  t.end();
});

t.test('the tiny static-pie ELF is placed at pieBase', (t) => {
  const image = parseElf(fixture('tiny-pie-exit7.elf'), limits);
  t.equal(image.kind, 'static-pie');
  t.equal(image.base, limits.pieBase);
  t.equal(image.entry, limits.pieBase + 0x78);
  t.equal(image.segments[0]!.vaddr, limits.pieBase);
  t.equal(image.phdrAddress, limits.pieBase + 0x40);
  const elsewhere = parseElf(fixture('tiny-pie-exit7.elf'), { ...limits, pieBase: 0x10000000 - 0x1000 });
  t.equal(elsewhere.entry, 0x10000000 - 0x1000 + 0x78, 'follows pieBase');
  rejects(t, fixture('tiny-pie-exit7.elf'), 'TSKVM_ERR_ELF_TOO_LARGE', { ...limits, pieBase: limits.maxAddress });
  t.end();
});

t.test('error messages help', (t) => {
  t.equal(parseElf(fixture('dynamic.elf'), limits).interpreter, '/lib64/ld-linux-x86-64.so.2', 'a dynamic program names its loader');
  t.match(elfError(t, () => parseElf(fixture('not-elf.elf'), limits, 'hello.sh'))?.message, /hello\.sh is a script/);
  t.match(elfError(t, () => parseElf(fixture('arm64.elf'), limits))?.message, /AArch64/);
  t.match(elfError(t, () => parseElf(fixture('relocatable.elf'), limits))?.message, /relocatable object/);
  t.end();
});

t.test('hand-made edge cases', (t) => {
  const tiny = fixture('tiny-exit7.elf');
  rejects(t, new Uint8Array(0), 'TSKVM_ERR_ELF_NOT_ELF');
  rejects(t, tiny.slice(0, 3), 'TSKVM_ERR_ELF_NOT_ELF');
  rejects(t, tiny.slice(0, 4), 'TSKVM_ERR_ELF_TRUNCATED');
  rejects(t, tiny.slice(0, 63), 'TSKVM_ERR_ELF_TRUNCATED');
  rejects(t, withU16(tiny, 16, 4), 'TSKVM_ERR_ELF_NOT_EXECUTABLE'); // ET_CORE
  rejects(t, withU16(tiny, 56, 0), 'TSKVM_ERR_ELF_BAD_PROGRAM_HEADERS'); // phnum 0
  rejects(t, withU16(tiny, 56, 257), 'TSKVM_ERR_ELF_BAD_PROGRAM_HEADERS');
  rejects(t, withU16(tiny, 56, 0xffff), 'TSKVM_ERR_ELF_BAD_PROGRAM_HEADERS'); // PN_XNUM
  rejects(t, withU64(tiny, 32, 0), 'TSKVM_ERR_ELF_BAD_PROGRAM_HEADERS'); // no table
  rejects(t, withU64(tiny, 32, 1n << 63n), 'TSKVM_ERR_ELF_TRUNCATED');
  rejects(t, withU64(tiny, 32, (1n << 64n) - 1n), 'TSKVM_ERR_ELF_TRUNCATED');
  rejects(t, withU64(tiny, 64 + 8, (1n << 64n) - 1n), 'TSKVM_ERR_ELF_SEGMENT_OUTSIDE_FILE'); // p_offset
  rejects(t, withU64(tiny, 64 + 32, (1n << 64n) - 1n), 'TSKVM_ERR_ELF_SEGMENT_OUTSIDE_FILE'); // p_filesz
  rejects(t, withU64(tiny, 64 + 16, (1n << 47n) - 0x1000n), 'TSKVM_ERR_ELF_TOO_LARGE'); // high but legal
  rejects(t, withU64(tiny, 64 + 16, (1n << 64n) - 0x1000n), 'TSKVM_ERR_ELF_BAD_SEGMENT'); // wraps
  rejects(t, withU64(tiny, 64 + 40, (1n << 64n) - 1n), 'TSKVM_ERR_ELF_BAD_SEGMENT'); // p_memsz wraps
  rejects(t, withU64(tiny, 24, (1n << 64n) - 1n), 'TSKVM_ERR_ELF_ENTRY_OUTSIDE_SEGMENT');
  rejects(t, withU64(tiny, 24, 0x400084), 'TSKVM_ERR_ELF_ENTRY_OUTSIDE_SEGMENT'); // one past the end
  // Linked below the lowest address we load at (the hypervisor's own pages live there).
  const low = withU64(withU64(tiny, 64 + 16, 0x10000), 24, 0x10078);
  t.match(rejects(t, low, 'TSKVM_ERR_ELF_TOO_LARGE')?.message, /below the lowest address/);
  t.end();
});

t.test('segment layouts: shared pages, order, empty segments, PT_PHDR, PT_TLS', (t) => {
  const tiny = fixture('tiny-exit7.elf');
  const R = 4, W = 2, X = 1;
  const PT_LOAD = 1, PT_PHDR = 6, PT_TLS = 7;
  type Phdr = Parameters<typeof withProgramHeaders>[1][number];
  /** tiny-exit7 with a new table: `extra`, then an R+X PT_LOAD mapping the whole grown file. */
  const tinyWith = (extra: Phdr[], vaddr = 0x400000): Uint8Array => {
    const total = tiny.length + (extra.length + 1) * 56;
    return withProgramHeaders(tiny, [...extra, { type: PT_LOAD, flags: R | X, offset: 0, vaddr, filesz: total, memsz: total }]);
  };

  // Data starting in the page where text ends, right after its last byte (the layout
  // of -z noseparate-code and -N): accepted, and loaded without clobbering the text.
  const shared = withProgramHeaders(tiny, [
    { type: PT_LOAD, flags: R | X, offset: 0, vaddr: 0x400000, filesz: tiny.length, memsz: tiny.length },
    { type: PT_LOAD, flags: R | W, offset: tiny.length, vaddr: 0x400000 + tiny.length, filesz: 112, memsz: 0x2000 },
  ]);
  const sharedImage = parseElf(shared, limits);
  t.equal(sharedImage.segments.length, 2);
  t.equal(sharedImage.phdrAddress, 0x400000 + tiny.length, 'table found in the data segment');
  t.equal(sharedImage.end, 0x403000);
  const memory = new Uint8Array(8 << 20);
  loadSegments(sharedImage, shared, memory);
  t.same(memory.subarray(0x400000, 0x400000 + shared.length), shared, 'both segments intact');

  // Listed out of order, with an empty PT_LOAD: sorted, the empty one dropped.
  // The pure-.bss one has its file offset past the end of the file, as linkers leave it.
  const unorderedBytes = tinyWith([
    { type: PT_LOAD, flags: R | W, offset: 0x1000, vaddr: 0x402000, filesz: 0, memsz: 0x100 },
    { type: PT_LOAD, flags: R, offset: 0, vaddr: 0x500000, filesz: 0, memsz: 0 },
  ]);
  const unordered = parseElf(unorderedBytes, limits);
  t.same(unordered.segments.map((s) => s.vaddr), [0x400000, 0x402000]);
  t.equal(unordered.phdrAddress, 0x400000 + tiny.length);
  t.equal(unordered.end, 0x403000);
  memory.fill(0xaa);
  loadSegments(unordered, unorderedBytes, memory);
  t.ok(memory.subarray(0x402000, 0x403000).every((b) => b === 0), 'pure .bss segment zeroed');

  // PT_PHDR must agree with where the table is loaded.
  const withPhdr = (vaddr: number): Uint8Array =>
    tinyWith([{ type: PT_PHDR, flags: R, offset: tiny.length, vaddr, filesz: 2 * 56, memsz: 2 * 56 }]);
  t.equal(parseElf(withPhdr(0x400000 + tiny.length), limits).phdrAddress, 0x400000 + tiny.length);
  rejects(t, withPhdr(0x400000 + tiny.length + 8), 'TSKVM_ERR_ELF_BAD_PROGRAM_HEADERS');

  // PT_TLS is reported, biased for static-pie, and checked for sanity.
  const withTls = (tls: { filesz: number; memsz: number }, pie = false): Uint8Array => {
    const vaddr = pie ? 0 : 0x400000;
    const bytes = tinyWith([{ type: PT_TLS, flags: R, offset: 0x10, vaddr: vaddr + 0x10, ...tls }], vaddr);
    return pie ? withU64(withU16(bytes, 16, 3), 24, 0x78) : bytes;
  };
  t.same(parseElf(withTls({ filesz: 8, memsz: 24 }), limits).tls, { vaddr: 0x400010, memsz: 24, filesz: 8, align: 0x1000 });
  t.equal(parseElf(withTls({ filesz: 8, memsz: 24 }, true), limits).tls?.vaddr, limits.pieBase + 0x10);
  rejects(t, withTls({ filesz: 32, memsz: 24 }), 'TSKVM_ERR_ELF_BAD_SEGMENT');
  t.end();
});

t.test('an exception inside elfy becomes TSKVM_ERR_ELF_MALFORMED', (t) => {
  const original = elfy.Parser.prototype.parsePrograms;
  elfy.Parser.prototype.parsePrograms = () => {
    throw new RangeError('The value of "offset" is out of range');
  };
  t.teardown(() => {
    elfy.Parser.prototype.parsePrograms = original;
  });
  rejects(t, fixture('tiny-exit7.elf'), 'TSKVM_ERR_ELF_MALFORMED');
  t.end();
});

t.test('bad limits are refused', (t) => {
  const tiny = fixture('tiny-exit7.elf');
  rejects(t, tiny, 'TSKVM_ERR_ELF_BAD_LIMITS', { ...limits, pieBase: 0x400001 });
  rejects(t, tiny, 'TSKVM_ERR_ELF_BAD_LIMITS', { ...limits, maxAddress: limits.minAddress });
  rejects(t, tiny, 'TSKVM_ERR_ELF_BAD_LIMITS', { ...limits, maxAddress: NaN });
  t.end();
});

t.test('a file inside a larger buffer (Buffer pool, subarray) parses the same', (t) => {
  const tiny = fixture('tiny-exit7.elf');
  const big = new Uint8Array(tiny.length + 100).fill(0xcc);
  big.set(tiny, 37);
  t.same(parseElf(big.subarray(37, 37 + tiny.length), limits), parseElf(tiny, limits));
  t.end();
});

t.test('loadSegments copies file bytes, zeroes the rest of the pages, and checks bounds', (t) => {
  const tiny = fixture('tiny-exit7.elf');
  // A .bss: memsz 0x1800 past a 132-byte file image.
  const withBss = withU64(tiny, 64 + 40, 0x1800);
  const image = parseElf(withBss, limits);
  const memory = new Uint8Array(8 << 20).fill(0xaa);
  loadSegments(image, withBss, memory);
  t.same(memory.subarray(0x400000, 0x400000 + withBss.length), withBss, 'file bytes');
  t.ok(memory.subarray(0x400000 + withBss.length, 0x402000).every((b) => b === 0), '.bss and page tail zeroed');
  t.equal(memory[0x3fffff], 0xaa, 'memory below the image untouched');
  t.equal(memory[0x402000], 0xaa, 'memory above the image untouched');

  const err = elfError(t, () => loadSegments(image, withBss, new Uint8Array(0x401000)));
  t.equal(err?.code, 'TSKVM_ERR_ELF_TOO_LARGE');
  const short = elfError(t, () => loadSegments(image, withBss.subarray(0, 100), memory));
  t.equal(short?.code, 'TSKVM_ERR_ELF_SEGMENT_OUTSIDE_FILE');
  t.end();
});

/** PT_LOAD lines of `readelf -lW`: an independent reading of the same file. */
function readelfLoads(path: string): Array<{ offset: number; vaddr: number; filesz: number; memsz: number; flags: string }> {
  const out = execFileSync('readelf', ['-lW', path], { encoding: 'utf8' });
  const loads = [];
  for (const line of out.split('\n')) {
    const m = /^\s*LOAD\s+(0x\w+)\s+(0x\w+)\s+0x\w+\s+(0x\w+)\s+(0x\w+)\s+([RWE ]+?)\s+0x\w+\s*$/.exec(line);
    if (m) {
      loads.push({
        offset: Number(m[1]), vaddr: Number(m[2]), filesz: Number(m[3]), memsz: Number(m[4]),
        flags: m[5]!.replace(/ /g, ''),
      });
    }
  }
  return loads;
}

function checkRealProgram(t: Test, name: string, bytes: Uint8Array, kind: ElfImage['kind']): void {
  const image = parseElf(bytes, limits, name);
  t.equal(image.kind, kind, `${name} is ${kind}`);
  t.equal(image.base, kind === 'static-pie' ? limits.pieBase : 0);
  t.ok(image.segments.some((s) => s.executable && image.entry >= s.vaddr && image.entry < s.vaddr + s.memsz),
    'entry inside an executable segment');
  t.ok(image.start >= limits.minAddress && image.end <= limits.maxAddress, 'inside the limits');
  t.equal(image.brkStart % 4096, 0);
  t.equal(image.size, bytes.length);
  t.comment(`${name}: ${image.segments.map((s) =>
    `[0x${s.vaddr.toString(16)}+0x${s.memsz.toString(16)} ${s.readable ? 'r' : '-'}${s.writable ? 'w' : '-'}${s.executable ? 'x' : '-'}]`).join(' ')}` +
    ` entry 0x${image.entry.toString(16)} phdr 0x${image.phdrAddress.toString(16)}` +
    (image.tls ? ` tls ${image.tls.memsz}@0x${image.tls.vaddr.toString(16)}` : ''));

  const memory = new Uint8Array(limits.maxAddress);
  loadSegments(image, bytes, memory);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const phoff = Number(view.getBigUint64(32, true));
  const table = bytes.subarray(phoff, phoff + image.phnum * image.phentsize);
  t.same(memory.subarray(image.phdrAddress, image.phdrAddress + table.length), table,
    'AT_PHDR points at the program header table once loaded');
  t.equal(image.entry - image.base, Number(view.getBigUint64(24, true)), 'entry = e_entry + base');

  if (hasCommand('readelf')) {
    const dir = mkdtempSync(join(tmpdir(), 'tskvm-readelf-'));
    try {
      const path = join(dir, 'prog');
      execFileSync('sh', ['-c', 'cat > "$1"', 'sh', path], { input: bytes });
      const expected = readelfLoads(path).filter((l) => l.memsz > 0).map((l) => ({
        vaddr: l.vaddr + image.base, memsz: l.memsz, fileOffset: l.offset, filesz: l.filesz,
        readable: l.flags.includes('R'), writable: l.flags.includes('W'), executable: l.flags.includes('E'),
      }));
      t.same(image.segments, expected, 'segments agree with readelf');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

t.test('real static programs', (t) => {
  t.ok(hasCommand('gcc'), 'gcc is installed (needed to build test programs)');
  if (hasCommand('gcc')) {
    const glibcStatic = compileC('gcc', ['-static']);
    checkRealProgram(t, 'gcc -static', glibcStatic, 'static');
    t.not(parseElf(glibcStatic, limits).tls, null, 'glibc static programs have PT_TLS');
    checkRealProgram(t, 'gcc -static-pie', compileC('gcc', ['-static-pie']), 'static-pie');
    // A normal gcc build is dynamically linked: it names the system's loader.
    const dynamic = parseElf(compileC('gcc', []), limits);
    t.equal(dynamic.interpreter, '/lib64/ld-linux-x86-64.so.2');
    t.equal(dynamic.kind, 'static-pie', 'a PIE, ET_DYN');
  }
  if (hasCommand('musl-gcc')) {
    checkRealProgram(t, 'musl-gcc -static', compileC('musl-gcc', ['-static']), 'static');
  } else {
    t.comment('musl-gcc not installed (apt-get install musl-tools): musl not checked');
  }
  if (existsSync('/bin/busybox')) {
    const busybox = new Uint8Array(readFileSync('/bin/busybox'));
    const image = parseElf(busybox, limits);
    if (image.interpreter === null) checkRealProgram(t, '/bin/busybox', busybox, image.kind);
    else t.match(image.interpreter, /^\/lib/, '/bin/busybox is the dynamic build: it names its loader');
  } else {
    t.comment('/bin/busybox not present (apt-get install busybox-static): busybox not checked');
  }
  t.end();
});
