/*
 * memtouch [MIB] [PASSES] — writes every byte of MIB MiB (default 64) in a loop, PASSES times
 * (default 3), each pass a different pattern, then prints a checksum of the final contents.
 * Measures first-touch and re-touch memory cost. Used by benchmarks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 64;
	int passes = argc > 2 ? atoi(argv[2]) : 3;
	size_t size = mib * 1024 * 1024;
	unsigned char *p = malloc(size ? size : 1);
	if (!p) {
		printf("memtouch: cannot allocate %zu MiB\n", mib);
		return 1;
	}
	for (int pass = 0; pass < passes; pass++) {
		for (size_t i = 0; i < size; i++)
			p[i] = (unsigned char)(i * 31 + pass);
		__asm__ volatile("" : : "r"(p) : "memory"); /* keep every pass: no dead-store elimination */
	}
	uint64_t sum = 0;
	for (size_t i = 0; i < size; i++) {
		sum = (sum ^ p[i]) * 0x100000001b3ULL;
		sum ^= sum >> 29;
	}
	printf("memtouch: %zu MiB, %d passes, checksum %016llx\n", mib, passes, (unsigned long long)sum);
	free(p);
	return 0;
}
