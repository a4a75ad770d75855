/**
 * The stack a Linux process finds at its entry point: argc, argv, envp, the
 * auxiliary vector, and the strings they point to — laid out as Linux's exec
 * (`copy_strings` + `create_elf_tables` in fs/binfmt_elf.c) lays it out, because
 * C libraries walk it with exactly those assumptions.
 *
 *   stackTop ──►  8 zero bytes            (Linux leaves the top word NULL)
 *                 execfn "\0"             ◄── AT_EXECFN
 *                 envp strings            envp[0] lowest
 *                 argv strings            argv[0] lowest
 *                 (down to 16)
 *                 "x86_64\0"              ◄── AT_PLATFORM
 *                 16 random bytes         ◄── AT_RANDOM (seeds the stack protector and pointer guard)
 *                 (padding)
 *                 auxv pairs … AT_NULL, 0
 *                 NULL, envp[envc-1] … envp[0]
 *                 NULL, argv[argc-1] … argv[0]
 *   sp ──────►    argc                    sp % 16 == 0 (the x86-64 process entry ABI)
 *
 * The padding sits above the auxv, as in Linux: the table block from argc to
 * AT_NULL is contiguous and its start is rounded down to 16.
 */
import { TskvmError } from '../errors.js';
import type { ElfImage } from './parse-elf.js';

export const AT = {
  NULL: 0, PHDR: 3, PHENT: 4, PHNUM: 5, PAGESZ: 6, BASE: 7, FLAGS: 8, ENTRY: 9, UID: 11, EUID: 12,
  GID: 13, EGID: 14, PLATFORM: 15, HWCAP: 16, CLKTCK: 17, SECURE: 23, RANDOM: 25, HWCAP2: 26,
  SYSINFO_EHDR: 33, EXECFN: 31, MINSIGSTKSZ: 51,
} as const;

export interface InitialStackInput {
  /** One past the highest stack byte; 16-byte aligned. */
  stackTop: number;
  argv: string[];
  envp: string[];
  /** The path the program was started as (AT_EXECFN); usually argv[0]. */
  execfn: string;
  /** 16 bytes for AT_RANDOM. */
  random: Uint8Array;
  /** Every entry except AT_PLATFORM, AT_RANDOM, AT_EXECFN (added here) and AT_NULL. */
  auxv: Array<[number, number]>;
}

/** Linux caps argv + envp at a quarter of the stack rlimit (8 MiB by default): 2 MiB. */
export const MAX_ARGS_BYTES = 2 << 20;
const PLATFORM = 'x86_64';
const RANDOM_BYTES = 16;
const WORD = 8;

const utf8 = new TextEncoder();

/** Builds the entry stack; the returned bytes occupy [sp, stackTop) in guest memory. */
export function buildInitialStack(input: InitialStackInput): { sp: number; bytes: Uint8Array } {
  const { stackTop, argv, envp, execfn, random, auxv } = input;
  checkInput(input);

  const argvStrings = argv.map((s) => utf8.encode(s));
  const envpStrings = envp.map((s) => utf8.encode(s));
  const execfnString = utf8.encode(execfn);
  const stringBytes = (list: Uint8Array[]): number => list.reduce((sum, s) => sum + s.length + 1, 0);
  // Linux counts the pointers too when it enforces the limit.
  const argsBytes = stringBytes(argvStrings) + stringBytes(envpStrings) + execfnString.length + 1 +
    WORD * (argv.length + envp.length + 2);
  if (argsBytes > MAX_ARGS_BYTES) {
    throw new TskvmError('TSKVM_ERR_ARGS_TOO_LARGE',
      `the program's arguments and environment take ${argsBytes} bytes, more than the ` +
      `${MAX_ARGS_BYTES} bytes Linux allows; pass large data through a file or stdin instead`,
      { bytes: argsBytes, limit: MAX_ARGS_BYTES, argc: argv.length, envc: envp.length });
  }

  // Addresses first (top down), then one buffer for [sp, stackTop).
  let p = stackTop - WORD;
  p -= execfnString.length + 1;
  const execfnAddress = p;
  const place = (strings: Uint8Array[]): number[] => {
    p -= stringBytes(strings);
    const addresses: number[] = [];
    let at = p;
    for (const s of strings) {
      addresses.push(at);
      at += s.length + 1;
    }
    return addresses;
  };
  const envpAddresses = place(envpStrings);
  const argvAddresses = place(argvStrings);
  p -= p % 16;
  p -= PLATFORM.length + 1;
  const platformAddress = p;
  p -= RANDOM_BYTES;
  const randomAddress = p;

  const fullAuxv: Array<[number, number]> = [
    ...auxv,
    [AT.RANDOM, randomAddress],
    [AT.EXECFN, execfnAddress],
    [AT.PLATFORM, platformAddress],
    [AT.NULL, 0],
  ];
  const tableWords = 1 + (argv.length + 1) + (envp.length + 1) + 2 * fullAuxv.length;
  let sp = p - tableWords * WORD;
  sp -= sp % 16;
  if (sp < 0) {
    throw new TskvmError('TSKVM_ERR_ARGS_TOO_LARGE',
      `the initial stack (${stackTop - sp} bytes) does not fit below the stack top 0x${stackTop.toString(16)}`,
      { stackTop });
  }

  const bytes = new Uint8Array(stackTop - sp);
  const view = new DataView(bytes.buffer);
  const putString = (address: number, s: Uint8Array): void => bytes.set(s, address - sp); // NUL: already 0
  const words: number[] = [
    argv.length,
    ...argvAddresses, 0,
    ...envpAddresses, 0,
    ...fullAuxv.flat(),
  ];
  words.forEach((word, i) => view.setBigUint64(i * WORD, BigInt(word), true));
  bytes.set(random, randomAddress - sp);
  putString(platformAddress, utf8.encode(PLATFORM));
  argvStrings.forEach((s, i) => putString(argvAddresses[i]!, s));
  envpStrings.forEach((s, i) => putString(envpAddresses[i]!, s));
  putString(execfnAddress, execfnString);
  return { sp, bytes };
}

