/*
 * sigloop [N] — raise(SIGUSR1) N times (default 100000) into a handler that counts, then prints the
 * count: the cost of a signal round trip (raise's calls, the frame, the handler, rt_sigreturn), for
 * benchmarks.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static volatile long hits;
static void on_usr1(int sig) { (void)sig; hits++; }

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	signal(SIGUSR1, on_usr1);
	for (long i = 0; i < n; i++)
		raise(SIGUSR1);
	printf("%ld\n", hits);
	return hits == n ? 0 : 1;
}
