/* hello — prints "hello, world" and exits 0: the smallest differential test. */
#include <stdio.h>

int main(void)
{
	printf("hello, world\n");
	return 0;
}
