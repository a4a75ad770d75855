import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TskvmError } from '../src/errors.js';
import { loadSegments } from '../src/elf/load-elf.js';
import { parseElf, type ElfLimits } from '../src/elf/parse-elf.js';
import { mutatedElfs } from './helpers/elf-mutations.js';
import { compileC, hasCommand } from './helpers/elf-test-programs.js';

const limits: ElfLimits = { minAddress: 0x200000, maxAddress: 256 << 20, pieBase: 0x400000 };
const memory = new Uint8Array(limits.maxAddress);

/**
 * Every mutant must either parse into a plan that is safe to carry out (segments inside
 * the limits, entry in an executable segment, loadable without a host exception) or be
 * refused with a TSKVM_ERR_ELF_… error. Returns a histogram of the outcomes.
 */
function fuzz(t: Test, base: Uint8Array, count: number, seed: number): Map<string, number> {
  const outcomes = new Map<string, number>();
  const names = new Set<string>();
  let failures = 0;
  for (const { name, bytes } of mutatedElfs(base, count, seed)) {
    names.add(name);
    let outcome: string;
    try {
      const image = parseElf(bytes, limits, name);
      const problems: string[] = [];
      for (const s of image.segments) {
        if (!(s.vaddr >= limits.minAddress && s.vaddr + s.memsz <= limits.maxAddress)) problems.push('segment outside limits');
        if (!(s.fileOffset + s.filesz <= bytes.length || s.filesz === 0)) problems.push('segment outside file');
      }
      if (!image.segments.some((s) => s.executable && image.entry >= s.vaddr && image.entry < s.vaddr + s.memsz)) {
        problems.push('entry outside executable segments');
      }
      if (!(image.start >= limits.minAddress && image.end <= limits.maxAddress)) problems.push('image outside limits');
      if (![image.entry, image.phdrAddress, image.start, image.end].every(Number.isSafeInteger)) problems.push('non-integer address');
      loadSegments(image, bytes, memory);
      if (problems.length > 0) {
        failures++;
        if (failures <= 10) t.fail(`${name}: ${problems.join(', ')}`);
      }
      outcome = 'parsed';
    } catch (err) {
      if (err instanceof TskvmError && err.code.startsWith('TSKVM_ERR_ELF_')) {
        outcome = err.code;
      } else {
        failures++;
        if (failures <= 10) t.fail(`${name}: threw ${String(err)}`);
        outcome = 'BAD EXCEPTION';
      }
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  t.equal(failures, 0, `${count} mutants: parsed safely or refused with an ELF error`);
  t.equal(names.size, count, 'every mutant has a distinct name');
  t.comment([...outcomes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}: ${v}`).join('\n'));
  return outcomes;
}

t.test('mutants are deterministic', (t) => {
  const base = new Uint8Array(readFileSync(fileURLToPath(new URL('./fixtures/elf/tiny-exit7.elf', import.meta.url))));
  const first = [...mutatedElfs(base, 50, 7)];
  const second = [...mutatedElfs(base, 50, 7)];
  t.same(first.map((m) => m.name), second.map((m) => m.name));
  t.ok(first.every((m, i) => Buffer.compare(m.bytes, second[i]!.bytes) === 0), 'same bytes');
  t.ok(first.some((m, i) => m.name !== [...mutatedElfs(base, 50, 8)][i]!.name), 'another seed, other mutants');
  t.same(base, new Uint8Array(readFileSync(fileURLToPath(new URL('./fixtures/elf/tiny-exit7.elf', import.meta.url)))),
    'the base is not modified');
  t.end();
});

t.test('mutants of the tiny fixture', (t) => {
  const base = new Uint8Array(readFileSync(fileURLToPath(new URL('./fixtures/elf/tiny-exit7.elf', import.meta.url))));
  const outcomes = fuzz(t, base, 1000, 1);
  t.ok((outcomes.get('parsed') ?? 0) > 0, 'some mutants still parse');
  t.end();
});

t.test('mutants of a real gcc -static program', (t) => {
  t.ok(hasCommand('gcc'), 'gcc is installed (needed to build the fuzzing base)');
  if (!hasCommand('gcc')) return t.end();
  const outcomes = fuzz(t, compileC('gcc', ['-static']), 2000, 2);
  t.ok((outcomes.get('parsed') ?? 0) > 0, 'some mutants still parse');
  t.ok(outcomes.size >= 8, `mutants reach many checks (${outcomes.size} outcomes)`);
  t.end();
});

t.test('mutants of a real gcc -static-pie program', (t) => {
  if (!hasCommand('gcc')) return t.end();
  fuzz(t, compileC('gcc', ['-static-pie']), 500, 3);
  t.end();
});
