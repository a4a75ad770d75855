/*
 * req-farmem — requests that use memory far above 4 GiB, in a sparse address space
 * (test/bigspace.test.ts; boot it with an address space of 64 GiB).
 *
 * main maps a page at 16 GiB and writes "frozen" there before it waits for requests. Each request
 *   - reads the string at 16 GiB, then writes "changed by a request" over it;
 *   - maps 1 MiB at N GiB, N the request's arg (default 32) (MAP_FIXED_NOREPLACE: EEXIST if an
 *     earlier request's mapping survived), reads its first 16 bytes (zero unless an earlier request's
 *     data survived), writes the arg there;
 *   - answers "16g=<string> far=<mapped|errno text> <zero|left: TEXT>".
 * Every request in an ephemeral fork must see "16g=frozen far=mapped zero".
 */
#include <errno.h>
#include <sys/mman.h>

#include "common.h"

#define GiB (1ULL << 30)

static void on_request(const struct kvm_request *r)
{
	char *frozen = (char *)(16 * GiB);
	char seen[32];
	snprintf(seen, sizeof seen, "%s", frozen);
	strcpy(frozen, "changed by a request");

	const char *arg = request_param(r->url, r->arg);
	char *far = (char *)((*arg ? strtoull(arg, NULL, 10) : 32) * GiB);
	void *p = mmap(far, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	const char *mapped = p == far ? "mapped" : strerror(errno);
	char left[64] = "zero";
	if (p == far) {
		int zero = 1;
		for (int i = 0; i < 16; i++) zero &= far[i] == 0;
		if (!zero) snprintf(left, sizeof left, "left: %.16s", far);
		snprintf(far, 16, "%s", arg);
	}
	char body[160];
	snprintf(body, sizeof body, "16g=%s far=%s %s", seen, mapped, left);
	respond_str(200, body);
}

int main(void)
{
	char *frozen = mmap((void *)(16 * GiB), 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (frozen != (char *)(16 * GiB)) {
		printf("mmap at 16 GiB: %s\n", strerror(errno));
		return 1;
	}
	strcpy(frozen, "frozen");
	if (native_mode()) {
		struct kvm_request req;
		native_request(&req, "GET", "/?40", NULL, 0);
		on_request(&req);
		putchar('\n');
		return 0;
	}
	set_backend_request(on_request);
	wait_for_requests();
}
