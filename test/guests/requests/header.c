/*
 * req-header — uses each helper of kvm_api.h that the other request programs do not, and reports what
 * it got, one "key=value" line each. A handler 3 (spelled with the VMOD's older struct name,
 * backend_request) answers every request, 200, text/plain:
 *
 *   env=<IS_SANDBOXED_MAIN> <IS_LINUX_MAIN> <IS_STORAGE> <IS_REQUEST> <IS_DEBUG> <kvm_is_sandboxed>   in main, 0 or 1
 *   embed=<header_source_size> <its first line> nul=<1 if a zero byte follows it>    EMBED_BINARY of this file
 *   trust_me=<1 if TRUST_ME gave the same address, writable>
 *   shm=<offset of SHM_ALLOC_TYPE(struct pair)>,<of SHM_ALLOC_BYTES(3)>,<of SHM_ALLOC(u64)>,<SHM_ALLOC_BYTES of
 *       the rest of the region>                      from the region's start, or "null"; all made in main
 *   shm_values=<pair.a, written in main> <pair.b, which each request increments first>
 *   shm_request=<offset of SHM_ALLOC_BYTES(8) made by this request>
 *   alloc_find=<strlen of http_alloc_find(REQ, "X-Long")> <its first 12 bytes>
 *   alloc_missing=<strlen of http_alloc_find(REQ, "X-Missing")>
 *   alloc_method=<http_alloc_method()>
 *   regex=<sys_regex_compile> <sys_regex_match> <sys_regex_subst> <sys_regex_copyto>   after sys_regex_free
 *   multiprocess=<multiprocess> <multiprocess_array> <multiprocess_clone> <multiprocess_wait>
 *   adns=<adns_new> <adns_config> <adns_get> <adns_get_count>
 *   sys_request=<sys_request("/x")>
 *   sockets=<register_func(8, …) in main> <register_func(12, …) in main>
 *   warmup=<IS_WARMUP_REQUEST(req)>
 *
 * and logs "header: vlogf <url>" with vlogf.
 *
 * Natively (KVM_NAME unset) only what needs no host: prints the env, embed and trust_me lines and
 * exits 0.
 */
#include "common.h"

#ifndef HAS_BUILTIN_MALLOC
#error "kvm_api.h offers http_alloc_find and http_alloc_method"
#endif

/* Relative to the directory the guests are built in (make -C test/guests). */
EMBED_BINARY(header_source, "requests/header.c")

struct pair {
	uint64_t a;
	uint32_t b;
};

static char env_line[64], shm_line[128];
static struct pair *pair;
static uintptr_t shm_base;
static long socket_rc[2];

/* register_func's own result, which the header's declaration (the VMOD's: void) does not give. */
extern long register_func_rc(int index, ...) __asm__("register_func");

static void mp_work(void *arg)
{
	(void)arg;
}
static int on_connect(int fd, const char *remote, const char *arg)
{
	(void)fd, (void)remote, (void)arg;
	return 0;
}
static void on_pause(int fd)
{
	(void)fd;
}

static void common_lines(FILE *f)
{
	size_t first = strcspn(header_source, "\n");
	fprintf(f, "%s\n", env_line);
	fprintf(f, "embed=%u %.*s nul=%d\n", header_source_size, (int)first, header_source, header_source[header_source_size] == 0);
	static const char constant[] = "constant";
	char *writable = TRUST_ME(constant);
	fprintf(f, "trust_me=%d\n", (const char *)writable == constant);
}

static void offset(FILE *f, const void *p, const char *sep)
{
	if (p)
		fprintf(f, "%lu%s", (unsigned long)((uintptr_t)p - shm_base), sep);
	else
		fprintf(f, "null%s", sep);
}

