/*
 * req-dynmap — a request program built dynamically linked (req-dynmap.dyn): the C library its
 * requests call was mapped by the dynamic loader before the freeze.
 *   GET /hello      200 "hello from glibc X.Y" (gnu_get_libc_version, a call into libc.so)
 *   GET /map        maps this program's own file with PROT_EXEC, as the loader maps a library, and
 *                   calls a function in it ("mov $42, %eax; ret"): 200 "42 ADDR", ADDR where it was
 *   GET /poke?ADDR  writes that function's bytes at ADDR without mapping anything and calls it: a
 *                   fork reset since /map must have made ADDR no-execute again, so this faults
 * Natively: `req-dynmap URL` answers one URL on stdout.
 */
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

__attribute__((used)) static const unsigned char code[] = {
  'T', 'S', 'K', 'V', 'M', '-', 'E', 'X', 'E', 'C', '-', 'M', 'A', 'R', 'K', '!',
  0xb8, 42, 0, 0, 0, 0xc3,
};

/* The function's offset in this program's file, or -1. */
static long code_offset(void)
{
	int fd = open("/proc/self/exe", O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		return -1;
	unsigned char *all = malloc(st.st_size);
	long found = -1;
	if (all && pread(fd, all, st.st_size, 0) == st.st_size) {
		for (long i = 0; i + (long)sizeof code <= st.st_size && found < 0; i++)
			if (memcmp(all + i, code, sizeof code) == 0)
				found = i + 16;
	}
	free(all);
	close(fd);
	return found;
}

static void on_request(const struct kvm_request *r)
{
	char path[64], body[128];
	url_path(r->url, path, sizeof path);
	if (!strcmp(path, "/hello")) {
		snprintf(body, sizeof body, "hello from glibc %s", gnu_get_libc_version());
		respond_str(200, body);
	} else if (!strcmp(path, "/map")) {
		long page = sysconf(_SC_PAGESIZE), offset = code_offset();
		int fd = open("/proc/self/exe", O_RDONLY);
		if (offset < 0 || fd < 0) {
			respond_str(500, "cannot find the code");
			return;
		}
		unsigned char *m = mmap(NULL, 2 * page, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, offset - offset % page);
		close(fd);
		if (m == MAP_FAILED) {
			respond_str(500, "mmap failed");
			return;
		}
		unsigned char *fn = m + offset % page;
		snprintf(body, sizeof body, "%d %" PRIxPTR, ((int (*)(void))fn)(), (uintptr_t)fn);
		respond_str(200, body);
	} else if (!strcmp(path, "/poke")) {
		unsigned char *fn = (unsigned char *)(uintptr_t)strtoull(request_param(r->url, r->arg), NULL, 16);
		memcpy(fn, code + 16, sizeof code - 16);
		snprintf(body, sizeof body, "%d", ((int (*)(void))fn)());
		respond_str(200, body);
	} else {
		respond_str(404, "no such path");
	}
}

int main(int argc, char **argv)
{
	if (native_mode()) {
		struct kvm_request r;
		native_request(&r, "GET", argc > 1 ? argv[1] : "/hello", NULL, 0);
		on_request(&r);
		return 0;
	}
	set_backend_request(on_request);
	wait_for_requests();
}
