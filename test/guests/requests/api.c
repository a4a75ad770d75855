/*
 * req-api — makes every implemented API call and reports the results, one "key=value" line per call
 * ("\n" after every line). Registers GET (1), POST (2) and on_error (5) handlers; any request gets
 * status 200, text/plain, and this body (numbers in decimal unless shown as 0x…):
 *
 *   is_debug=<sys_is_debug()>
 *   meminfo=<max_memory>,<max_reqmem>,<reqmem_upper>,<reqmem_current>      get_meminfo, bytes
 *   shm=0x<ptr>,0x<end>                                                   shared_memory_area
 *   make_ephemeral=<rc of sys_make_ephemeral(argv[1]) in main, or "none" without argv[1]>
 *   method=<sys_http_method(buf)>
 *   method_len=<sys_http_method(NULL, 0)>                                 the length needed
 *   method_small=<sys_http_method(buf, 1)>                                0: buffer too small
 *   url=<url>
 *   arg=<arg>
 *   content_type=<content type, POST only, else empty>
 *   body_len=<N, POST only, else 0>
 *   find_host=<sys_http_find(REQ, "Host"): the whole field, empty when absent>
 *   find_host_len=<sys_http_find(REQ, "Host", NULL, 0)>
 *   find_small=<sys_http_find(REQ, "Host", buf, 1)>                       0 (too small, or absent)
 *   find_missing=<sys_http_find(REQ, "X-Api-Missing", buf, size)>         0
 *   req_append=<rc of sys_http_append(REQ, "X-Api-Req: added")>
 *   req_find=<sys_http_find(REQ, "x-api-req") — lower case key>          "X-Api-Req: added"
 *   resp_append=<rc of sys_http_append(RESP, "X-Api-Append: 1")>
 *   resp_set=<rc>,<rc>   sys_http_set(RESP, "X-Api-Set: one") then (…"X-Api-Set: two")
 *   resp_find=<sys_http_find(RESP, "X-Api-Set")>                          "X-Api-Set: two"
 *   resp_unset=<rc>      sys_http_append(RESP, "X-Api-Gone: 1"), then this sys_http_set(RESP, "X-Api-Gone")
 *   resp_gone=<sys_http_find(RESP, "X-Api-Gone", NULL, 0)>                0
 *   cacheable=<rc of sys_set_cacheable(true, 10000, 2000, 3000)>
 *   log=ok                                                               after sys_log("api: <method> <url>")
 *   vcpu=<vcpuid()>,<vcpureqid()>                                        %gs:0 and %gs:4, no exit
 *   is_storage=<sys_is_storage()>                                        0: there is no storage VM
 *   storage=<storage_call rc>,<storage_task rc>,<stop_storage_task rc>,<sys_storage_allow rc in main>
 *   breakpoint=ok                                                        after sys_breakpoint()
 *
 * Response headers expected on the wire: X-Api-Append: 1, X-Api-Set: two (once), no X-Api-Gone, and from
 * BackendResponseExtra: X-Api-Extra: 1, X-Api-Extra2: 2 with cached = true, ttl 10 s, grace 2 s,
 * keep 3 s (the same as the sys_set_cacheable hints, so either source gives the same Cache-Control).
 *
 * URLs /storage_return and /storage_noreturn make that call outside a storage call, which ends the
 * request (it fails) instead of coming back, and /stream begins a streamed response of length 0 without a callback, which is
 * refused; were one to return, the handler answers 200 "fell through".
 *
 * URL /crash (path, any query) dereferences NULL; on_error then answers
 *   503, text/plain, "api on_error: url=<url> arg=<arg> exception=<exception>"
 *
 * main: calls sys_log("api: init") and, when argv[1] is given (config main_arguments), sys_make_ephemeral
 * (atoi(argv[1])) — which is only allowed with control_ephemeral.
 * Natively no hypercall is possible: prints "api: native mode, no hypercalls" and exits 0.
 */
#include <inttypes.h>

#include "common.h"

static char make_ephemeral_result[32] = "none";
static long storage_allow_result;

/* Storage functions a program with a storage VM would offer; this one has none, so nothing calls them. */
static void storage_get(size_t n, struct virtbuffer buffers[], size_t result_len)
{
	(void)n, (void)result_len;
	storage_return(buffers[0].data, buffers[0].len);
}
static void storage_tick(void *data, size_t len)
{
	(void)data, (void)len;
}

/* Calls that never return to a request in tskvm; "fell through" if one did. */
static int never_returns(const char *url)
{
	if (strcmp(url, "/stream") == 0)
		begin_streaming_response(200, "text/plain", 10, 0, NULL, NULL);
	else if (strcmp(url, "/storage_return") == 0)
		storage_return("x", 1);
	else if (strcmp(url, "/storage_noreturn") == 0)
		storage_noreturn("x", 1);
	else
		return 0;
	respond_str(200, "fell through");
	return 1;
}
static volatile int *volatile null_pointer;

/* A length the host returned, limited to the buffer it wrote to (a buggy host must not make us overread). */
static int clampn(unsigned long n, size_t size)
{
	return (int)(n < size ? n : size);
}

