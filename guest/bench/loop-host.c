/*
 * loop-host.c — the guest API (kvm_api.h) implemented in a plain Linux process, so that a program's
 * request handler can be timed natively: the "native in-process loop" of `tskvm bench`.
 *
 * Linked into a program in place of the header's `out` stubs (they are weak; these are not):
 *
 *   gcc -O2 -static -o prog.loop prog.c guest/bench/loop-host.c -I guest/include ...
 *
 * A constructor sets KVM_NAME, so the program's main() takes its sandboxed path: it initialises and
 * calls wait_for_requests() (or wait_for_requests_paused()), which is where the loop runs. Each request
 * is the same one, built from the environment; the handler is called exactly as tskvm calls it
 * (dispatch order 3, 2 with a body, 1; or the paused style) and its sys_backend_response() ends the
 * request, by a longjmp back to the loop — as in a VM, the code after it never runs.
 *
 * What a VM gets for free, this loop does not: nothing is reset between requests. A handler that
 * leaks leaks here (the report shows the heap growing), and one that leaves state behind sees it in
 * the next request, which is why every response is checked against the first one.
 *
 *   TSKVM_LOOP_REQUESTS=N            timed requests (default 1)
 *   TSKVM_LOOP_WARMUP=W              untimed requests before them (default 0)
 *   TSKVM_LOOP_METHOD, _URL, _ARG    the request line (default GET /, arg "")
 *   TSKVM_LOOP_BODY=FILE             the body (default none); TSKVM_LOOP_CONTENT_TYPE its type
 *   TSKVM_LOOP_HEADERS="K: v\n..."   request header fields, one per line
 *   TSKVM_LOOP_MAX_MEMORY, TSKVM_LOOP_MAX_REQUEST_MEMORY (MiB), TSKVM_LOOP_SHARED_MEMORY (MiB):
 *                                    what get_meminfo() and shared_memory_area() answer, as in tskvm
 *   TSKVM_LOOP_CHECK=status          compare only the status with the first response (for a program
 *                                    whose answer changes by design, e.g. a counter), not the body
 *   TSKVM_LOOP_REPORT=FILE           where the report goes (default stderr), one JSON object:
 *     {"requests":N,"ns":[per request],"status":S,"content_type":"…","bytes":B,"fnv1a":"…",
 *      "heap_before":…,"heap_after":…,"mismatch":0}
 * The last response's body goes to stdout. Exit status: 0, or 1 when a request did not respond, or
 * answered differently from the first one (the report says which).
 */
#define KVM_API_ALREADY_DEFINED
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "kvm_api.h"

typedef void (*get_fn)(const char *, const char *);
typedef void (*post_fn)(const char *, const char *, const char *, const uint8_t *, size_t);
typedef void (*request_fn)(const struct kvm_request *);

static void *handlers[16];

/* The one request every iteration serves. */
static struct kvm_request request;
static struct kvm_request_header *request_headers;
static char *request_body;
static size_t request_body_len;

/* Loop state. */
static long warmup, requests, done; /* done counts warm-up and timed requests */
static long long *ns;
static long long started;
static jmp_buf request_end;
static int in_request, responded;

/* The first response (what every later one must equal) and the last (printed at the end). */
static struct {
	int status;
	char ctype[128];
	uint64_t hash;
	size_t len;
} first, last;
static char *last_body;
static size_t last_cap;
static long mismatch_at = -1;
static int check_status_only;
static size_t heap_before;

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static size_t heap_in_use(void)
{
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
}

static uint64_t fnv1a(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ull;
	while (len--) h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

static long env_long(const char *name, long fallback)
{
	const char *v = getenv(name);
	return v && *v ? strtol(v, NULL, 10) : fallback;
}

static const char *env_str(const char *name, const char *fallback)
{
	const char *v = getenv(name);
	return v ? v : fallback;
}

static __attribute__((noreturn)) void die(const char *what)
{
	fprintf(stderr, "loop-host: %s\n", what);
	exit(2);
}

static void read_body(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) die("cannot open TSKVM_LOOP_BODY");
	size_t cap = 1 << 16;
	request_body = malloc(cap);
	ssize_t got;
	while (request_body && (got = read(fd, request_body + request_body_len, cap - request_body_len)) > 0)
		if ((request_body_len += (size_t)got) == cap) request_body = realloc(request_body, cap *= 2);
	if (!request_body) die("out of memory for the body");
	close(fd);
}

