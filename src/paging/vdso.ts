/**
 * tskvm's vDSO: a tiny ELF shared object that libc finds through AT_SYSINFO_EHDR, as on Linux, and
 * whose clock_gettime / gettimeofday / time read the clock without a guest exit. On this platform an
 * exit costs tens of µs, and programs read the clock often (Lua seeds every new interpreter with
 * time(); loggers stamp every line).
 *
 * How the clock works: the host points the vCPU's kvmclock (MSR_KVM_SYSTEM_TIME_NEW, set with
 * KVM_SET_MSRS: the guest runs in ring 3 and could not) at the vvar page, and KVM keeps a
 * pvclock_vcpu_time_info there: a (TSC, ns) pair and the TSC's rate. The guest reads the TSC with
 * rdtsc and scales it (vdso.S). The host adds, per VM, the offsets from the VM's kvmclock to its own
 * CLOCK_REALTIME and CLOCK_MONOTONIC (guest-clock.ts), so both paths, vDSO and syscall, tell the same
 * time.
 *
 *   VVAR_ADDR  (user read-only)  pvclock | seq | realtime offset | monotonic offset   (see vdso.S)
 *                                … at 0x100: vcpuid, vcpureqid (u32 each; GS base points there)
 *   VDSO_ADDR  (user read+exec)  the ELF image below: linked at 0, the code at 0x300
 *
 * The image, built once: ELF header, two program headers (PT_LOAD over the page, PT_DYNAMIC), a SysV
 * hash table with one bucket, the symbols, their names, their versions (all LINUX_2.6, as Linux's:
 * Go's runtime reads the version definitions without checking they exist) and the dynamic section.
 * No section headers. The dynamic segment is read-only (no PF_W), which tells glibc not to relocate
 * it in place.
 */
import { PAGE, VDSO_ADDR, VVAR_ADDR } from './layout.js';

/**
 * vvar page offsets: the clock (vdso.S), and the vCPU's identity, which the guest API's vcpuid() and
 * vcpureqid() read at %gs:0 and %gs:4 (GS base starts at VCPU_INFO_ADDR in every process).
 */
export const VVAR = { pvclock: 0x00, seq: 0x40, realtimeOffset: 0x48, monotonicOffset: 0x50, vcpuId: 0x100, requestVmId: 0x104 } as const;
/** Where GS base points when a program starts: the vCPU's identity in its own VM's vvar page. */
export const VCPU_INFO_ADDR = VVAR_ADDR + VVAR.vcpuId;

/** The code assembled from vdso.S, from offset 0x300 of the image. */
const CODE_AT = 0x300;
const CODE = Buffer.from(
  '448b1539edffff448b1df2ecffff0faee80f3148c1e2204809d0482b05e7ecffff0fbe0df4ecffff85c9780548d3e0eb' +
  '05f7d948d3e88b15dcecffff48f7e2480facd020480305c5ecffff4c8d0daeecffff4b030401443b1da3ecffff75a144' +
  '3b15daecffff759841f7c301000000758fc366662e0f1f8400000000000f1f0083ff01741683ff06741185ff741583ff' +
  '057410b8e40000000f05c341b850000000eb0641b848000000e852ffffff31d2b900ca9a3b48f7f14889064889560831' +
  'c0c366662e0f1f8400000000000f1f004885ff742941b848000000e820ffffff31d2b900ca9a3b48f7f14889074889d0' +
  '31d2b9e803000048f7f1488947084885f6740748c7060000000031c0c30f1f0041b848000000e8e5feffff31d2b900ca' +
  '9a3b48f7f14885ff7403488907c3',
  'hex',
);
export const VDSO_CODE_FOR_TEST = { at: CODE_AT, bytes: CODE };

/** Exported functions: name, offset in the image, size (the labels of vdso.S). */
const SYMBOLS: Array<[string, number, number]> = [
  ['__vdso_clock_gettime', 0x380, 0x42],
  ['__vdso_gettimeofday', 0x3d0, 0x3d],
  ['__vdso_time', 0x410, 0x1e],
];
const SONAME = 'linux-vdso.so.1';
/** The version Linux gives its x86-64 vDSO's symbols, which libcs and Go's runtime ask for. */
const VERSION = 'LINUX_2.6';

const HASH_AT = 0x100;
const DYNSYM_AT = 0x140;
const VERSYM_AT = 0x120;
const DYNSTR_AT = 0x1a0;
const DYNAMIC_AT = 0x200;
const VERDEF_AT = 0x2a0;
const VERDEF_SIZE = 20, VERDAUX_SIZE = 8;
const SYM_SIZE = 24;
const DYN_SIZE = 16;

// ELF constants (elf.h)
const ET_DYN = 3;
const EM_X86_64 = 62;
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PF_X = 1;
const PF_R = 4;
const DT = { NULL: 0, HASH: 4, STRTAB: 5, SYMTAB: 6, STRSZ: 10, SYMENT: 11, SONAME: 14, VERSYM: 0x6ffffff0, VERDEF: 0x6ffffffc, VERDEFNUM: 0x6ffffffd } as const;
const VER_FLG_BASE = 1;

/** The SysV ELF hash (elf.h's), which a version definition carries of its name. */
function elfHash(name: string): number {
  let h = 0;
  for (const c of Buffer.from(name)) {
    h = ((h << 4) + c) >>> 0;
    const g = h & 0xf000_0000;
    if (g) h ^= g >>> 24;
    h = (h & ~g) >>> 0;
  }
  return h;
}
const STB_GLOBAL_STT_FUNC = 0x12;

