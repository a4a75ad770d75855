/**
 * The KVM userspace ABI for x86-64, written once: ioctl numbers, capabilities,
 * exit reasons and the byte layout of every structure tskvm exchanges with the
 * kernel. Each layout names the C struct of <linux/kvm.h> it mirrors;
 * test/kvm-abi.test.ts compiles a C program against the real header and checks
 * every number and offset here.
 *
 * How running a VM goes (Documentation/virt/kvm/api.rst):
 *   1. open /dev/kvm                         → system fd   (system.ts)
 *   2. KVM_CREATE_VM                          → VM fd       (vm.ts)
 *   3. KVM_SET_USER_MEMORY_REGION             guest RAM = a host mapping
 *   4. KVM_CREATE_VCPU                        → vCPU fd     (vcpu.ts)
 *   5. mmap the vCPU fd                       → the shared `kvm_run` page
 *   6. KVM_SET_CPUID2, KVM_SET_SREGS, KVM_SET_MSRS, registers
 *   7. loop: KVM_RUN; look at kvm_run.exit_reason; emulate; repeat
 */

// ioctl number encoding (asm-generic/ioctl.h): dir<<30 | size<<16 | type<<8 | nr
const KVMIO = 0xae;
const io = (nr: number): number => (KVMIO << 8) | nr;
const iow = (nr: number, size: number): number => ((1 << 30) | (size << 16) | (KVMIO << 8) | nr) >>> 0;
const ior = (nr: number, size: number): number => ((2 << 30) | (size << 16) | (KVMIO << 8) | nr) >>> 0;
const iowr = (nr: number, size: number): number => ((3 << 30) | (size << 16) | (KVMIO << 8) | nr) >>> 0;

export const KVM_API_VERSION = 12;

export const ioctls = {
  // system fd
  KVM_GET_API_VERSION: io(0x00),
  KVM_CREATE_VM: io(0x01),
  KVM_CHECK_EXTENSION: io(0x03),
  KVM_GET_VCPU_MMAP_SIZE: io(0x04),
  KVM_GET_SUPPORTED_CPUID: iowr(0x05, 8),
  // VM fd
  KVM_CREATE_VCPU: io(0x41),
  KVM_GET_DIRTY_LOG: iow(0x42, 16),
  KVM_SET_USER_MEMORY_REGION: iow(0x46, 32),
  KVM_ENABLE_CAP: iow(0xa3, 104),
  KVM_CLEAR_DIRTY_LOG: iowr(0xc0, 24),
  KVM_GET_CLOCK: ior(0x7c, 48),
  // vCPU fd
  KVM_RUN: io(0x80),
  KVM_GET_REGS: ior(0x81, 144),
  KVM_SET_REGS: iow(0x82, 144),
  KVM_GET_SREGS: ior(0x83, 312),
  KVM_SET_SREGS: iow(0x84, 312),
  KVM_GET_MSRS: iowr(0x88, 8),
  KVM_SET_MSRS: iow(0x89, 8),
  KVM_SET_SIGNAL_MASK: iow(0x8b, 4),
  KVM_SET_CPUID2: iow(0x90, 8),
  KVM_GET_XSAVE: ior(0xa4, 4096),
  KVM_SET_XSAVE: iow(0xa5, 4096),
  KVM_SET_XCRS: iow(0xa7, 392),
} as const;

/** struct kvm_xsave { u32 region[1024]; }: the FPU/SSE/AVX state in XSAVE layout. */
export const XSAVE_SIZE = 4096;

export type IoctlName = keyof typeof ioctls;

export const caps = {
  KVM_CAP_USER_MEMORY: 3,
  KVM_CAP_EXT_CPUID: 7,
  KVM_CAP_NR_MEMSLOTS: 10,
  KVM_CAP_XCRS: 56,
  KVM_CAP_SYNC_REGS: 74,
  KVM_CAP_IMMEDIATE_EXIT: 136,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: 168,
} as const;

export const exitReasons: Record<number, string> = {
  0: 'UNKNOWN', 1: 'EXCEPTION', 2: 'IO', 3: 'HYPERCALL', 4: 'DEBUG', 5: 'HLT', 6: 'MMIO',
  7: 'IRQ_WINDOW_OPEN', 8: 'SHUTDOWN', 9: 'FAIL_ENTRY', 10: 'INTR', 17: 'INTERNAL_ERROR',
  24: 'SYSTEM_EVENT',
};
export const KVM_EXIT_IO = 2;
/** kvm_run.io.direction of an `out` (an `in` is 0). */
export const KVM_EXIT_IO_OUT = 1;
export const KVM_EXIT_HLT = 5;
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_SHUTDOWN = 8;
export const KVM_EXIT_FAIL_ENTRY = 9;
export const KVM_EXIT_INTR = 10;
export const KVM_EXIT_INTERNAL_ERROR = 17;

export const KVM_SYNC_X86_REGS = 1;
export const KVM_SYNC_X86_SREGS = 2;
export const KVM_MEM_LOG_DIRTY_PAGES = 1;

/** struct kvm_userspace_memory_region { u32 slot; u32 flags; u64 guest_phys_addr; u64 memory_size; u64 userspace_addr; } */
export const memoryRegion = { size: 32, slot: 0, flags: 4, guestPhysAddr: 8, memorySize: 16, userspaceAddr: 24 } as const;

