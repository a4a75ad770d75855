/* block — block CALL: blocks forever in that system call (see block.h); prints "blocking in CALL" first. */
#include <stdio.h>
#include "block.h"

int main(int argc, char **argv)
{
	const char *call = argc > 1 ? argv[1] : "nanosleep";
	printf("blocking in %s\n", call);
	fflush(stdout);
	long rc = block_in(call);
	printf("%s returned %ld\n", call, rc);
	return rc == -1000 ? 2 : 1;
}