static void parse_headers(const char *text)
{
	size_t n = 0;
	for (const char *p = text; *p; p++) n += *p == '\n';
	request_headers = calloc(n + 1, sizeof *request_headers);
	char *copy = strdup(text), *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *colon = strchr(line, ':');
		if (!colon) die("TSKVM_LOOP_HEADERS: a line without ':'");
		struct kvm_request_header *h = &request_headers[request.num_headers++];
		h->field = line;
		h->field_colon = (uint32_t)(colon - line);
		h->field_len = (uint32_t)strlen(line);
	}
	request.headers = request_headers;
}

__attribute__((constructor)) static void loop_host_init(void)
{
	setenv("KVM_NAME", "loop-host", 1);
	warmup = env_long("TSKVM_LOOP_WARMUP", 0);
	check_status_only = strcmp(env_str("TSKVM_LOOP_CHECK", "body"), "status") == 0;
	requests = env_long("TSKVM_LOOP_REQUESTS", 1);
	if (warmup < 0 || requests < 1) die("TSKVM_LOOP_REQUESTS must be at least 1, TSKVM_LOOP_WARMUP at least 0");
	ns = calloc((size_t)requests, sizeof *ns);
	request.method = env_str("TSKVM_LOOP_METHOD", "GET");
	request.url = env_str("TSKVM_LOOP_URL", "/");
	request.arg = env_str("TSKVM_LOOP_ARG", "");
	request.content_type = env_str("TSKVM_LOOP_CONTENT_TYPE", "");
	request.method_len = (uint16_t)strlen(request.method);
	request.url_len = (uint16_t)strlen(request.url);
	request.arg_len = (uint16_t)strlen(request.arg);
	request.content_type_len = (uint16_t)strlen(request.content_type);
	const char *body = getenv("TSKVM_LOOP_BODY");
	if (body) {
		read_body(body);
		request.content = (const uint8_t *)request_body;
		request.content_len = request_body_len;
	}
	parse_headers(env_str("TSKVM_LOOP_HEADERS", ""));
}

/* ---------------------------------------------------------------------------------------------------
 * The loop
 */

static __attribute__((noreturn)) void report_and_exit(const char *failure)
{
	size_t heap_after = heap_in_use(); /* before the report's own FILE is allocated */
	const char *path = getenv("TSKVM_LOOP_REPORT");
	FILE *out = path ? fopen(path, "w") : stderr;
	if (!out) die("cannot write TSKVM_LOOP_REPORT");
	long timed = done > warmup ? done - warmup : 0;
	fprintf(out, "{\"requests\":%ld,\"ns\":[", timed);
	for (long i = 0; i < timed; i++) fprintf(out, "%s%lld", i ? "," : "", ns[i]);
	fprintf(out, "],\"status\":%d,\"content_type\":\"", last.status);
	for (const char *c = last.ctype; *c; c++)
		if (*c >= 0x20 && *c != '"' && *c != '\\') fputc(*c, out);
	fprintf(out, "\",\"bytes\":%zu,\"fnv1a\":\"%016llx\",\"heap_before\":%zu,\"heap_after\":%zu,\"mismatch\":%ld",
		last.len, (unsigned long long)last.hash, heap_before, heap_after, mismatch_at + 1);
	if (failure) fprintf(out, ",\"error\":\"%s\"", failure);
	fputs("}\n", out);
	if (out != stderr) fclose(out);
	fwrite(last_body, 1, last.len, stdout);
	fflush(stdout);
	exit(failure ? 1 : 0);
}

/* A request is over: its time is kept (past the warm-up) and its answer compared with the first. */
static void finish_request(void)
{
	long long elapsed = now_ns() - started;
	in_request = 0;
	if (!responded) report_and_exit("the handler returned without a response");
	if (done >= warmup) ns[done - warmup] = elapsed;
	if (done == 0) {
		first = last;
	} else if (mismatch_at < 0 && (last.status != first.status
	                               || (!check_status_only && (last.len != first.len || last.hash != first.hash)))) {
		mismatch_at = done;
	}
	if (++done == warmup) heap_before = heap_in_use();
	if (mismatch_at >= 0) report_and_exit("a response differed from the first one");
}

static void start_request(void)
{
	if (done == warmup + requests) report_and_exit(NULL);
	if (done == 0 && warmup == 0) heap_before = heap_in_use();
	responded = 0;
	in_request = 1;
	started = now_ns();
}

