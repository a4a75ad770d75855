/*
 * heap — grows and shrinks the heap every way a libc program does and prints what it saw:
 * raw brk up and down; ~256 MiB of small malloc blocks (filled, checked for overlap, freed in an
 * interleaved order); 16 × 16 MiB blocks (mmap'ed by malloc) touched on every page; calloc zeroing;
 * realloc growth from 1 byte to 64 MiB keeping contents; and explicit mmap, MAP_FIXED, mprotect,
 * mremap (grow with MREMAP_MAYMOVE, shrink) and munmap. Output is counts and checksums only.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MiB (1024 * 1024UL)
#define PAGE 4096UL

/* FNV-1a over whole words, fast enough for hundreds of MiB; the shift mixes high bits into low
 * ones, which plain FNV over regular patterns leaves unchanged. */
static uint64_t hash_words(uint64_t h, const void *p, size_t bytes)
{
	const uint64_t *w = p;
	for (size_t i = 0; i < bytes / 8; i++) {
		h = (h ^ w[i]) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h;
}
#define HASH_INIT 0xcbf29ce484222325ULL

static int all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

static void fill_pattern(void *p, size_t bytes, uint64_t seed)
{
	uint64_t *w = p;
	for (size_t i = 0; i < bytes / 8; i++)
		w[i] = (seed + i) * 0x9e3779b97f4a7c15ULL;
}

/* brk through the raw syscall (musl's sbrk(n) and brk() always fail with ENOMEM). Runs before
 * anything calls malloc, and puts the break back where it found it. */
static void test_brk(char *result, size_t size)
{
	uintptr_t start = syscall(SYS_brk, 0);
	uintptr_t grown = syscall(SYS_brk, start + 4 * MiB);
	int grow_ok = grown == start + 4 * MiB, touch_ok = 0;
	if (grow_ok) {
		memset((void *)start, 0xab, 4 * MiB);
		touch_ok = all_bytes((void *)start, 4 * MiB, 0xab);
	}
	uintptr_t shrunk = syscall(SYS_brk, start);
	uintptr_t asked_below = syscall(SYS_brk, 4096); /* refused: the break stays put */
	snprintf(result, size, "brk: grow %s, touch %s, shrink %s, below start refused %s",
	         grow_ok ? "ok" : "FAILED", touch_ok ? "ok" : "FAILED", shrunk == start ? "ok" : "FAILED",
	         asked_below == start ? "ok" : "FAILED");
}

static void test_small_blocks(void)
{
	enum { MAX_BLOCKS = 2 * 1024 * 1024 };
	unsigned char **blocks = malloc(MAX_BLOCKS * sizeof *blocks);
	size_t *sizes = malloc(MAX_BLOCKS * sizeof *sizes);
	size_t n = 0, total = 0, bad = 0;
	while (total < 256 * MiB && n < MAX_BLOCKS) {
		size_t size = 16 + (n * 37) % 481; /* 16..496 bytes, 256 on average */
		if (!(blocks[n] = malloc(size)))
			break;
		memset(blocks[n], (unsigned char)n, size);
		sizes[n++] = size;
		total += size;
	}
	for (size_t i = 0; i < n; i++) /* an overlap would have overwritten some block's bytes */
		bad += !all_bytes(blocks[i], sizes[i], (unsigned char)i);
	for (size_t i = 0; i < n; i += 2)
		free(blocks[i]);
	for (size_t i = 1; i < n; i += 2)
		free(blocks[i]);
	printf("small blocks: %zu blocks, %zu MiB, corrupted %zu\n", n, total / MiB, bad);
	free(blocks);
	free(sizes);
}

static void test_large_blocks(void)
{
	enum { COUNT = 16 };
	unsigned char *blocks[COUNT];
	uint64_t h = HASH_INIT;
	int got = 0;
	for (int i = 0; i < COUNT; i++) {
		if (!(blocks[i] = malloc(16 * MiB)))
			break;
		got++;
		for (size_t off = 0; off < 16 * MiB; off += PAGE)
			*(uint64_t *)(blocks[i] + off) = i * 100000 + off / PAGE;
	}
	for (int i = 0; i < got; i++)
		for (size_t off = 0; off < 16 * MiB; off += PAGE)
			h = hash_words(h, blocks[i] + off, 8);
	for (int i = 0; i < got; i++)
		free(blocks[i]);
	printf("large blocks: %d x 16 MiB, page hash %016llx\n", got, (unsigned long long)h);

	unsigned char *z = calloc(64, MiB);
	printf("calloc 64 MiB: %s\n", !z ? "NULL" : all_bytes(z, 64 * MiB, 0) ? "all zero" : "NOT ZERO");
	free(z);
}

static void test_realloc(void)
{
	size_t size = 1, steps = 0, kept = 1;
	unsigned char *p = malloc(size);
	p[0] = 0x5a;
	while (size < 64 * MiB) {
		size_t old = size;
		size *= 2;
		unsigned char *q = realloc(p, size);
		if (!q)
			break;
		p = q;
		steps++;
		kept &= p[0] == 0x5a && (old == 1 || p[old - 1] == (unsigned char)(old - 1));
		for (size_t i = old; i < size; i++)
			p[i] = (unsigned char)i;
	}
	uint64_t h = hash_words(HASH_INIT, p, size);
	kept &= p[size - 1] == (unsigned char)(size - 1);
	p = realloc(p, 4096); /* shrinking keeps the head */
	kept &= p[0] == 0x5a && p[4095] == 0xff;
	free(p);
	printf("realloc: %zu doublings to %zu MiB, contents kept %s, hash %016llx\n", steps, size / MiB,
	       kept ? "yes" : "NO", (unsigned long long)h);
}

static void test_mmap(void)
{
	size_t size = 8 * MiB;
	unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		printf("mmap 8 MiB: FAILED\n");
		return;
	}
	printf("mmap 8 MiB: zero-filled %s\n", all_bytes(p, size, 0) ? "yes" : "NO");
	fill_pattern(p, size, 1);
	printf("mmap filled: hash %016llx\n", (unsigned long long)hash_words(HASH_INIT, p, size));

	int r1 = mprotect(p, MiB, PROT_READ);
	uint64_t ro = hash_words(HASH_INIT, p, MiB); /* still readable */
	int r2 = mprotect(p, MiB, PROT_READ | PROT_WRITE);
	p[0] ^= 1;
	p[0] ^= 1;
	printf("mprotect: read-only %d, read-write %d, read while read-only: %016llx\n", r1, r2,
	       (unsigned long long)ro);

	void *f = mmap(p + 2 * MiB, MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	printf("MAP_FIXED over the middle: same address %s, zero-filled %s, rest kept %s\n",
	       f == p + 2 * MiB ? "yes" : "NO", all_bytes(p + 2 * MiB, MiB, 0) ? "yes" : "NO",
	       p[3 * MiB] != 0 || p[3 * MiB + 1] != 0 ? "yes" : "NO");

	uint64_t before = hash_words(HASH_INIT, p, size);
	unsigned char *g = mremap(p, size, 32 * MiB, MREMAP_MAYMOVE);
	if (g == MAP_FAILED) {
		printf("mremap grow: FAILED\n");
		munmap(p, size);
		return;
	}
	int kept = hash_words(HASH_INIT, g, size) == before;
	int zero = all_bytes(g + size, 32 * MiB - size, 0);
	fill_pattern(g + size, 32 * MiB - size, 2);
	printf("mremap grow to 32 MiB: contents kept %s, new part zero %s, hash %016llx\n", kept ? "yes" : "NO",
	       zero ? "yes" : "NO", (unsigned long long)hash_words(HASH_INIT, g, 32 * MiB));

	unsigned char *s = mremap(g, 32 * MiB, 4 * MiB, 0);
	printf("mremap shrink to 4 MiB: in place %s, hash %016llx\n", s == g ? "yes" : "NO",
	       (unsigned long long)hash_words(HASH_INIT, s, 4 * MiB));
	printf("munmap: %d\n", munmap(s, 4 * MiB));
}

int main(void)
{
	char brk_result[160];
	test_brk(brk_result, sizeof brk_result);
	printf("%s\n", brk_result);
	test_small_blocks();
	test_large_blocks();
	test_realloc();
	test_mmap();
	return 0;
}
