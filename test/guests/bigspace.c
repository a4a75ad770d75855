/*
 * bigspace MODE — memory far above 4 GiB, for a sparse address space (test/bigspace.test.ts).
 *   far      maps, fills and reads back pages at 8, 40 and 63 GiB (MAP_FIXED_NOREPLACE), moves data
 *            between them through a pipe, grows one with mremap, unmaps one and maps it again (zero),
 *            and takes 100 MiB from malloc; prints what it read. Natively the same.
 *   spread N maps one page in each of N different GiBs from 8 GiB up; prints how many worked.
 *   wild     writes to 20 GiB without mapping it first (natively: SIGSEGV).
 *   hint     asks for 64 MiB at 0xc000000000 as Go's heap does (a hint, PROT_NONE, then mprotect),
 *            uses it, gives some back and takes it again (zero); and 2 MiB of code at 0xd000000000
 *            (PROT_EXEC), run. In a VM: with remappings there (--remap).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GiB (1ULL << 30)

static unsigned char *map_at(uint64_t addr, size_t len)
{
	void *p = mmap((void *)addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED) {
		printf("mmap at %llu GiB: %s\n", (unsigned long long)(addr / GiB), strerror(errno));
		exit(1);
	}
	if ((uint64_t)p != addr) {
		printf("mmap at %llu GiB: got another address\n", (unsigned long long)(addr / GiB));
		exit(1);
	}
	return p;
}

static uint64_t checksum(const unsigned char *p, size_t len)
{
	uint64_t sum = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++) sum = (sum ^ p[i]) * 1099511628211ULL;
	return sum;
}

static int far(void)
{
	const size_t len = 1 << 20;
	uint64_t places[] = { 8 * GiB, 40 * GiB, 63 * GiB };
	for (int i = 0; i < 3; i++) {
		unsigned char *p = map_at(places[i], len);
		int zero = 1;
		for (size_t j = 0; j < len; j++) zero &= p[j] == 0;
		for (size_t j = 0; j < len; j++) p[j] = (unsigned char)(j * 7 + i);
		printf("%llu GiB: fresh %s, checksum %016llx\n", (unsigned long long)(places[i] / GiB), zero ? "zero" : "NOT ZERO",
		       (unsigned long long)checksum(p, len));
	}
	/* The kernel (the host, in a VM) reads from and writes to the far pages. */
	int fds[2];
	if (pipe(fds) != 0) return 1;
	unsigned char *a = (unsigned char *)(8 * GiB), *b = (unsigned char *)(40 * GiB);
	static const char text[] = "through a pipe from 8 GiB to 40 GiB";
	memcpy(a, text, sizeof text);
	if (write(fds[1], a, sizeof text) != (ssize_t)sizeof text) return 1;
	if (read(fds[0], b + 100, sizeof text) != (ssize_t)sizeof text) return 1;
	printf("read at 40 GiB: %s\n", (char *)b + 100);

	/* mremap in place and moved. */
	unsigned char *c = (unsigned char *)(63 * GiB);
	unsigned char *grown = mremap(c, len, 4 * len, 0);
	if (grown == MAP_FAILED) printf("mremap in place: %s\n", strerror(errno));
	else {
		memset(grown + len, 0xab, 3 * len);
		printf("grown in place, checksum %016llx\n", (unsigned long long)checksum(grown, 4 * len));
	}

	/* Unmapped and mapped again: zero. */
	if (munmap(b, len) != 0) return 1;
	b = map_at(40 * GiB, len);
	printf("40 GiB again: %s\n", checksum(b, len) == checksum((unsigned char *)calloc(1, len), len) ? "zero" : "NOT ZERO");

	unsigned char *big = malloc(100 << 20);
	if (!big) return 1;
	memset(big, 0x5a, 100 << 20);
	printf("malloc 100 MiB: checksum %016llx\n", (unsigned long long)checksum(big, 100 << 20));
	return 0;
}

static int spread(int n)
{
	int ok = 0;
	for (int i = 0; i < n; i++) {
		void *want = (void *)((8 + (uint64_t)i) * GiB);
		void *p = mmap(want, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED) {
			printf("page %d: %s\n", i, strerror(errno));
			continue;
		}
		*(volatile int *)p = i;
		ok++;
	}
	printf("%d of %d mapped\n", ok, n);
	return 0;
}

static int hint(void)
{
	const size_t len = 64 << 20;
	unsigned char *want = (unsigned char *)0xc000000000ULL;
	unsigned char *p = mmap(want, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) return 1;
	printf("hint %s\n", p == want ? "taken" : "not taken");
	if (p != want) return 0;
	if (mprotect(p, len, PROT_READ | PROT_WRITE) != 0) return 1;
	for (size_t i = 0; i < len; i += 4096) p[i] = (unsigned char)(i >> 12);
	printf("checksum %016llx\n", (unsigned long long)checksum(p, len));
	/* Given back and taken again: zero, as Go expects of memory it madvises away. */
	if (madvise(p + (1 << 20), 1 << 20, MADV_DONTNEED) != 0) return 1;
	int zero = 1;
	for (size_t i = 0; i < (1 << 20); i++) zero &= p[(1 << 20) + i] == 0;
	printf("after MADV_DONTNEED: %s\n", zero ? "zero" : "NOT ZERO");
	if (munmap(p, len / 2) != 0) return 1;
	unsigned char *again = mmap(want, len / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (again != want) return 1;
	zero = 1;
	for (size_t i = 0; i < len / 2; i += 512) zero &= again[i] == 0;
	printf("mapped again: %s\n", zero ? "zero" : "NOT ZERO");
	/* The kernel writes there for the program. */
	int fds[2];
	if (pipe(fds) != 0 || write(fds[1], "from the pipe", 14) != 14 || read(fds[0], again + 100, 14) != 14) return 1;
	printf("read: %s\n", (char *)again + 100);

	unsigned char *code = mmap((void *)0xd000000000ULL, 2 << 20, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code != (unsigned char *)0xd000000000ULL) {
		printf("code: hint not taken\n");
		return 0;
	}
	static const unsigned char ret42[] = { 0xb8, 42, 0, 0, 0, 0xc3 }; /* mov $42, %eax; ret */
	memcpy(code + 4096, ret42, sizeof ret42);
	int (*fn)(void) = (int (*)(void))(code + 4096);
	printf("code at 0xd000001000 returns %d\n", fn());
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	const char *mode = argc > 1 ? argv[1] : "far";
	if (!strcmp(mode, "far")) return far();
	if (!strcmp(mode, "spread")) return spread(argc > 2 ? atoi(argv[2]) : 8);
	if (!strcmp(mode, "hint")) return hint();
	if (!strcmp(mode, "wild")) {
		printf("writing to 20 GiB\n");
		*(volatile int *)(20 * GiB) = 1;
		printf("wrote it\n");
		return 0;
	}
	return 2;
}
