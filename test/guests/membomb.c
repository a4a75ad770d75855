/*
 * membomb [MIB] — mallocs 1 MiB blocks, touching every page of each, until malloc returns NULL or
 * MIB MiB (default 4096) are held, then prints how many MiB it got and why it stopped, and exits 0.
 * Under tskvm --max-memory the allocation fails cleanly; natively the bound keeps it from the OOM killer.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	long limit = argc > 1 ? atol(argv[1]) : 4096, got = 0;
	while (got < limit) {
		char *p = malloc(1024 * 1024);
		if (!p)
			break;
		for (long off = 0; off < 1024 * 1024; off += 4096)
			p[off] = 1;
		got++;
	}
	printf("membomb: got %ld MiB (%s)\n", got, got < limit ? "malloc failed" : "limit reached");
	return 0;
}
