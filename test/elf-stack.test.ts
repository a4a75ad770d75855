import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TskvmError } from '../src/errors.js';
import {
  AT, buildInitialStack, linuxMinSigStackSize, MAX_ARGS_BYTES, standardAuxv, XSAVE_BYTES_AVX512,
  type InitialStackInput,
} from '../src/elf/initial-stack.js';
import { parseElf } from '../src/elf/parse-elf.js';

const limits = { minAddress: 0x200000, maxAddress: 256 << 20, pieBase: 0x400000 };
const image = parseElf(
  new Uint8Array(readFileSync(fileURLToPath(new URL('./fixtures/elf/tiny-exit7.elf', import.meta.url)))), limits);
const STACK_TOP = 0x0fff0000;
const RANDOM = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads the stack back the way a C library's _start does. */
function decode(stackTop: number, { sp, bytes }: { sp: number; bytes: Uint8Array }) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const inStack = (address: number): boolean => address >= sp && address < stackTop;
  const word = (address: number): number => {
    if (!inStack(address) || address + 8 > stackTop) throw new Error(`word at 0x${address.toString(16)} is outside the stack`);
    return Number(view.getBigUint64(address - sp, true));
  };
  const string = (address: number): string => {
    if (!inStack(address)) throw new Error(`string at 0x${address.toString(16)} is outside the stack`);
    const end = bytes.indexOf(0, address - sp);
    if (end < 0) throw new Error('unterminated string');
    return utf8.decode(bytes.subarray(address - sp, end));
  };
  let at = sp;
  const argc = word(at);
  at += 8;
  const argvPointers: number[] = [];
  for (let i = 0; i < argc; i++, at += 8) argvPointers.push(word(at));
  const argvEnd = word(at);
  at += 8;
  const envpPointers: number[] = [];
  for (; word(at) !== 0; at += 8) envpPointers.push(word(at));
  at += 8;
  const auxv: Array<[number, number]> = [];
  for (;;) {
    const pair: [number, number] = [word(at), word(at + 8)];
    auxv.push(pair);
    at += 16;
    if (pair[0] === AT.NULL) break;
  }
  return {
    argc, argvEnd, argvPointers, envpPointers, auxv, auxvEnd: at,
    argv: argvPointers.map(string), envp: envpPointers.map(string),
    aux: new Map(auxv), string,
    bytesAt: (address: number, n: number) => bytes.subarray(address - sp, address - sp + n),
  };
}

function input(overrides: Partial<InitialStackInput> = {}): InitialStackInput {
  return {
    stackTop: STACK_TOP,
    argv: ['/bin/prog', 'a', 'héllo ✓'],
    envp: ['HOME=/', 'LANG=C.UTF-8'],
    execfn: '/bin/prog',
    random: RANDOM,
    auxv: standardAuxv(image, 0x178bfbff),
    ...overrides,
  };
}

t.test('argc, argv, envp and auxv decode back', (t) => {
  const stack = buildInitialStack(input());
  const d = decode(STACK_TOP, stack);
  t.equal(stack.sp % 16, 0, 'sp is 16-byte aligned');
  t.equal(stack.sp + stack.bytes.length, STACK_TOP, 'bytes occupy [sp, stackTop)');
  t.equal(d.argc, 3);
  t.same(d.argv, ['/bin/prog', 'a', 'héllo ✓'], 'argv strings, UTF-8');
  t.equal(d.argvEnd, 0, 'argv is NULL-terminated');
  t.same(d.envp, ['HOME=/', 'LANG=C.UTF-8']);

  t.same(d.bytesAt(d.aux.get(AT.RANDOM)!, 16), RANDOM, 'AT_RANDOM points at the 16 random bytes');
  t.equal(d.string(d.aux.get(AT.EXECFN)!), '/bin/prog', 'AT_EXECFN');
  t.equal(d.string(d.aux.get(AT.PLATFORM)!), 'x86_64', 'AT_PLATFORM');
  t.equal(d.aux.get(AT.PHDR), image.phdrAddress);
  t.equal(d.aux.get(AT.PHENT), 56);
  t.equal(d.aux.get(AT.PHNUM), 1);
  t.equal(d.aux.get(AT.ENTRY), image.entry);
  t.equal(d.aux.get(AT.PAGESZ), 4096);
  t.equal(d.aux.get(AT.HWCAP), 0x178bfbff);
  t.same(d.auxv[d.auxv.length - 1], [AT.NULL, 0], 'auxv ends with AT_NULL');
  t.equal(d.auxv.filter(([type]) => type === AT.NULL).length, 1);

  // Linux's layout: execfn highest, under the NULL top word; then envp strings, argv strings.
  t.equal(d.aux.get(AT.EXECFN), STACK_TOP - 8 - '/bin/prog'.length - 1);
  t.ok(d.bytesAt(STACK_TOP - 8, 8).every((b) => b === 0), 'top word is zero');
  t.ok(d.envpPointers[0]! > d.argvPointers[2]!, 'envp strings above argv strings');
  t.ok(d.argvPointers[0]! < d.argvPointers[1]! && d.argvPointers[1]! < d.argvPointers[2]!, 'argv[0] lowest');
  t.ok(d.aux.get(AT.PLATFORM)! < d.argvPointers[0]!, 'platform string below the argument strings');
  t.equal(d.aux.get(AT.RANDOM)! + 16, d.aux.get(AT.PLATFORM), 'random bytes right below the platform string');
  t.ok(d.auxvEnd <= d.aux.get(AT.RANDOM)!, 'tables end below the random bytes');
  t.ok(d.aux.get(AT.RANDOM)! - d.auxvEnd < 16, 'padding is less than 16 bytes');
  t.end();
});

