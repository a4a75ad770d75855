/*
 * getppid [N] — calls syscall(SYS_getppid) N times (default 100000), then prints "done": the cost of
 * one emulated Linux syscall, for benchmarks (the raw syscall bypasses any libc caching).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	printf("done\n");
	return 0;
}