static void on_request(const struct backend_request *req)
{
	char *out = NULL;
	size_t out_len = 0;
	FILE *f = open_memstream(&out, &out_len);
	common_lines(f);
	if (pair)
		pair->b++;
	fprintf(f, "%s\n", shm_line);
	fprintf(f, "shm_values=%lu %lu\n", pair ? (unsigned long)pair->a : 0ul, pair ? (unsigned long)pair->b : 0ul);
	fprintf(f, "shm_request=");
	offset(f, SHM_ALLOC_BYTES(8), "\n");

	const char *found = http_alloc_find(REQ, "X-Long");
	fprintf(f, "alloc_find=%zu %.12s\n", strlen(found), found);
	const char *missing = http_alloc_find(REQ, "X-Missing");
	fprintf(f, "alloc_missing=%zu\n", strlen(missing));
	const char *method = http_alloc_method();
	fprintf(f, "alloc_method=%s\n", method);
	free(TRUST_ME(found));
	free(TRUST_ME(missing));
	free(TRUST_ME(method));

	int rgx = sys_regex_compile("a+", 2);
	sys_regex_free(rgx);
	char dst[16];
	fprintf(f, "regex=%d %d %ld %d\n", rgx, sys_regex_match(rgx, "aa", 2), sys_regex_subst(rgx, "aa", "b", dst, sizeof dst, 1),
	        sys_regex_copyto(rgx, 0, 1));
	fprintf(f, "multiprocess=%ld %ld %ld %ld\n", multiprocess(2, mp_work, NULL),
	        multiprocess_array(2, NULL, NULL, 0), multiprocess_clone(2, NULL, 0), multiprocess_wait());
	const union adns_rules rules = { .b = { .ipv = ADNS_IPV_AUTO, .mode = ADNS_MODE_AUTO } };
	struct adns entry;
	fprintf(f, "adns=%d %d %d %d\n", adns_new(1), adns_config(0, "localhost", "http", 1.0f, &rules), adns_get(0, 0, &entry),
	        adns_get_count(0, 0));
	struct curl_op op;
	memset(&op, 0, sizeof op);
	fprintf(f, "sys_request=%ld\n", sys_request("/x", 2, &op, NULL, NULL));
	fprintf(f, "sockets=%ld %ld\n", socket_rc[0], socket_rc[1]);
	fprintf(f, "warmup=%d\n", IS_WARMUP_REQUEST(req));
	fclose(f);
	vlogf("header: vlogf %.*s", req->url_len, req->url);
	respond(200, "text/plain", out, out_len, NULL);
	free(out);
}

int main(int argc, char **argv)
{
	(void)argc, (void)argv;
	snprintf(env_line, sizeof env_line, "env=%d %d %d %d %d %d", IS_SANDBOXED_MAIN(), IS_LINUX_MAIN(), IS_STORAGE(), IS_REQUEST(),
	         IS_DEBUG(), kvm_is_sandboxed());
	if (native_mode()) {
		common_lines(stdout);
		return 0;
	}
	shm_base = (uintptr_t)shared_memory_area().ptr;
	pair = SHM_ALLOC_TYPE(struct pair);
	char *bytes = SHM_ALLOC_BYTES(3);
	uint64_t counter = 0;
	uint64_t *u64 = SHM_ALLOC(counter);
	struct shared_memory_info area = shared_memory_area();
	void *rest = SHM_ALLOC_BYTES(area.end - area.ptr);
	FILE *f = fmemopen(shm_line, sizeof shm_line, "w");
	fprintf(f, "shm=");
	offset(f, pair, ",");
	offset(f, bytes, ",");
	offset(f, u64, ",");
	offset(f, rest, "");
	fclose(f);
	if (pair) {
		pair->a = 42;
		pair->b = 0;
	}

	socket_rc[0] = register_func_rc(8, on_connect);
	socket_rc[1] = register_func_rc(12, on_pause);
	set_socket_on_connect(on_connect);
	set_socket_prepare_for_pause(on_pause);
	set_backend_request(on_request);
	wait_for_requests();
}
