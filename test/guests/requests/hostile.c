/*
 * req-hostile — a handler that hands the host every kind of bad argument the API calls take, then
 * answers with what each call returned, one "name=rc" per line (text/plain, 200). The host must
 * refuse each with an error code (-14 EFAULT for a bad pointer, -22 EINVAL, -1 EPERM) and stay up:
 *
 *   null_ctype, wild_body        sys_backend_response with a NULL content type / a wild body pointer
 *   wild_field                   sys_http_append with a wild pointer (an oversized length fails the
 *                                whole request instead: see req-faults /bigheader)
 *   bad_where                    sys_http_append(7, …)
 *   find_wild_out                sys_http_find into a wild output buffer
 *   method_wild_out              sys_http_method into a wild output buffer
 *   meminfo_null, meminfo_wild   get_meminfo(NULL) / get_meminfo(wild)
 *   register_late                register_func during a request (only allowed during init)
 *   log_wild                     sys_log of a wild buffer
 *   fetch_wild_url, fetch_wild_op, fetch_wild_fields
 *                                sys_fetch with a wild URL, result struct or field table
 *
 * Natively: prints "hostile: native mode, no hypercalls".
 */
#include <inttypes.h>

#include "common.h"

#define WILD ((void *)0x7ff0000000000000ull)

/* The header declares these void, as TinyKVM's does; the same stubs seen with their rax result. */
extern long backend_response_rc(int16_t status, const void *ctype, size_t ctype_len, const void *body, size_t body_len,
                                const void *extra) __asm__("sys_backend_response");
extern long sys_get_meminfo_rc(void *info) __asm__("get_meminfo");
extern long sys_register_rc(int index, void *fn) __asm__("register_func");
extern long sys_log_rc(const void *buf, size_t len) __asm__("sys_log");

static void on_get(const char *url, const char *arg)
{
	(void)url;
	(void)arg;
	char out[1024];
	int n = 0;
#define REPORT(name, call) n += snprintf(out + n, sizeof out - n, name "=%ld\n", (long)(call))
	REPORT("null_ctype", backend_response_rc(200, NULL, 10, "x", 1, NULL));
	REPORT("wild_body", backend_response_rc(200, "text/plain", 10, WILD, 100, NULL));
	REPORT("wild_field", sys_http_append(RESP, WILD, 10));
	REPORT("bad_where", sys_http_append(7, "X: y", 4));
	REPORT("find_wild_out", (int)sys_http_find(REQ, "Host", 4, WILD, 100));
	REPORT("method_wild_out", (long)sys_http_method(WILD, 100));
	REPORT("meminfo_null", sys_get_meminfo_rc(NULL));
	REPORT("meminfo_wild", sys_get_meminfo_rc(WILD));
	REPORT("register_late", sys_register_rc(1, (void *)on_get));
	REPORT("log_wild", sys_log_rc(WILD, 10));
	struct curl_op op;
	memset(&op, 0, sizeof op);
	REPORT("fetch_wild_url", sys_fetch(WILD, 10, &op, NULL, NULL));
	REPORT("fetch_wild_op", sys_fetch("/x", 2, WILD, NULL, NULL));
	REPORT("fetch_wild_fields", sys_fetch("/x", 2, &op, WILD, NULL));
	respond(200, "text/plain", out, (size_t)n, NULL);
}

int main(void)
{
	if (native_mode()) {
		puts("hostile: native mode, no hypercalls");
		return 0;
	}
	set_backend_get(on_get);
	wait_for_requests();
}
