/*
 * hypercall [N] — makes the sys_is_debug API hypercall (`out %eax, $0` with eax = 0x7FDEB, see
 * docs/GUEST_ABI.md) N times (default 100000) and prints the sum of its results: the cost of one guest →
 * host exit, for benchmarks. Only runs under tskvm; natively `out` from user mode is SIGSEGV.
 */
#include <stdio.h>
#include <stdlib.h>

static long is_debug(void)
{
	long r;
	__asm__ volatile("out %%eax, $0" : "=a"(r) : "a"(0x7FDEBL) : "memory");
	return r;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000, sum = 0;
	for (long i = 0; i < n; i++)
		sum += is_debug();
	printf("hypercall: %ld calls, sum %ld\n", n, sum);
	return 0;
}
