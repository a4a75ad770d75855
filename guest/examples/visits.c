/*
 * visits — a visit counter kept in the program's storage VM (config storage = true), with a periodic
 * storage task. Request VMs are reset after every request; what they all share lives in the one
 * long-lived storage VM, changed only by calls that run there one at a time.
 *
 *   any request  storage_call(record, path): one more visit of the URL's path (the part before "?")
 *                → 200 text/plain "path=<path> visits=<its count> total=<all visits> paths=<distinct paths>\n"
 *   ?top         → the 5 most visited paths, "<count> <path>\n" each, most first (a tie: the first seen first)
 *   ?rate        → "last_second=<visits in the last whole second> ticks=<seconds counted>\n": a storage
 *                  task scheduled for every second closes the window
 * At most 255 distinct paths (their first 63 bytes) are told apart; the rest count as "(other)". When the
 * storage VM does not answer: 503.
 *
 *   natively:   visits URL...   → the answer to each URL in turn, from one process (no task runs)
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "kvm_api.h"

#define MAX_PATHS 256
#define PATH_BYTES 63

/* The storage VM's state. */
static struct visit {
	char path[PATH_BYTES + 1];
	uint64_t count;
} visits[MAX_PATHS];
static size_t paths;
static uint64_t total, this_second, last_second, ticks;

static struct visit *visit_of(const char *path, size_t len)
{
	if (len > PATH_BYTES)
		len = PATH_BYTES;
	for (size_t i = 0; i < paths; i++)
		if (strlen(visits[i].path) == len && memcmp(visits[i].path, path, len) == 0)
			return &visits[i];
	struct visit *v = &visits[paths < MAX_PATHS - 1 ? paths++ : MAX_PATHS - 1];
	if (v == &visits[MAX_PATHS - 1])
		strcpy(v->path, "(other)");
	else
		memcpy(v->path, path, len);
	return v;
}

static int record(const char *path, size_t len, char *out, size_t size)
{
	struct visit *v = visit_of(path, len);
	v->count++;
	total++;
	this_second++;
	return snprintf(out, size, "path=%s visits=%" PRIu64 " total=%" PRIu64 " paths=%zu\n", v->path, v->count, total, paths);
}

static int top(char *out, size_t size)
{
	int len = 0;
	char taken[MAX_PATHS] = { 0 };
	for (int rank = 0; rank < 5; rank++) {
		size_t best = MAX_PATHS;
		for (size_t i = 0; i < MAX_PATHS; i++)
			if (!taken[i] && visits[i].count > 0 && (best == MAX_PATHS || visits[i].count > visits[best].count))
				best = i;
		if (best == MAX_PATHS)
			break;
		taken[best] = 1;
		len += snprintf(out + len, size - (size_t)len, "%" PRIu64 " %s\n", visits[best].count, visits[best].path);
	}
	return len;
}

static int rate(char *out, size_t size)
{
	return snprintf(out, size, "last_second=%" PRIu64 " ticks=%" PRIu64 "\n", last_second, ticks);
}

/* What runs in the storage VM. */
static void storage_record(size_t n, struct virtbuffer b[], size_t reslen)
{
	char out[160];
	(void)reslen;
	storage_return(out, n == 1 ? (size_t)record(b[0].data, b[0].len, out, sizeof out) : 0);
}
static void storage_top(size_t n, struct virtbuffer b[], size_t reslen)
{
	char out[512];
	(void)n; (void)b; (void)reslen;
	storage_return(out, (size_t)top(out, sizeof out));
}
static void storage_rate(size_t n, struct virtbuffer b[], size_t reslen)
{
	char out[96];
	(void)n; (void)b; (void)reslen;
	storage_return(out, (size_t)rate(out, sizeof out));
}
static void storage_tick(void *data, size_t len)
{
	(void)data; (void)len;
	last_second = this_second;
	this_second = 0;
	ticks++;
}

static void on_get(const char *url, const char *arg)
{
	(void)arg;
	char out[512];
	const char *query = strchr(url, '?');
	long len;
	if (query && strcmp(query, "?top") == 0)
		len = storage_call(storage_top, NULL, 0, out, sizeof out);
	else if (query && strcmp(query, "?rate") == 0)
		len = storage_call(storage_rate, NULL, 0, out, sizeof out);
	else
		len = storage_call(storage_record, url, query ? (size_t)(query - url) : strlen(url), out, sizeof out);
	if (len < 0)
		backend_response_str(503, "text/plain", "the storage VM did not answer\n");
	backend_response(200, "text/plain", 10, out, (size_t)len);
}

static void on_post(const char *url, const char *arg, const char *ctype, const uint8_t *body, size_t len)
{
	(void)ctype; (void)body; (void)len;
	on_get(url, arg);
}

int main(int argc, char **argv)
{
	if (!kvm_is_sandboxed()) {
		char out[512];
		for (int i = 1; i < argc; i++) {
			const char *query = strchr(argv[i], '?');
			if (query && strcmp(query, "?top") == 0)
				fwrite(out, 1, (size_t)top(out, sizeof out), stdout);
			else if (query && strcmp(query, "?rate") == 0)
				fwrite(out, 1, (size_t)rate(out, sizeof out), stdout);
			else
				fwrite(out, 1, (size_t)record(argv[i], query ? (size_t)(query - argv[i]) : strlen(argv[i]), out, sizeof out), stdout);
		}
		return 0;
	}
	if (sys_is_storage()) {
		STORAGE_ALLOW(storage_record);
		STORAGE_ALLOW(storage_top);
		STORAGE_ALLOW(storage_rate);
		STORAGE_ALLOW(storage_tick);
		schedule_storage_task(storage_tick, NULL, 0, 1.0f, 1.0f);
	}
	set_backend_get(on_get);
	set_backend_post(on_post);
	wait_for_requests();
}