/**
 * struct kvm_regs: 18 × u64 in this order. Indices (not byte offsets), so a
 * Uint32Array over the block reads register i as words 2i (low) and 2i+1 (high).
 */
export const regIndex = {
  rax: 0, rbx: 1, rcx: 2, rdx: 3, rsi: 4, rdi: 5, rsp: 6, rbp: 7,
  r8: 8, r9: 9, r10: 10, r11: 11, r12: 12, r13: 13, r14: 14, r15: 15, rip: 16, rflags: 17,
} as const;
export type RegName = keyof typeof regIndex;
export const REGS_SIZE = 144;

/**
 * struct kvm_segment { u64 base; u32 limit; u16 selector; u8 type, present, dpl, db, s, l, g, avl, unusable, padding; } — 24 bytes
 */
export const segment = {
  size: 24, base: 0, limit: 8, selector: 12, type: 14, present: 15, dpl: 16, db: 17, s: 18, l: 19, g: 20, avl: 21, unusable: 22,
} as const;

/**
 * struct kvm_sregs { kvm_segment cs, ds, es, fs, gs, ss, tr, ldt; kvm_dtable gdt, idt;
 *   u64 cr0, cr2, cr3, cr4, cr8, efer, apic_base; u64 interrupt_bitmap[4]; } — 312 bytes
 * struct kvm_dtable { u64 base; u16 limit; u16 padding[3]; } — 16 bytes
 */
export const sregs = {
  size: 312,
  cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168,
  gdt: 192, idt: 208, // dtable: base @+0 (u64), limit @+8 (u16)
  cr0: 224, cr2: 232, cr3: 240, cr4: 248, cr8: 256, efer: 264, apicBase: 272, interruptBitmap: 280,
} as const;

/**
 * struct kvm_run (the page shared with the kernel, mmap'd from the vCPU fd):
 *   u8 request_interrupt_window @0; u8 immediate_exit @1; u32 exit_reason @8;
 *   exit union @32 (256 bytes); u64 kvm_valid_regs @288; u64 kvm_dirty_regs @296;
 *   union { struct kvm_sync_regs { kvm_regs regs @304; kvm_sregs sregs @448; kvm_vcpu_events events @760; } } s @304
 */
export const run = {
  immediateExit: 1,
  exitReason: 8,
  // exit union @32, by exit reason:
  io: { direction: 32, size: 33, port: 34, count: 36, dataOffset: 40 }, // KVM_EXIT_IO
  mmio: { physAddr: 32, data: 40, len: 48, isWrite: 52 },             // KVM_EXIT_MMIO
  failEntry: { hardwareEntryFailureReason: 32, cpu: 40 },             // KVM_EXIT_FAIL_ENTRY
  internal: { suberror: 32, ndata: 36, data: 40 },                    // KVM_EXIT_INTERNAL_ERROR
  kvmValidRegs: 288,
  kvmDirtyRegs: 296,
  syncRegs: 304,
  syncSregs: 448,
} as const;

/** struct kvm_cpuid_entry2 { u32 function, index, flags, eax, ebx, ecx, edx; u32 padding[3]; } — 40 bytes, after struct kvm_cpuid2 { u32 nent; u32 padding; } */
export const cpuid = { headerSize: 8, entrySize: 40, function: 0, index: 4, flags: 8, eax: 12, ebx: 16, ecx: 20, edx: 24 } as const;

/** struct kvm_msrs { u32 nmsrs; u32 pad; struct kvm_msr_entry { u32 index; u32 reserved; u64 data; } entries[]; } */
export const msrs = { headerSize: 8, entrySize: 16, index: 0, data: 8 } as const;

/** struct kvm_xcrs { u32 nr_xcrs; u32 flags; struct kvm_xcr { u32 xcr; u32 reserved; u64 value; } xcrs[16]; u64 padding[16]; } */
export const xcrs = { size: 392, nrXcrs: 0, xcrs: 8, entrySize: 16, xcr: 0, value: 8 } as const;

/** struct kvm_dirty_log { u32 slot; u32 padding; void *dirty_bitmap; } */
export const dirtyLog = { size: 16, slot: 0, bitmap: 8 } as const;

/** struct kvm_clear_dirty_log { u32 slot; u32 num_pages; u64 first_page; void *dirty_bitmap; } */
export const clearDirtyLog = { size: 24, slot: 0, numPages: 4, firstPage: 8, bitmap: 16 } as const;

/** struct kvm_enable_cap { u32 cap; u32 flags; u64 args[4]; u8 pad[64]; } */
export const enableCap = { size: 104, cap: 0, flags: 4, args: 8 } as const;
export const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1;

/** struct kvm_signal_mask { u32 len; u8 sigset[]; } */
export const signalMask = { len: 0, sigset: 4 } as const;

/** struct kvm_clock_data { u64 clock; u32 flags; u32 pad0; u64 realtime; u64 host_tsc; u32 pad[4]; }: the VM's kvmclock now. */
export const clockData = { size: 48, clock: 0 } as const;

export const MSR = {
  STAR: 0xc0000081,
  LSTAR: 0xc0000082,
  CSTAR: 0xc0000083,
  SFMASK: 0xc0000084,
  FS_BASE: 0xc0000100,
  GS_BASE: 0xc0000101,
  KERNEL_GS_BASE: 0xc0000102,
  /** kvmclock: KVM keeps a pvclock_vcpu_time_info at this guest address (bit 0: enabled). */
  KVM_SYSTEM_TIME_NEW: 0x4b564d01,
} as const;
