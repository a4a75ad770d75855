/*
 * compute — a deterministic 64 MiB computation: fills 16 Mi 32-bit words from a xorshift PRNG,
 * hashes them, radix-sorts them (with a second 64 MiB buffer), then prints the hashes before and
 * after sorting, whether the result is sorted, and its minimum, median and maximum.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORDS (16u * 1024 * 1024) /* 64 MiB of uint32_t */

static uint64_t hash(const uint32_t *w, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ w[i]) * 0x100000001b3ULL;
	return h;
}

/* LSD radix sort, 8 bits per pass; four passes leave the result back in `a`. */
static void radix_sort(uint32_t *a, uint32_t *tmp, size_t n)
{
	for (int shift = 0; shift < 32; shift += 8) {
		size_t count[257] = { 0 };
		for (size_t i = 0; i < n; i++)
			count[((a[i] >> shift) & 0xff) + 1]++;
		for (int b = 0; b < 256; b++)
			count[b + 1] += count[b];
		for (size_t i = 0; i < n; i++)
			tmp[count[(a[i] >> shift) & 0xff]++] = a[i];
		uint32_t *swap = a;
		a = tmp;
		tmp = swap;
	}
}

int main(void)
{
	uint32_t *a = malloc(WORDS * sizeof *a), *tmp = malloc(WORDS * sizeof *tmp);
	if (!a || !tmp) {
		printf("out of memory\n");
		return 1;
	}
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < WORDS; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		a[i] = x;
	}
	printf("filled %u words, hash %016llx\n", WORDS, (unsigned long long)hash(a, WORDS));
	radix_sort(a, tmp, WORDS);
	int sorted = 1;
	for (size_t i = 1; i < WORDS; i++)
		sorted &= a[i - 1] <= a[i];
	printf("sorted: %s, hash %016llx\n", sorted ? "yes" : "NO", (unsigned long long)hash(a, WORDS));
	printf("min %u median %u max %u\n", a[0], a[WORDS / 2], a[WORDS - 1]);
	free(a);
	free(tmp);
	return 0;
}
