/*
 * req-counter — per request, atomically increments the uint64 at the start of shared_memory_area()
 * and answers (text/plain, status 200, no trailing newline) with the new value in decimal: the first
 * request ever gives "1". The region is shared by all VMs of the program, so the count survives
 * ephemeral resets and is shared between concurrent request VMs.
 *
 * Without a shared region (config shared_memory = 0, so end - ptr < 8): status 500, "no shared memory".
 * Natively: `req-counter [URL...]` counts in an ordinary variable.
 */
#include <inttypes.h>

#include "common.h"

static uint64_t native_counter;

static void on_request(const struct kvm_request *r)
{
	(void)r;
	uint64_t *counter = &native_counter;
	if (!native) {
		struct shared_memory_info shm = shared_memory_area();
		if (shm.ptr == 0 || shm.end < shm.ptr + sizeof(uint64_t)) {
			respond_str(500, "no shared memory");
			return;
		}
		counter = (uint64_t *)(uintptr_t)shm.ptr;
	}
	uint64_t value = __atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST) + 1;
	char body[32];
	snprintf(body, sizeof body, "%" PRIu64, value);
	respond_str(200, body);
}

int main(int argc, char **argv)
{
	if (native_mode()) {
		struct kvm_request r;
		for (int i = 1; i < argc || i == 1; i++) {
			native_request(&r, "GET", i < argc ? argv[i] : "/", NULL, 0);
			on_request(&r);
			putchar('\n');
		}
		return 0;
	}
	set_backend_request(on_request);
	wait_for_requests();
}
