/*
 * bench work — GET handlers whose cost the host can dial with `arg`:
 *   /dirty      writes one byte to each of the first N pages of a 16 MiB static array, so the
 *               reset after it has N more pages to copy back
 *   /hypercall  makes N sys_is_debug() hypercalls, each one guest → host exit
 */
#include <stdlib.h>
#include <string.h>

#include "kvm_api.h"

#define PAGE 4096
#define MAX_PAGES 4096

static char pages[MAX_PAGES][PAGE] __attribute__((aligned(PAGE)));

static void on_get(const char *url, const char *arg)
{
	long n = atol(arg);
	long sum = 0;
	if (strcmp(url, "/dirty") == 0) {
		if (n > MAX_PAGES)
			n = MAX_PAGES;
		/* volatile: the stores are the point, the compiler must not fold them */
		volatile char *p = &pages[0][0];
		for (long i = 0; i < n; i++)
			p[i * PAGE] += 1;
	} else if (strcmp(url, "/hypercall") == 0) {
		for (long i = 0; i < n; i++)
			sum += sys_is_debug();
	} else {
		backend_response_str(404, "text/plain", "unknown\n");
		return;
	}
	backend_response_str(sum == 0 ? 200 : 500, "text/plain", "ok\n");
}

int main(void)
{
	/* Touch the array once so the frozen image holds real pages (like a program's initialised data),
	 * not memfd holes. */
	memset(pages, 1, sizeof pages);
	set_backend_get(on_get);
	wait_for_requests();
}
