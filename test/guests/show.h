/*
 * show.h — SHOW(what, call): prints a call's result as "what = N" or "what = -1 ENAME", never a time
 * or an address, so that a guest's output natively and under tskvm can be compared byte for byte.
 * Shared by events.c and signalfd.c.
 */
#ifndef SHOW_H
#define SHOW_H

#include <errno.h>
#include <stdio.h>

/* errno's name (musl has no strerrorname_np). */
static const char *errname(int e)
{
	static const struct { int e; const char *name; } names[] = {
		{ EAGAIN, "EAGAIN" }, { EINVAL, "EINVAL" }, { EBADF, "EBADF" }, { EFAULT, "EFAULT" },
		{ EPERM, "EPERM" }, { EEXIST, "EEXIST" }, { ENOENT, "ENOENT" }, { ELOOP, "ELOOP" },
		{ ENOTSOCK, "ENOTSOCK" }, { EISCONN, "EISCONN" }, { EPIPE, "EPIPE" },
		{ ECONNREFUSED, "ECONNREFUSED" }, { EAFNOSUPPORT, "EAFNOSUPPORT" }, { EOPNOTSUPP, "EOPNOTSUPP" },
		{ ESPIPE, "ESPIPE" }, { ENOSPC, "ENOSPC" }, { ENOMEM, "ENOMEM" }, { EMSGSIZE, "EMSGSIZE" },
		{ EPROTONOSUPPORT, "EPROTONOSUPPORT" }, { ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT" },
		{ ENOTCONN, "ENOTCONN" }, { EPROTOTYPE, "EPROTOTYPE" }, { EMFILE, "EMFILE" }, { EINTR, "EINTR" },
		{ ENOPROTOOPT, "ENOPROTOOPT" },
	};
	static char other[16];
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].e == e)
			return names[i].name;
	snprintf(other, sizeof other, "E%d", e);
	return other;
}

/* A result as "N" or "-1 ENAME". */
static const char *res(long r)
{
	static char buf[8][64];
	static int at;
	char *b = buf[at++ % 8];
	if (r >= 0)
		snprintf(b, 64, "%ld", r);
	else
		snprintf(b, 64, "-1 %s", errname(errno));
	return b;
}

#define SHOW(what, call) printf("%s = %s\n", what, res((long)(call)))

#endif