let image: Buffer | null = null;

/** The vDSO image (one page), built on first use. */
export function vdsoImage(): Buffer {
  if (image) return image;
  const b = Buffer.alloc(PAGE);
  // ELF header
  b.set([0x7f, 0x45, 0x4c, 0x46, 2 /* 64-bit */, 1 /* little-endian */, 1 /* version */], 0);
  b.writeUInt16LE(ET_DYN, 16);
  b.writeUInt16LE(EM_X86_64, 18);
  b.writeUInt32LE(1, 20); // e_version
  b.writeBigUInt64LE(64n, 32); // e_phoff
  b.writeUInt16LE(64, 52); // e_ehsize
  b.writeUInt16LE(56, 54); // e_phentsize
  b.writeUInt16LE(2, 56); // e_phnum
  b.writeUInt16LE(64, 58); // e_shentsize (no section headers)
  const phdr = (at: number, type: number, flags: number, offset: number, size: number, align: number): void => {
    b.writeUInt32LE(type, at);
    b.writeUInt32LE(flags, at + 4);
    b.writeBigUInt64LE(BigInt(offset), at + 8); // p_offset
    b.writeBigUInt64LE(BigInt(offset), at + 16); // p_vaddr
    b.writeBigUInt64LE(BigInt(offset), at + 24); // p_paddr
    b.writeBigUInt64LE(BigInt(size), at + 32); // p_filesz
    b.writeBigUInt64LE(BigInt(size), at + 40); // p_memsz
    b.writeBigUInt64LE(BigInt(align), at + 48);
  };
  const dynamic: Array<[number, number]> = [];
  // names
  let strtab = '\0';
  const nameAt = (name: string): number => {
    const at = strtab.length;
    strtab += name + '\0';
    return at;
  };
  // symbols: index 0 is the null symbol
  SYMBOLS.forEach(([name, value, size], i) => {
    const at = DYNSYM_AT + (i + 1) * SYM_SIZE;
    b.writeUInt32LE(nameAt(name), at);
    b[at + 4] = STB_GLOBAL_STT_FUNC;
    b.writeUInt16LE(1, at + 6); // st_shndx: defined (not SHN_UNDEF, not SHN_ABS: the load address is added)
    b.writeBigUInt64LE(BigInt(value), at + 8);
    b.writeBigUInt64LE(BigInt(size), at + 16);
  });
  const soname = nameAt(SONAME);
  const version = nameAt(VERSION);
  b.write(strtab, DYNSTR_AT, 'latin1');
  // Versions: definition 1 is the object itself (the base), 2 is LINUX_2.6, every symbol's.
  [[VER_FLG_BASE, 1, SONAME, soname], [0, 2, VERSION, version]].forEach(([flags, ndx, name, nameOffset], i) => {
    const at = VERDEF_AT + i * (VERDEF_SIZE + VERDAUX_SIZE);
    b.writeUInt16LE(1, at); // vd_version
    b.writeUInt16LE(flags as number, at + 2);
    b.writeUInt16LE(ndx as number, at + 4);
    b.writeUInt16LE(1, at + 6); // vd_cnt
    b.writeUInt32LE(elfHash(name as string), at + 8);
    b.writeUInt32LE(VERDEF_SIZE, at + 12); // vd_aux
    b.writeUInt32LE(i === 0 ? VERDEF_SIZE + VERDAUX_SIZE : 0, at + 16); // vd_next
    b.writeUInt32LE(nameOffset as number, at + VERDEF_SIZE); // vda_name
  });
  SYMBOLS.forEach((_, i) => b.writeUInt16LE(2, VERSYM_AT + (i + 1) * 2));
  // SysV hash: one bucket holding symbol 1, each chained to the next
  const nsyms = SYMBOLS.length + 1;
  const hash = [1, nsyms, 1, 0, ...SYMBOLS.map((_, i) => (i + 2 < nsyms ? i + 2 : 0))];
  hash.forEach((word, i) => b.writeUInt32LE(word, HASH_AT + 4 * i));
  dynamic.push([DT.HASH, HASH_AT], [DT.STRTAB, DYNSTR_AT], [DT.SYMTAB, DYNSYM_AT], [DT.STRSZ, strtab.length],
    [DT.SYMENT, SYM_SIZE], [DT.SONAME, soname], [DT.VERSYM, VERSYM_AT], [DT.VERDEF, VERDEF_AT], [DT.VERDEFNUM, 2], [DT.NULL, 0]);
  dynamic.forEach(([tag, value], i) => {
    b.writeBigUInt64LE(BigInt(tag), DYNAMIC_AT + i * DYN_SIZE);
    b.writeBigUInt64LE(BigInt(value), DYNAMIC_AT + i * DYN_SIZE + 8);
  });
  phdr(64, PT_LOAD, PF_R | PF_X, 0, PAGE, PAGE);
  phdr(64 + 56, PT_DYNAMIC, PF_R, DYNAMIC_AT, dynamic.length * DYN_SIZE, 8);
  b.set(CODE, CODE_AT);
  image = b;
  return b;
}

/** Writes the vDSO image into guest memory at VDSO_ADDR. */
export function writeVdso(memory: Uint8Array): void {
  memory.set(vdsoImage(), VDSO_ADDR);
}
