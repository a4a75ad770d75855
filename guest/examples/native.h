/*
 * native.h — what the examples need to run as plain programs (KVM_NAME unset), where the request
 * body comes from stdin instead of the host.
 */
#ifndef TSKVM_EXAMPLES_NATIVE_H
#define TSKVM_EXAMPLES_NATIVE_H

#include <stdlib.h>
#include <unistd.h>

/* All of fd, with a NUL after it (so text inputs are C strings too); NULL when memory runs out. */
static inline void *read_all(int fd, size_t *len)
{
	size_t cap = 1 << 16;
	char *buf = malloc(cap + 1);
	ssize_t got;
	*len = 0;
	while (buf && (got = read(fd, buf + *len, cap - *len)) > 0) {
		*len += (size_t)got;
		if (*len == cap) buf = realloc(buf, (cap *= 2) + 1);
	}
	if (buf) buf[*len] = 0;
	return buf;
}

#endif