t.test('sp is 16-byte aligned for every table parity and string length', (t) => {
  let checked = 0;
  for (let argc = 0; argc <= 5; argc++) {
    for (let envc = 0; envc <= 4; envc++) {
      for (let len = 0; len <= 17; len++) {
        const argv = Array.from({ length: argc }, (_, i) => 'x'.repeat(len + i));
        const envp = Array.from({ length: envc }, (_, i) => `V${i}=${'y'.repeat(len)}`);
        const stack = buildInitialStack(input({ argv, envp, execfn: 'e'.repeat(len) }));
        const d = decode(STACK_TOP, stack);
        if (stack.sp % 16 !== 0 || d.argc !== argc || d.argv.join() !== argv.join() || d.envp.join() !== envp.join()) {
          t.fail(`argc ${argc} envc ${envc} len ${len}`);
        }
        checked++;
      }
    }
  }
  t.pass(`${checked} layouts aligned and decoded`);
  t.end();
});

t.test('empty argv and envp', (t) => {
  const d = decode(STACK_TOP, buildInitialStack(input({ argv: [], envp: [] })));
  t.equal(d.argc, 0);
  t.same(d.envp, []);
  t.equal(d.string(d.aux.get(AT.EXECFN)!), '/bin/prog');
  t.end();
});

t.test('arguments larger than 2 MiB are refused', (t) => {
  const code = (fn: () => unknown): string | undefined => {
    try {
      fn();
    } catch (err) {
      t.ok(err instanceof TskvmError, 'a TskvmError');
      return (err as TskvmError).code;
    }
    return undefined;
  };
  t.equal(code(() => buildInitialStack(input({ argv: ['p', 'x'.repeat(MAX_ARGS_BYTES)] }))), 'TSKVM_ERR_ARGS_TOO_LARGE');
  t.equal(code(() => buildInitialStack(input({ envp: Array.from({ length: 100_000 }, (_, i) => `VARIABLE_${i}=1`) }))),
    'TSKVM_ERR_ARGS_TOO_LARGE', 'many small strings add up (pointers count too)');
  // UTF-8 bytes count, not UTF-16 code units: 700k three-byte characters are 2.1 MB.
  t.equal(code(() => buildInitialStack(input({ argv: ['✓'.repeat(700_000)] }))), 'TSKVM_ERR_ARGS_TOO_LARGE');
  const big = 'x'.repeat(MAX_ARGS_BYTES - 4096);
  const d = decode(STACK_TOP, buildInitialStack(input({ argv: [big], envp: [] })));
  t.equal(d.argv[0]!.length, big.length, 'just under the limit is fine');
  t.equal(code(() => buildInitialStack(input({ stackTop: 0x10000, argv: [big] }))), 'TSKVM_ERR_ARGS_TOO_LARGE',
    'stack top too low for the arguments');
  t.end();
});

t.test('invalid input is refused', (t) => {
  const code = (overrides: Partial<InitialStackInput>): string | undefined => {
    try {
      buildInitialStack(input(overrides));
    } catch (err) {
      return (err as TskvmError).code;
    }
    return undefined;
  };
  t.equal(code({ argv: ['a\0b'] }), 'TSKVM_ERR_ARGS_INVALID', 'NUL inside an argument');
  t.equal(code({ envp: ['A=\0'] }), 'TSKVM_ERR_ARGS_INVALID', 'NUL inside an environment string');
  t.equal(code({ random: new Uint8Array(8) }), 'TSKVM_ERR_ARGS_INVALID', 'AT_RANDOM needs 16 bytes');
  t.equal(code({ stackTop: STACK_TOP + 8 }), 'TSKVM_ERR_ARGS_INVALID', 'misaligned stack top');
  t.equal(code({ auxv: [[AT.RANDOM, 1]] }), 'TSKVM_ERR_ARGS_INVALID', 'AT_RANDOM is added by buildInitialStack');
  t.equal(code({ auxv: [[AT.HWCAP, -1]] }), 'TSKVM_ERR_ARGS_INVALID', 'negative auxv value');
  t.end();
});

t.test('standardAuxv', (t) => {
  const auxv = standardAuxv(image, 0x1234);
  t.same(auxv.map(([type]) => type), [
    AT.MINSIGSTKSZ, AT.HWCAP, AT.PAGESZ, AT.CLKTCK, AT.PHDR, AT.PHENT, AT.PHNUM, AT.BASE, AT.FLAGS,
    AT.ENTRY, AT.UID, AT.EUID, AT.GID, AT.EGID, AT.SECURE, AT.HWCAP2,
  ], "Linux's order");
  const aux = new Map(auxv);
  t.equal(aux.get(AT.BASE), 0, 'no interpreter');
  t.equal(aux.get(AT.CLKTCK), 100);
  t.equal(aux.get(AT.SECURE), 0);
  t.equal(aux.get(AT.HWCAP2), 0);
  t.equal(aux.get(AT.MINSIGSTKSZ), linuxMinSigStackSize(XSAVE_BYTES_AVX512));
  const custom = new Map(standardAuxv(image, 0, { hwcap2: 2, minSigStackSize: 8192 }));
  t.equal(custom.get(AT.HWCAP2), 2);
  t.equal(custom.get(AT.MINSIGSTKSZ), 8192);
  // Above glibc's own estimate from CPUID (448 + 15 rounded to 16, + 48, + xsave, + 4)
  // and 16-byte aligned, as Linux reports it.
  for (const xsave of [512 + 64, 832, XSAVE_BYTES_AVX512, 11008]) {
    const size = linuxMinSigStackSize(xsave);
    t.ok(size % 16 === 0 && size >= 512 + xsave + 4, `AT_MINSIGSTKSZ for a ${xsave}-byte XSAVE area: ${size}`);
  }
  t.end();
});
