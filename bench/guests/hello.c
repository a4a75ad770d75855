/*
 * bench hello — the request every other number is compared with: a GET handler that answers
 * 200 text/plain "Hello World!\n" and nothing else, so a request costs what tskvm itself costs.
 */
#include "kvm_api.h"

static void on_get(const char *url, const char *arg)
{
	(void)url;
	(void)arg;
	backend_response_str(200, "text/plain", "Hello World!\n");
}

int main(void)
{
	set_backend_get(on_get);
	wait_for_requests();
}
