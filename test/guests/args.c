/*
 * args [--no-ids] [ARG...] — prints argc, every argv and envp entry, and auxiliary-vector values
 * that are the same natively and under tskvm for the same argv and environment (never addresses).
 * Run both sides with exactly the same environment (`env -i K=V ...`). `--no-ids` leaves out
 * AT_UID/AT_EUID/AT_GID/AT_EGID, since tskvm reports uid 0 and a native run may not be root.
 */
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

static void print_string(const char *name, unsigned long type)
{
	const char *s = (const char *)getauxval(type);
	printf("%s=%s\n", name, s ? s : "(null)");
}

int main(int argc, char **argv, char **envp)
{
	extern char **environ;
	int ids = !(argc > 1 && strcmp(argv[1], "--no-ids") == 0);

	printf("argc=%d\n", argc);
	for (int i = 0; i < argc; i++)
		printf("argv[%d]=%s\n", i, argv[i]);
	printf("argv[argc] is NULL: %s\n", argv[argc] == NULL ? "yes" : "no");

	int n = 0;
	for (char **e = envp; *e; e++, n++)
		printf("envp[%d]=%s\n", n, *e);
	printf("envc=%d\n", n);
	printf("environ == envp: %s\n", environ == envp ? "yes" : "no");
	printf("envp follows argv: %s\n", envp == argv + argc + 1 ? "yes" : "no");

	printf("AT_PAGESZ=%lu\n", getauxval(AT_PAGESZ));
	printf("AT_PHENT=%lu\n", getauxval(AT_PHENT));
	printf("AT_PHNUM=%lu\n", getauxval(AT_PHNUM));
	printf("AT_PHDR set: %s\n", getauxval(AT_PHDR) ? "yes" : "no");
	printf("AT_ENTRY set: %s\n", getauxval(AT_ENTRY) ? "yes" : "no");
	printf("AT_BASE=%lu\n", getauxval(AT_BASE)); /* 0: no interpreter */
	printf("AT_CLKTCK=%lu\n", getauxval(AT_CLKTCK));
	printf("AT_SECURE=%lu\n", getauxval(AT_SECURE));
	printf("AT_RANDOM set: %s\n", getauxval(AT_RANDOM) ? "yes" : "no");
	print_string("AT_EXECFN", AT_EXECFN);
	print_string("AT_PLATFORM", AT_PLATFORM);
	if (ids) {
		printf("AT_UID=%lu\n", getauxval(AT_UID));
		printf("AT_EUID=%lu\n", getauxval(AT_EUID));
		printf("AT_GID=%lu\n", getauxval(AT_GID));
		printf("AT_EGID=%lu\n", getauxval(AT_EGID));
	}
	return 0;
}
