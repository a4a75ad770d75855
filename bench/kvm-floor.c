/*
 * kvm-floor — the bare KVM exit floor, measured without tskvm: a C program sets up
 * a long-mode ring-3 guest the same way tskvm does (identity-mapped 2 MiB pages,
 * Linux GDT selectors, a TSS whose I/O bitmap opens port 0) and times N round
 * trips of a guest `out %eax, $0` loop. bench/core.mjs prints its result beside
 * tskvm's own floor, so the cost of the TypeScript stack is the difference.
 *
 *   gcc -O2 -o kvm-floor kvm-floor.c && ./kvm-floor 20000   → microseconds per exit
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#define MEM (4ul << 20)
#define DIE(what) do { perror(what); exit(1); } while (0)

static double now_us(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 20000;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) DIE("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	uint8_t *m = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t *pml4 = (uint64_t *)(m + 0x8000), *pdpt = (uint64_t *)(m + 0x9000), *pd = (uint64_t *)(m + 0xa000);
	pml4[0] = 0x9000 | 7;
	pdpt[0] = 0xa000 | 7;
	pd[0] = 0x0 | 0x87; /* 0-2 MiB: system pages (supervisor use only in this probe) */
	pd[1] = 0x200000 | 0x87; /* 2-4 MiB: user code */
	uint64_t *gdt = (uint64_t *)(m + 0x1000);
	gdt[2] = 0x00af9b000000ffffull; gdt[3] = 0x00cf93000000ffffull;
	gdt[5] = 0x00cff3000000ffffull; gdt[6] = 0x00affb000000ffffull;
	uint64_t tss = 0x2000, limit = 0x68 + 32;
	gdt[8] = limit | ((tss & 0xffffff) << 16) | (0x8bull << 40);
	*(uint16_t *)(m + tss + 0x66) = 0x68;
	memset(m + tss + 0x68, 0xff, 33);
	m[tss + 0x68] = 0xf0; /* ports 0-3 open for a 32-bit out to port 0 */
	const uint8_t code[] = { 0xe7, 0x00, 0xeb, 0xfc }; /* 1: out %eax, $0; jmp 1b */
	memcpy(m + 0x200000, code, sizeof code);
	struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = MEM, .userspace_addr = (uint64_t)m };
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) DIE("KVM_SET_USER_MEMORY_REGION");
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	struct kvm_run *run = mmap(NULL, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	struct { struct kvm_cpuid2 h; struct kvm_cpuid_entry2 e[256]; } cpuid = { .h.nent = 256 };
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0 || ioctl(vcpu, KVM_SET_CPUID2, &cpuid) < 0) DIE("CPUID");
	struct kvm_sregs s;
	ioctl(vcpu, KVM_GET_SREGS, &s);
	struct kvm_segment cs = { .limit = 0xffffffff, .selector = 0x33, .type = 11, .present = 1, .dpl = 3, .s = 1, .l = 1, .g = 1 };
	struct kvm_segment ds = { .limit = 0xffffffff, .selector = 0x2b, .type = 3, .present = 1, .dpl = 3, .db = 1, .s = 1, .g = 1 };
	struct kvm_segment tr = { .base = tss, .limit = limit, .selector = 0x40, .type = 11, .present = 1 };
	s.cs = cs; s.ds = s.es = s.fs = s.gs = s.ss = ds; s.tr = tr;
	s.gdt.base = 0x1000; s.gdt.limit = 10 * 8 - 1;
	s.cr3 = 0x8000; s.cr4 = 0x20 | 0x200 | 0x400; s.cr0 = 0x80050033; s.efer = 0x501;
	if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0) DIE("KVM_SET_SREGS");
	struct kvm_regs regs = { .rip = 0x200000, .rsp = 0x300000, .rflags = 2 };
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) DIE("KVM_SET_REGS");
	for (int i = 0; i < 100; i++) ioctl(vcpu, KVM_RUN, 0);
	if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0) { fprintf(stderr, "unexpected exit %u\n", run->exit_reason); return 1; }
	double t0 = now_us();
	for (long i = 0; i < n; i++) ioctl(vcpu, KVM_RUN, 0);
	printf("%.3f\n", (now_us() - t0) / n);
	return 0;
}
