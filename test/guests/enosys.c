/*
 * enosys [--io-uring] — makes syscalls that do not exist and prints each result as an errno name:
 * numbers 512 (x32-only), 999, 100000 and -1 all give ENOSYS natively, and the program carries on.
 * (Not 335, once a gap in the table: it is uretprobe since Linux 6.11 and raises SIGILL.)
 * `--io-uring` also calls io_uring_setup(1, NULL), a real syscall tskvm does not emulate: ENOSYS
 * under tskvm but EFAULT (or EPERM) natively, so that line is not part of the differential output.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif

static const char *errno_name(int e)
{
	switch (e) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EFAULT: return "EFAULT";
	case EINVAL: return "EINVAL";
	case ENOMEM: return "ENOMEM";
	case ENOSYS: return "ENOSYS";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	default: return "other";
	}
}

static void try(const char *what, long nr, long arg0, long arg1)
{
	errno = 0;
	long r = syscall(nr, arg0, arg1, 0, 0, 0, 0);
	printf("%s = %ld, errno %s\n", what, r, errno_name(errno));
}

int main(int argc, char **argv)
{
	try("syscall(512)", 512, 0, 0);
	try("syscall(999)", 999, 0, 0);
	try("syscall(100000)", 100000, 0, 0);
	try("syscall(-1)", -1, 0, 0);
	if (argc > 1 && strcmp(argv[1], "--io-uring") == 0)
		try("io_uring_setup(1, NULL)", SYS_io_uring_setup, 1, 0);
	printf("still running\n");
	return 0;
}
