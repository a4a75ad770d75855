/**
 * The initial CPU state of a tskvm guest: 64-bit long mode, paging on, already
 * in ring 3 at the program's entry point. No guest kernel boots: the vCPU is
 * created in the state Linux would leave a process in at execve().
 */
import { MSR, segment as seg, sregs as sl } from './kvm/abi.js';
import type { Kvm } from './kvm/system.js';
import type { Vcpu } from './kvm/vcpu.js';
import type { CpuControl } from '../syscalls/process.js';
import { GDT_ADDR, IDT_ADDR, PML4_ADDR, TSS_ADDR } from '../paging/layout.js';
import { GDT_LIMIT, IDT_LIMIT, SELECTOR, STAR_VALUE, TSS_LIMIT } from '../paging/descriptors.js';
import { SYSCALL_ENTRY, type SyscallEntryKind } from '../paging/stubs.js';
import { VCPU_INFO_ADDR } from '../paging/vdso.js';
import { contextSwitch } from './thread-context.js';

const CR0_PE = 1n, CR0_MP = 2n, CR0_ET = 0x10n, CR0_NE = 0x20n, CR0_WP = 0x10000n, CR0_AM = 0x40000n, CR0_PG = 0x8000_0000n;
const CR4_PAE = 0x20n, CR4_OSFXSR = 0x200n, CR4_OSXMMEXCPT = 0x400n, CR4_UMIP = 0x800n, CR4_SMEP = 0x10_0000n, CR4_FSGSBASE = 0x10000n, CR4_OSXSAVE = 0x40000n, CR4_SMAP = 0x20_0000n;
const EFER_SCE = 1n, EFER_LME = 0x100n, EFER_LMA = 0x400n, EFER_NXE = 0x800n;
/** XCR0 components we let the guest use: x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM). */
const XCR0_WANTED = 0x1n | 0x2n | 0x4n | 0x20n | 0x40n | 0x80n;
const RFLAGS_RESERVED = 0x2;

export interface EntryState {
  rip: number;
  rsp: number;
}

/** Segment types of a 64-bit TSS: what a loaded TR is on real CPUs (busy), and the one QEMU's emulator needs. */
export const TR_BUSY = 11;
export const TR_AVAILABLE = 9;
export type TaskRegisterType = typeof TR_BUSY | typeof TR_AVAILABLE;

/** What the platform probe decided about a vCPU's set-up (platform.ts). */
export interface VcpuChoice {
  syscallEntry: SyscallEntryKind;
  taskRegister: TaskRegisterType;
}

/** A flat 64-bit segment descriptor (code or data, of privilege `dpl`) into a kvm_sregs buffer at `at`. */
export function writeSegment(b: Buffer, at: number, selector: number, code: boolean, dpl: number): void {
  b.writeBigUInt64LE(0n, at + seg.base);
  b.writeUInt32LE(0xffffffff, at + seg.limit);
  b.writeUInt16LE(selector, at + seg.selector);
  b[at + seg.type] = code ? 11 : 3; // execute/read accessed, or read/write accessed
  b[at + seg.present] = 1;
  b[at + seg.dpl] = dpl;
  b[at + seg.db] = code ? 0 : 1;
  b[at + seg.s] = 1;
  b[at + seg.l] = code ? 1 : 0;
  b[at + seg.g] = 1;
  b[at + seg.avl] = 0;
  b[at + seg.unusable] = 0;
}

/** CS and SS of ring 3, the only ones a process runs with: at the start, and back from an exception or signal frame. */
export function userSegments(s: Buffer): Buffer {
  writeSegment(s, sl.cs, SELECTOR.USER_CS, true, 3);
  writeSegment(s, sl.ss, SELECTOR.USER_DS, false, 3);
  return s;
}

/** XCR0 bits the host supports among those we want (CPUID leaf 0xD, subleaf 0): what every guest gets. */
export function supportedXcr0(kvm: Kvm): bigint {
  const [eax, , , edx] = kvm.cpuidLeaf(0xd, 0);
  return (BigInt(eax) | (BigInt(edx) << 32n)) & XCR0_WANTED;
}

/**
 * RDFSBASE/WRFSBASE in ring 3 (CPUID.7.0:EBX bit 0), which Linux gives every process on CPUs that have
 * them. tskvm turns CR4.FSGSBASE on where the CPU has them, as Linux does, and the request entry stub
 * uses them to put the segment bases back (stubs.ts).
 */
function hasFsgsbase(kvm: Kvm): boolean {
  return (kvm.cpuidLeaf(7, 0)[1] & 1) !== 0;
}

/** No-execute pages (CPUID.80000001h:EDX bit 20): with it EFER.NXE is set and the page tables use NX. */
/**
 * CR4 bits that take from ring 0 what it never needs, where the CPU has them: UMIP (sgdt, sidt, sldt,
 * smsw and str fault in ring 3, so a guest cannot learn where the descriptor tables are; Linux
 * emulates them for processes instead), SMAP (ring-0 code cannot read or write user pages: the stubs
 * never do) and, where the syscall entry is in ring 0, SMEP (ring 0 cannot run a user page: all
 * ring-0 stubs are in a supervisor page). With PVM's entry the LSTAR stub runs in ring 3 and SMEP is
 * left to PVM, whose shadow paging keeps guest kernel and user apart on its own.
 */
