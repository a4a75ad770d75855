/*
 * counter — state that outlives a request, two ways:
 *   total   a counter in the shared memory region (config shared_memory), one for all request VMs
 *   mine    a counter in this VM's globals, kept between requests when the program is not ephemeral
 * Any request → 200 text/plain "total=<N> mine=<M>\n".
 *
 *   natively:   counter [N]  → counts N requests (default 1) in one process, one line each
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include "kvm_api.h"

static uint64_t mine;
static uint64_t native_total;

static int count(char *out, size_t size, uint64_t *total)
{
	uint64_t t = __atomic_add_fetch(total, 1, __ATOMIC_SEQ_CST);
	return snprintf(out, size, "total=%" PRIu64 " mine=%" PRIu64 "\n", t, ++mine);
}

static void on_get(const char *url, const char *arg)
{
	(void)url; (void)arg;
	char out[64];
	struct shared_memory_info shm = shared_memory_area();
	if (shm.ptr == 0) {
		backend_response_str(500, "text/plain", "counter needs shared_memory (MiB) in its configuration\n");
		return;
	}
	int n = count(out, sizeof out, (uint64_t *)(uintptr_t)shm.ptr);
	backend_response(200, "text/plain", 10, out, (size_t)n);
}

static void on_post(const char *url, const char *arg, const char *ctype, const uint8_t *body, size_t len)
{
	(void)ctype; (void)body; (void)len;
	on_get(url, arg);
}

int main(int argc, char **argv)
{
	if (!kvm_is_sandboxed()) {
		char out[64];
		for (int i = 0, n = argc > 1 ? atoi(argv[1]) : 1; i < n; i++) fputs((count(out, sizeof out, &native_total), out), stdout);
		return 0;
	}
	set_backend_get(on_get);
	set_backend_post(on_post);
	wait_for_requests();
}
