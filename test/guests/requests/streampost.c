/*
 * req-streampost — a streaming POST handler (register_func 4) and a POST handler (2). The streaming
 * handler gets the body piece by piece and keeps a running FNV-1a hash, the pieces' count and whether
 * each offset followed the last; the POST handler, called after the last piece, answers (text/plain,
 * 200):
 *
 *   "pieces=<calls> bytes=<bytes seen> in_order=<1|0> fnv=<hash, 16 hex digits> body=<null|set> len=<its len>\n"
 *
 * (body: whether the POST handler got a pointer to the body; len: the length it was told). The last
 * segment of the URL's path changes what the streaming handler does:
 *   /short   takes one byte less of the second piece than it was given
 *   /crash   dereferences NULL in the second piece
 *   anything else: takes every piece whole
 * A GET handler (1) answers "get" for requests without a body.
 *
 * Natively: `req-streampost URL < body` gives the body to the streaming handler in pieces of 65536
 * bytes, as the host does, then calls the POST handler.
 */
#include <inttypes.h>

#include "common.h"

static uint64_t hash = 0xcbf29ce484222325ull;
static size_t pieces, seen;
static int in_order = 1;

static long on_piece(const char *url, const char *arg, const char *ctype, const uint8_t *data, size_t len, size_t off)
{
	(void)arg; (void)ctype;
	char path[64];
	url_path(url, path, sizeof path);
	const char *how = strrchr(path, '/');
	pieces++;
	if (off != seen)
		in_order = 0;
	if (pieces == 2 && how && strcmp(how, "/crash") == 0)
		*(volatile int *)0 = 1;
	size_t take = pieces == 2 && how && strcmp(how, "/short") == 0 ? len - 1 : len;
	for (size_t i = 0; i < take; i++)
		hash = (hash ^ data[i]) * 0x100000001b3ull;
	seen += take;
	return (long)take;
}

static void on_post(const char *url, const char *arg, const char *ctype, const uint8_t *body, size_t len)
{
	(void)url; (void)arg; (void)ctype;
	char out[256];
	snprintf(out, sizeof out, "pieces=%zu bytes=%zu in_order=%d fnv=%016" PRIx64 " body=%s len=%zu\n", pieces, seen, in_order, hash,
	         body ? "set" : "null", len);
	respond_str(200, out);
}

static void on_get(const char *url, const char *arg)
{
	(void)url; (void)arg;
	respond_str(200, "get\n");
}

int main(int argc, char **argv)
{
	if (native_mode()) {
		size_t len = 0, cap = 1 << 16;
		uint8_t *body = malloc(cap);
		size_t got;
		while ((got = fread(body + len, 1, cap - len, stdin)) > 0)
			if ((len += got) == cap)
				body = realloc(body, cap *= 2);
		const char *url = argc > 1 ? argv[1] : "/";
		for (size_t off = 0; off < len; off += 65536)
			on_piece(url, "", "", body + off, len - off < 65536 ? len - off : 65536, off);
		on_post(url, "", "", NULL, len);
		return 0;
	}
	set_backend_get(on_get);
	set_backend_post(on_post);
	set_backend_stream_post(on_piece);
	wait_for_requests();
}