function checkInput({ stackTop, argv, envp, execfn, random, auxv }: InitialStackInput): void {
  const invalid = (message: string, details: Record<string, unknown> = {}): never => {
    throw new TskvmError('TSKVM_ERR_ARGS_INVALID', message, details);
  };
  if (!Number.isSafeInteger(stackTop) || stackTop <= 0 || stackTop % 16 !== 0) {
    invalid(`the stack top must be a positive 16-byte-aligned address (got ${stackTop})`, { stackTop });
  }
  if (random.length !== RANDOM_BYTES) {
    invalid(`AT_RANDOM needs exactly ${RANDOM_BYTES} random bytes (got ${random.length})`);
  }
  // A C string ends at its first NUL: an embedded one would silently cut the value.
  const named: Array<[string, string]> = [
    ...argv.map((s, i): [string, string] => [`argv[${i}]`, s]),
    ...envp.map((s, i): [string, string] => [`envp[${i}]`, s]),
    ['execfn', execfn],
  ];
  for (const [name, value] of named) {
    if (value.includes('\0')) {
      invalid(`${name} contains a NUL character, which a C program cannot see past; remove it`, { name });
    }
  }
  const added = new Set<number>([AT.NULL, AT.PLATFORM, AT.RANDOM, AT.EXECFN]);
  for (const [type, value] of auxv) {
    if (added.has(type)) invalid(`auxv entry ${type} is added by buildInitialStack; leave it out`, { type });
    if (!Number.isSafeInteger(type) || type < 0 || !Number.isSafeInteger(value) || value < 0) {
      invalid(`auxv entry [${type}, ${value}] is not a pair of unsigned integers`, { type, value });
    }
  }
}

/**
 * The XSAVE area size (CPUID 0xD.0 EBX) of x87, SSE, AVX, the MPX slots, AVX-512 and
 * PKRU in the standard layout: the largest a guest without AMX can use.
 */
export const XSAVE_BYTES_AVX512 = 2696;

/**
 * AT_MINSIGSTKSZ: the worst-case signal frame, sized the way Linux sizes it
 * (init_sigframe_size in arch/x86/kernel/signal.c) for a 64-bit frame — rt_sigframe
 * (440 bytes), frame alignment (15), the XSAVE buffer and its 4-byte FP_XSTATE_MAGIC2,
 * XSAVE alignment (63), rounded up to 16. (Linux also leaves room for 32-bit frames;
 * tskvm guests are 64-bit only.) glibc derives sysconf(_SC_MINSIGSTKSZ) and
 * _SC_SIGSTKSZ from it, so an understated value would let programs size alternate
 * signal stacks that a signal frame overflows.
 */
export function linuxMinSigStackSize(xsaveBytes: number): number {
  const worstCase = 440 + 15 + xsaveBytes + 4 + 63;
  return Math.ceil(worstCase / 16) * 16;
}

export interface AuxvOptions {
  /** AT_HWCAP2 (bit 1: FSGSBASE usable from user mode). Default 0. */
  hwcap2?: number;
  /** AT_MINSIGSTKSZ. Default: `linuxMinSigStackSize(XSAVE_BYTES_AVX512)`. */
  minSigStackSize?: number;
  /** AT_SYSINFO_EHDR: where the vDSO's ELF image is. Default: none (libc then makes real syscalls). */
  vdso?: number;
  /** AT_BASE: where the dynamic loader was placed, for a dynamically linked program. Default 0 (none). */
  interpreterBase?: number;
}

/**
 * The auxiliary vector Linux gives a program, in Linux's order, minus the
 * entries `buildInitialStack` adds (AT_RANDOM, AT_EXECFN, AT_PLATFORM).
 * `hwcap` is CPUID.1:EDX of the guest's CPU, as Linux reports it.
 */
export function standardAuxv(image: ElfImage, hwcap: number, options: AuxvOptions = {}): Array<[number, number]> {
  return [
    ...(options.vdso === undefined ? [] : [[AT.SYSINFO_EHDR, options.vdso] as [number, number]]),
    [AT.MINSIGSTKSZ, options.minSigStackSize ?? linuxMinSigStackSize(XSAVE_BYTES_AVX512)],
    [AT.HWCAP, hwcap],
    [AT.PAGESZ, 4096],
    [AT.CLKTCK, 100],
    [AT.PHDR, image.phdrAddress],
    [AT.PHENT, image.phentsize],
    [AT.PHNUM, image.phnum],
    [AT.BASE, options.interpreterBase ?? 0],
    [AT.FLAGS, 0],
    [AT.ENTRY, image.entry],
    [AT.UID, 0],
    [AT.EUID, 0],
    [AT.GID, 0],
    [AT.EGID, 0],
    [AT.SECURE, 0],
    [AT.HWCAP2, options.hwcap2 ?? 0],
  ];
}