function hardening(kvm: Kvm, syscallEntry: SyscallEntryKind): bigint {
  const [, ebx, ecx] = kvm.cpuidLeaf(7, 0);
  return (ecx & (1 << 2) ? CR4_UMIP : 0n) | (ebx & (1 << 20) ? CR4_SMAP : 0n)
    | (syscallEntry === 'ring0-sysret' && ebx & (1 << 7) ? CR4_SMEP : 0n);
}

export function hasNx(kvm: Kvm): boolean {
  return (kvm.cpuidLeaf(0x8000_0001, 0)[3] & (1 << 20)) !== 0;
}

export function configureVcpu(vcpu: Vcpu, kvm: Kvm, entry: EntryState, choice: VcpuChoice): void {
  const cpuid2 = kvm.supportedCpuid();
  vcpu.setCpuid(cpuid2);
  const xcr0 = supportedXcr0(kvm);

  const s = userSegments(vcpu.getSregs());
  for (const at of [sl.ds, sl.es, sl.fs, sl.gs]) writeSegment(s, at, 0, false, 3);
  s.fill(0, sl.tr, sl.tr + seg.size);
  s.writeBigUInt64LE(BigInt(TSS_ADDR), sl.tr + seg.base);
  s.writeUInt32LE(TSS_LIMIT, sl.tr + seg.limit);
  s.writeUInt16LE(SELECTOR.TSS, sl.tr + seg.selector);
  s[sl.tr + seg.present] = 1;
  setTaskRegisterType(s, choice.taskRegister);
  s.writeBigUInt64LE(BigInt(GDT_ADDR), sl.gdt);
  s.writeUInt16LE(GDT_LIMIT, sl.gdt + 8);
  s.writeBigUInt64LE(BigInt(IDT_ADDR), sl.idt);
  s.writeUInt16LE(IDT_LIMIT, sl.idt + 8);
  s.writeBigUInt64LE(CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG, sl.cr0);
  s.writeBigUInt64LE(BigInt(PML4_ADDR), sl.cr3);
  s.writeBigUInt64LE(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | (xcr0 ? CR4_OSXSAVE : 0n) | (hasFsgsbase(kvm) ? CR4_FSGSBASE : 0n) | hardening(kvm, choice.syscallEntry), sl.cr4);
  s.writeBigUInt64LE(EFER_SCE | EFER_LME | EFER_LMA | (hasNx(kvm) ? EFER_NXE : 0n), sl.efer);
  vcpu.setSregs(s);
  // With CR4.OSXSAVE set, the guest's libc sees AVX in CPUID and uses it; XCR0 must enable it.
  if (xcr0) vcpu.setXcr0(xcr0);

  vcpu.setMsrs(guestMsrs(choice.syscallEntry, 0, VCPU_INFO_ADDR));
  vcpu.setRegs({ rip: entry.rip, rsp: entry.rsp, rflags: RFLAGS_RESERVED });
}

/**
 * Every MSR tskvm gives a guest its value in, but kvmclock's (guest-clock.ts): the syscall entry
 * (STAR, LSTAR, SFMASK) and the segment bases. A request VM starts with them; its reset restores the
 * bases (request-vm.ts), the only ones ring 3 can change.
 */
export function guestMsrs(syscallEntry: SyscallEntryKind, fsBase: number, gsBase: number): Array<[number, number | bigint]> {
  return [
    [MSR.STAR, STAR_VALUE],
    [MSR.LSTAR, SYSCALL_ENTRY[syscallEntry]],
    [MSR.SFMASK, 0],
    [MSR.FS_BASE, fsBase],
    [MSR.GS_BASE, gsBase],
    [MSR.KERNEL_GS_BASE, 0],
  ];
}

/**
 * KVM reports TR as busy whatever it was loaded with (AMD's VMCB does not keep
 * the bit), so segment state read back from a vCPU is given the platform's
 * type again before another vCPU is loaded with it.
 */
export function setTaskRegisterType(sregs: Buffer, type: TaskRegisterType): Buffer {
  sregs[sl.tr + seg.type] = type;
  return sregs;
}

/** The segment selector CS held at the last exit (its low 2 bits are the privilege level). */
export function currentCs(vcpu: Vcpu): number {
  return vcpu.getSregs().readUInt16LE(sl.cs + seg.selector);
}

/** The narrow control over the vCPU that syscall and hypercall handlers get (Process.cpu). */
export function cpuControl(vcpu: Vcpu, choice: VcpuChoice): CpuControl {
  return {
    ...contextSwitch(vcpu, choice),
    setFsBase: (v) => vcpu.setMsrs([[MSR.FS_BASE, v]]),
    setGsBase: (v) => vcpu.setMsrs([[MSR.GS_BASE, v]]),
    setRdx: (v) => vcpu.set('rdx', v),
    flushTranslations: () => vcpu.vm.flushTranslations(),
    stackPointer: () => vcpu.get('rsp'),
  };
}
