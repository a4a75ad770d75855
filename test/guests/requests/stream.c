/*
 * req-stream — a streamed response (begin_streaming_response). GET /<how>?<size>: a body of <size>
 * bytes (default 1 MiB), byte i being (i * 131 + (i >> 8)) & 0xff, with "X-Stream: yes", content type
 * application/octet-stream. The callback's state lives in the handler's stack frame, which the
 * request leaves behind when it begins the stream, so the host must not run the callback over it.
 * <how> decides what the callback does:
 *
 *   /body    gives what is asked for, at most 40 000 bytes a time (so pieces do not line up with max)
 *   /stall   gives nothing after the first piece
 *   /crash   dereferences NULL after the first piece
 *   /spin    loops forever after the first piece
 *   /bad     returns a pointer outside guest memory after the first piece
 *
 * Natively: `req-stream /body?SIZE` writes the same body to stdout, calling the callback as the host
 * would, with max = 65536.
 */
#include "common.h"

struct stream_state {
	size_t size;
	int how;
	uint8_t piece[40000];
};
enum { BODY, STALL, CRASH, SPIN, BAD };
static volatile int *volatile null_pointer;

static struct streaming_content next_piece(void *arg, size_t max, size_t written, size_t total)
{
	struct stream_state *s = arg;
	if (written > 0 && s->how != BODY) {
		if (s->how == CRASH)
			*null_pointer = 1;
		if (s->how == SPIN)
			for (;;)
				__asm__ volatile("");
		if (s->how == BAD)
			return (struct streaming_content){ (const void *)0x7ffffffff000, 16 };
		return (struct streaming_content){ s->piece, 0 };
	}
	size_t n = total - written;
	if (n > max)
		n = max;
	if (n > sizeof s->piece)
		n = sizeof s->piece;
	for (size_t i = 0; i < n; i++) {
		size_t at = written + i;
		s->piece[i] = (uint8_t)(at * 131 + (at >> 8));
	}
	return (struct streaming_content){ s->piece, n };
}

static void on_get(const char *url, const char *arg)
{
	char path[64];
	url_path(url, path, sizeof path);
	const char *how = strrchr(path, '/');
	struct stream_state s = { .size = 1 << 20, .how = BODY };
	const char *size = request_param(url, arg);
	if (*size)
		s.size = strtoull(size, NULL, 10);
	if (strcmp(how, "/stall") == 0)
		s.how = STALL;
	else if (strcmp(how, "/crash") == 0)
		s.how = CRASH;
	else if (strcmp(how, "/spin") == 0)
		s.how = SPIN;
	else if (strcmp(how, "/bad") == 0)
		s.how = BAD;
	if (native) {
		for (size_t written = 0; written < s.size;) {
			struct streaming_content c = next_piece(&s, 65536, written, s.size);
			if (c.len == 0)
				exit(1);
			fwrite(c.data, 1, c.len, stdout);
			written += c.len;
		}
		fflush(stdout);
		return;
	}
	http_append(RESP, "X-Stream: yes");
	begin_streaming_response(200, "application/octet-stream", 24, s.size, next_piece, &s);
}

int main(int argc, char **argv)
{
	return serve_get(argc, argv, on_get, 0);
}