void wait_for_requests(void)
{
	for (;;) {
		start_request();
		if (!setjmp(request_end)) {
			if (handlers[3]) ((request_fn)handlers[3])(&request);
			else if (handlers[2] && request.content) ((post_fn)handlers[2])(request.url, request.arg, request.content_type, request.content, request.content_len);
			else if (handlers[1]) ((get_fn)handlers[1])(request.url, request.arg);
			else report_and_exit("no handler registered for this request");
		}
		finish_request();
	}
}

/* Paused style: the program's own loop comes back here after each response. */
void wait_for_requests_paused(struct kvm_request *req)
{
	if (in_request) finish_request();
	start_request();
	*req = request;
}

void register_func(int index, ...)
{
	va_list ap;
	va_start(ap, index);
	void *fn = va_arg(ap, void *);
	va_end(ap);
	if (index > 0 && index < (int)(sizeof handlers / sizeof *handlers)) handlers[index] = fn;
}

/* The response's head; its body is appended to last_body (the host copies it out of the VM; so does this). */
static void response_head(int16_t status, const void *ctype, size_t ctype_len, size_t body_len)
{
	if (!in_request) die("a response outside a request");
	if (body_len > last_cap && !(last_body = realloc(last_body, last_cap = body_len))) die("out of memory");
	last.status = status;
	last.len = 0;
	snprintf(last.ctype, sizeof last.ctype, "%.*s", (int)(ctype_len < 127 ? ctype_len : 127), (const char *)ctype);
}

static void response_end(void)
{
	last.hash = fnv1a(last_body, last.len);
	responded = 1;
	if (handlers[3] || handlers[2] || handlers[1]) longjmp(request_end, 1);
	/* paused style: back to the program, which loops into wait_for_requests_paused() */
}

void sys_backend_response(int16_t status, const void *ctype, size_t ctype_len, const void *body, size_t body_len,
                          const struct BackendResponseExtra *extra)
{
	(void)extra;
	response_head(status, ctype, ctype_len, body_len);
	if (body_len) memcpy(last_body, body, body_len);
	last.len = body_len;
	response_end();
}

/* As the host does: the body pulled from cb, at most 64 KiB a piece, until content_length bytes came. */
void begin_streaming_response(int16_t status, const void *ctype, size_t ctype_len, size_t content_length,
                              content_stream_func cb, const void *arg)
{
	response_head(status, ctype, ctype_len, content_length);
	while (last.len < content_length) {
		size_t left = content_length - last.len;
		struct streaming_content c = cb((void *)arg, left < 65536 ? left : 65536, last.len, content_length);
		if (c.len == 0) die("the streamed response stalled (the callback gave no bytes)");
		if (c.len > left) c.len = left;
		memcpy(last_body + last.len, c.data, c.len);
		last.len += c.len;
	}
	response_end();
	/* A paused-style program would come back here, which a noreturn call cannot do. */
	die("begin_streaming_response in a paused-style program");
}

/* ---------------------------------------------------------------------------------------------------
 * The rest of the API, answering as tskvm does for this one request
 */

long sys_set_cacheable(bool cached, long ttl_ms, long grace_ms, long keep_ms)
{
	(void)cached, (void)ttl_ms, (void)grace_ms, (void)keep_ms;
	return 0;
}

long sys_http_append(int where, const char *field, size_t len)
{
	(void)where, (void)field, (void)len;
	return 0;
}

long sys_http_set(int where, const char *field, size_t len)
{
	(void)where, (void)field, (void)len;
	return 0;
}

unsigned sys_http_find(int where, const char *key, size_t key_len, char *out, size_t out_len)
{
	if (where != REQ) return 0;
	for (unsigned i = 0; i < request.num_headers; i++) {
		const struct kvm_request_header *h = &request.headers[i];
		if (h->field_colon != key_len || strncasecmp(h->field, key, key_len) != 0) continue;
		if (!out) return h->field_len;
		if (out_len < h->field_len) return 0;
		memcpy(out, h->field, h->field_len);
		return h->field_len;
	}
	return 0;
}

unsigned long sys_http_method(char *out, size_t out_len)
{
	if (!out) return request.method_len;
	if (out_len < request.method_len) return 0;
	memcpy(out, request.method, request.method_len);
	return request.method_len;
}

