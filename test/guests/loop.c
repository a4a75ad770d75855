/* loop — prints "looping" (flushed), then spins forever without syscalls: for timeout tests. */
#include <stdio.h>

int main(void)
{
	volatile unsigned long counter = 0;
	printf("looping\n");
	fflush(stdout);
	for (;;)
		counter++;
}
