/*
 * sysregs — what a `syscall` leaves in the registers. The Linux ABI: rax holds the result, rcx and
 * r11 are clobbered, every other register and the flags (DF and CF included) are as they were.
 * Under tskvm the path differs by KVM (on hardware the LSTAR stub returns with sysretq, which takes
 * rip from rcx and rflags from r11; on PVM with jmp *%rcx), and the output must be the native one.
 *
 * Prints one line per register or flag; the exit status is the number of differences.
 */
#include <stdint.h>
#include <stdio.h>

/* probe(in, out): loads rbx rdx rsi rdi r8 r9 r10 r12 r13 r14 r15 rbp from in[0..11], sets DF and CF,
 * runs getpid, and stores the same registers and rflags into out[0..12]. */
void probe(const uint64_t *in, uint64_t *out);
__asm__(
	".text\n.globl probe\n.type probe,@function\nprobe:\n"
	"pushq %rbx\npushq %rbp\npushq %r12\npushq %r13\npushq %r14\npushq %r15\n"
	"pushq %rsi\n"
	"movq %rdi, %rax\n"
	"movq 0(%rax), %rbx\nmovq 8(%rax), %rdx\nmovq 16(%rax), %rsi\nmovq 24(%rax), %rdi\n"
	"movq 32(%rax), %r8\nmovq 40(%rax), %r9\nmovq 48(%rax), %r10\nmovq 56(%rax), %r12\n"
	"movq 64(%rax), %r13\nmovq 72(%rax), %r14\nmovq 80(%rax), %r15\nmovq 88(%rax), %rbp\n"
	"movl $39, %eax\n" /* getpid */
	"std\nstc\n"
	"syscall\n"
	"pushfq\ncld\n"
	"pushq %rbp\npushq %r15\npushq %r14\npushq %r13\npushq %r12\npushq %r10\npushq %r9\npushq %r8\n"
	"pushq %rdi\npushq %rsi\npushq %rdx\npushq %rbx\n"
	"movq 104(%rsp), %rax\n" /* out, pushed before the 13 slots above */
	"xorl %ecx, %ecx\n"
	"1: popq %rdx\nmovq %rdx, (%rax,%rcx,8)\nincl %ecx\ncmpl $13, %ecx\njne 1b\n"
	"popq %rsi\n"
	"popq %r15\npopq %r14\npopq %r13\npopq %r12\npopq %rbp\npopq %rbx\n"
	"ret\n");

int main(void) {
	static const char *names[12] = { "rbx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r12", "r13", "r14", "r15", "rbp" };
	uint64_t in[12], out[13];
	for (int i = 0; i < 12; i++) in[i] = 0x0123456789abcdefull ^ ((uint64_t)(i + 1) * 0x1111111111111111ull);
	int differences = 0;
	for (int round = 0; round < 3; round++) { /* again from the same site: on PVM a rewritten one */
		probe(in, out);
		for (int i = 0; i < 12; i++) {
			if (out[i] != in[i]) differences++;
			if (round == 0 || out[i] != in[i]) printf("round %d %s %s\n", round, names[i], out[i] == in[i] ? "kept" : "CHANGED");
		}
		int df = (out[12] >> 10) & 1, cf = out[12] & 1;
		if (!df || !cf) differences++;
		printf("round %d DF %d CF %d\n", round, df, cf);
	}
	return differences;
}