struct shared_memory_info shared_memory_area(void)
{
	static struct shared_memory_info area;
	long mib = env_long("TSKVM_LOOP_SHARED_MEMORY", 0);
	if (!area.ptr && mib > 0) {
		void *p = mmap(NULL, (size_t)mib << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) die("cannot map the shared memory");
		area.ptr = (uint64_t)p;
		area.end = area.ptr + ((uint64_t)mib << 20);
	}
	return area;
}

int sys_make_ephemeral(int ephemeral)
{
	(void)ephemeral;
	return 0;
}

void get_meminfo(struct meminfo *info)
{
	info->max_memory = (uint64_t)env_long("TSKVM_LOOP_MAX_MEMORY", 256) << 20;
	info->max_reqmem = (uint64_t)env_long("TSKVM_LOOP_MAX_REQUEST_MEMORY", 64) << 20;
	info->reqmem_upper = info->max_reqmem;
	info->reqmem_current = 0;
}

void sys_log(const char *buf, size_t len)
{
	fprintf(stderr, "%.*s\n", (int)len, buf);
}

int sys_is_debug(void)
{
	return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Storage: this process is its own storage VM, so a storage call is a plain call — with the inputs
 * copied in and the result copied out at storage_return, as the host does, and storage_noreturn
 * ending the function. Tasks and timers are not run: sys_is_storage() is 0, so a program does not
 * schedule them here.
 */

static struct {
	void *dst;
	size_t dst_len, copied, given;
	int returned;
	jmp_buf noreturn;
} storage;

long sys_is_storage(void)
{
	return 0;
}

long sys_storage_allow(void (*fn)(void))
{
	(void)fn;
	return -1;
}

long storage_callv(storage_func fn, size_t n, const struct virtbuffer buffers[], void *dst, size_t dst_len)
{
	if (n > 64) return -1;
	struct virtbuffer copies[64];
	for (size_t i = 0; i < n; i++) {
		void *copy = malloc(buffers[i].len ? buffers[i].len : 1);
		if (!copy) die("out of memory");
		memcpy(copy, buffers[i].data, buffers[i].len);
		copies[i] = (struct virtbuffer){ copy, buffers[i].len };
	}
	storage.dst = dst;
	storage.dst_len = dst_len;
	storage.returned = 0;
	if (!setjmp(storage.noreturn)) fn(n, copies, dst_len);
	for (size_t i = 0; i < n; i++) free((void *)copies[i].data);
	if (!storage.returned) return -1;
	return dst ? (long)storage.copied : (long)storage.given;
}

void storage_return(const void *data, size_t len)
{
	storage.copied = data && storage.dst ? (len < storage.dst_len ? len : storage.dst_len) : 0;
	if (storage.copied) memcpy(storage.dst, data, storage.copied);
	storage.given = len;
	storage.returned = 1;
}

void storage_noreturn(const void *data, size_t len)
{
	storage_return(data, len);
	longjmp(storage.noreturn, 1);
}

long sys_storage_task(storage_task_func task, const void *data, size_t len, uint64_t start_ms, uint64_t period_ms)
{
	(void)task, (void)data, (void)len, (void)start_ms, (void)period_ms;
	return -1;
}

long stop_storage_task(long id)
{
	(void)id;
	return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * sys_fetch: made here with a plain HTTP/1.0 client (http:// only); like the host, the body goes into
 * memory mapped for it, the program's to munmap.
 */
#include "../examples/http-get.h"

long sys_fetch(const char *url, size_t url_len, struct curl_op *op, const struct curl_fields *fields,
               const struct curl_options *opts)
{
	(void)fields, (void)opts;
	char copy[1024];
	struct http_answer a;
	if (url_len >= sizeof copy) return -3; /* CURLE_URL_MALFORMAT */
	memcpy(copy, url, url_len);
	copy[url_len] = 0;
	if (http_get(copy, &a) != 0) return -7; /* CURLE_COULDNT_CONNECT */
	op->status = (uint32_t)a.status;
	op->content_length = (uint32_t)a.len;
	op->content = a.len ? mmap(NULL, a.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
	if (op->content == MAP_FAILED) die("cannot map a fetched body");
	if (a.len) memcpy(op->content, a.body, a.len);
	free(a.body);
	op->ctlen = (uint32_t)strlen(a.ctype) + 1;
	memcpy(op->ctype, a.ctype, op->ctlen);
	return 0;
}
