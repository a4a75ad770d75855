/*
 * req-hello — the smallest request program: a GET handler that answers
 *   200, text/plain, "Hello World!\n"
 * in the wait_for_requests style. Natively (KVM_NAME unset) it prints that body and exits 0.
 * Built with glibc (req-hello) and musl (req-hello.musl).
 */
#include <stdio.h>

#include "kvm_api.h"

static void on_get(const char *url, const char *arg)
{
	(void)url;
	(void)arg;
	backend_response_str(200, "text/plain", "Hello World!\n");
}

int main(void)
{
	if (!kvm_is_sandboxed()) {
		fputs("Hello World!\n", stdout);
		return 0;
	}
	set_backend_get(on_get);
	wait_for_requests();
}
