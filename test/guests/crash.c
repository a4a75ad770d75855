/*
 * crash KIND — prints "crash: KIND" (flushed), then dies the way KIND says. Natively:
 *   segv       write to NULL                              SIGSEGV (status 139)
 *   segv-high  write to unmapped 0x7fffffff0000           SIGSEGV (139)
 *   ill        ud2                                        SIGILL  (132)
 *   fpe        integer division by zero                   SIGFPE  (136)
 *   abort      abort()                                    SIGABRT (134)
 *   gp         hlt, privileged in user mode (#GP)         SIGSEGV (139)
 *   stack      unbounded recursion overflows the stack    SIGSEGV (139)
 *   exit3      exit(3)                                    status 3
 * An unknown KIND prints usage and exits 2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int zero = 0, seven = 7;

/* Each frame keeps a live buffer so the compiler can neither inline the recursion away nor turn it
 * into a loop; `zero` hides that it never ends. */
static int recurse(int depth)
{
	volatile char frame[256];
	if (zero)
		return 0;
	frame[depth % 256] = (char)depth;
	return recurse(depth + 1) + frame[(depth + 1) % 256];
}

int main(int argc, char **argv)
{
	const char *kind = argc > 1 ? argv[1] : "";
	printf("crash: %s\n", kind);
	fflush(stdout);

	if (strcmp(kind, "segv") == 0)
		*(volatile int *)(long)zero = 1;
	else if (strcmp(kind, "segv-high") == 0)
		*(volatile int *)0x7fffffff0000UL = 1;
	else if (strcmp(kind, "ill") == 0)
		__asm__ volatile("ud2");
	else if (strcmp(kind, "fpe") == 0)
		printf("%d\n", seven / zero); /* not 1 / x, which gcc computes without dividing */
	else if (strcmp(kind, "abort") == 0)
		abort();
	else if (strcmp(kind, "gp") == 0)
		__asm__ volatile("hlt");
	else if (strcmp(kind, "stack") == 0)
		printf("%d\n", recurse(0));
	else if (strcmp(kind, "exit3") == 0)
		exit(3);
	fprintf(stderr, "usage: crash segv|segv-high|ill|fpe|abort|gp|stack|exit3\n");
	return 2;
}
