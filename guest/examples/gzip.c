/*
 * gzip — gzip-compresses the body with libdeflate (whole buffer, one gzip member, MTIME 0), at the
 * level `arg` gives: 0 (stored) .. 12 (slowest, smallest), default 6. The compressor of the default
 * level is allocated in main(), before the VM is frozen; other levels are allocated per request.
 *
 *   in tskvm:   any method, the body → 200 with "Content-Encoding: gzip" and the request's
 *               Content-Type (application/octet-stream when it has none), the gzip data as body;
 *               a bad level → 400 text/plain "gzip: invalid level \"…\", expected 0 to 12\n"
 *   natively:   gzip [LEVEL] < in > out.gz  → the same bytes on stdout; exit status 0, or 1 with the
 *               400 message on stdout
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libdeflate.h>
#include "kvm_api.h"
#include "native.h"
#include "heap.h"
#include "respond.h"

#define DEFAULT_LEVEL 6
#define MAX_LEVEL 12

static struct libdeflate_compressor *default_compressor;

struct result {
	int    status;   /* 200, 400 or 500 */
	char  *out;
	size_t len;
};

static struct result message(int status, const char *fmt, const char *detail)
{
	struct result r = { status, NULL, 0 };
	FILE *f = open_memstream(&r.out, &r.len);
	fputs("gzip: ", f);
	fprintf(f, fmt, detail);
	fputc('\n', f);
	fclose(f);
	return r;
}

static struct result gzip(const char *arg, const void *in, size_t len)
{
	long level = DEFAULT_LEVEL;
	if (arg && arg[0]) {
		char *end;
		errno = 0;
		level = strtol(arg, &end, 10);
		if (*end || errno || level < 0 || level > MAX_LEVEL || arg[0] == ' ' || arg[0] == '+')
			return message(400, "invalid level \"%s\", expected 0 to 12", arg);
	}
	struct libdeflate_compressor *c = level == DEFAULT_LEVEL ? default_compressor : libdeflate_alloc_compressor((int)level);
	if (!c) return message(500, "%s", "cannot allocate the compressor");
	size_t cap = libdeflate_gzip_compress_bound(c, len);
	struct result r = { 200, malloc(cap), 0 };
	if (!r.out) return message(500, "%s", "out of memory for the compressed data");
	r.len = libdeflate_gzip_compress(c, in ? in : "", len, r.out, cap);
	if (c != default_compressor) libdeflate_free_compressor(c);
	if (r.len == 0) return message(500, "%s", "compression failed");
	return r;
}

static void on_request(const struct kvm_request *req)
{
	struct result r = gzip(req->arg, req->content, req->content_len);
	if (r.status != 200) {
		respond_owned(r.status, "text/plain", r.out, r.len, free, NULL);
		return;
	}
	static const struct ResponseHeader headers[] = { KVM_HEADER("Content-Encoding: gzip") };
	const char *ctype = req->content_type_len ? req->content_type : "application/octet-stream";
	struct BackendResponseExtra extra = { headers, 1, false, 0, 0, 0, { 0, 0, 0, 0 } };
	respond_owned(200, ctype, r.out, r.len, free, &extra);
}

int main(int argc, char **argv)
{
	default_compressor = libdeflate_alloc_compressor(DEFAULT_LEVEL);
	if (!default_compressor) { fputs("gzip: cannot allocate the compressor\n", stderr); return 2; }
	if (!kvm_is_sandboxed()) {
		size_t len;
		unsigned char *in = read_all(0, &len);
		if (!in) { fputs("gzip: out of memory\n", stderr); return 2; }
		struct result r = gzip(argc > 1 ? argv[1] : "", in, len);
		fwrite(r.out, 1, r.len, stdout);
		return r.status == 200 ? 0 : 1;
	}
	reserve_heap(8 << 20); /* the output buffer from the heap, not an mmap per request (heap.h) */
	set_backend_request(on_request);
	wait_for_requests();
}