static void report(const char *url, const char *arg, const char *ctype, size_t body_len)
{
	char *out = NULL, buf[HTTP_FMT_SIZE], method[64];
	size_t out_len = 0;
	FILE *f = open_memstream(&out, &out_len);
	unsigned n;

	fprintf(f, "is_debug=%d\n", sys_is_debug());
	struct meminfo mi = { 0, 0, 0, 0 };
	get_meminfo(&mi);
	fprintf(f, "meminfo=%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n", mi.max_memory, mi.max_reqmem,
	        mi.reqmem_upper, mi.reqmem_current);
	struct shared_memory_info shm = shared_memory_area();
	fprintf(f, "shm=0x%" PRIx64 ",0x%" PRIx64 "\n", shm.ptr, shm.end);
	fprintf(f, "make_ephemeral=%s\n", make_ephemeral_result);

	unsigned long m = sys_http_method(method, sizeof method);
	fprintf(f, "method=%.*s\n", clampn(m, sizeof method), method);
	fprintf(f, "method_len=%lu\n", sys_http_method(NULL, 0));
	fprintf(f, "method_small=%lu\n", sys_http_method(buf, 1));

	fprintf(f, "url=%s\narg=%s\ncontent_type=%s\nbody_len=%zu\n", url, arg, ctype, body_len);

	n = http_find(REQ, "Host", buf, sizeof buf);
	fprintf(f, "find_host=%.*s\n", clampn(n, sizeof buf), buf);
	fprintf(f, "find_host_len=%u\n", http_find_strlen(REQ, "Host"));
	fprintf(f, "find_small=%u\n", http_find(REQ, "Host", buf, 1));
	fprintf(f, "find_missing=%u\n", http_find(REQ, "X-Api-Missing", buf, sizeof buf));

	fprintf(f, "req_append=%ld\n", http_append(REQ, "X-Api-Req: added"));
	n = http_find(REQ, "x-api-req", buf, sizeof buf);
	fprintf(f, "req_find=%.*s\n", clampn(n, sizeof buf), buf);

	fprintf(f, "resp_append=%ld\n", http_append(RESP, "X-Api-Append: 1"));
	long s1 = http_set(RESP, "X-Api-Set: one");
	long s2 = http_set(RESP, "X-Api-Set: two");
	fprintf(f, "resp_set=%ld,%ld\n", s1, s2);
	n = http_find(RESP, "X-Api-Set", buf, sizeof buf);
	fprintf(f, "resp_find=%.*s\n", clampn(n, sizeof buf), buf);
	http_append(RESP, "X-Api-Gone: 1");
	fprintf(f, "resp_unset=%ld\n", http_unset_str(RESP, "X-Api-Gone"));
	fprintf(f, "resp_gone=%u\n", http_find_strlen(RESP, "X-Api-Gone"));

	fprintf(f, "cacheable=%ld\n", sys_set_cacheable(true, 10000, 2000, 3000));
	kvm_logf("api: %.*s %s", clampn(m, sizeof method), method, url);
	fprintf(f, "log=ok\n");
	fprintf(f, "vcpu=%d,%d\n", vcpuid(), vcpureqid());
	fprintf(f, "is_storage=%ld\n", sys_is_storage());
	char reply[16];
	fprintf(f, "storage=%ld,%ld,%ld,%ld\n", storage_call(storage_get, "x", 1, reply, sizeof reply),
	        storage_task(storage_tick, NULL, 0), stop_storage_task(1), storage_allow_result);
	sys_breakpoint();
	fprintf(f, "breakpoint=ok\n");
	fclose(f);

	static const struct ResponseHeader headers[] = { KVM_HEADER("X-Api-Extra: 1"), KVM_HEADER("X-Api-Extra2: 2") };
	const struct BackendResponseExtra extra = {
		.headers = headers, .num_headers = 2, .cached = true, .ttl = 10.0f, .grace = 2.0f, .keep = 3.0f,
	};
	respond(200, "text/plain", out, out_len, &extra);
	free(out);
}

static int is_crash(const char *url)
{
	return strncmp(url, "/crash", 6) == 0 && (url[6] == 0 || url[6] == '?');
}

static void on_get(const char *url, const char *arg)
{
	if (is_crash(url))
		*null_pointer = 1;
	if (never_returns(url))
		return;
	report(url, arg, "", 0);
}

static void on_post(const char *url, const char *arg, const char *ctype, const uint8_t *data, size_t len)
{
	(void)data;
	if (is_crash(url))
		*null_pointer = 1;
	report(url, arg, ctype, len);
}

static void on_error(const char *url, const char *arg, const char *exception)
{
	char body[1024];
	snprintf(body, sizeof body, "api on_error: url=%s arg=%s exception=%s", url, arg, exception);
	respond_str(503, body);
}

int main(int argc, char **argv)
{
	if (native_mode()) {
		puts("api: native mode, no hypercalls");
		return 0;
	}
	kvm_log("api: init");
	storage_allow_result = STORAGE_ALLOW(storage_get);
	if (argc > 1)
		snprintf(make_ephemeral_result, sizeof make_ephemeral_result, "%d", sys_make_ephemeral(atoi(argv[1])));
	set_backend_get(on_get);
	set_backend_post(on_post);
	set_on_error(on_error);
	wait_for_requests();
}
