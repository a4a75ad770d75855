/*
 * report — a CSV report of any size, streamed (begin_streaming_response): the body is made piece by
 * piece as the client takes it, so neither the VM nor the host ever holds it whole.
 *
 *   GET ?rows=N&seed=S   → 200 text/csv, N rows (default 1000, at most 50 000 000) of made-up sales,
 *                          the same for the same seed (default 1), with Content-Length known up front:
 *     id,region,product,units,unit_price,total
 *     00000000,north ,gizmo   , 97, 10.99,  1066.03
 *   Every row is 46 bytes, so the length is known before the first one is made, and any row can be
 *   made on its own (from a hash of the seed and its number) wherever a piece starts.
 *
 *   natively:   report [ROWS [SEED]]   → the same CSV on stdout, made by the same callback
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kvm_api.h"

static const char HEADER[] = "id,region,product,units,unit_price,total\n";
#define HEADER_LEN (sizeof HEADER - 1)
#define ROW_LEN 46
#define MAX_ROWS 50000000ull

static const char *const REGIONS[] = { "north", "south", "east", "west", "centre" };
static const char *const PRODUCTS[] = { "widget", "gadget", "sprocket", "gizmo", "doohicky", "bracket" };

struct report {
	uint64_t rows, seed;
	char piece[64 * 1024 + ROW_LEN];
};

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Row `id`, ROW_LEN bytes and a NUL, into out (64 bytes: room the formats could take, were the values not bounded). */
static void row(const struct report *r, uint64_t id, char out[64])
{
	uint64_t h = mix(r->seed * 0x100000001b3ull + id);
	unsigned units = 1 + (unsigned)(h % 99);
	unsigned price = 100 + (unsigned)((h >> 8) % 9900);
	uint64_t total = (uint64_t)units * price;
	snprintf(out, 64, "%08" PRIu64 ",%-6s,%-8s,%3u,%3u.%02u,%6" PRIu64 ".%02u\n", id,
	         REGIONS[(h >> 24) % 5], PRODUCTS[(h >> 32) % 6], units, price / 100, price % 100, total / 100,
	         (unsigned)(total % 100));
}

/* The bytes [written, written + n) of the report, n ≤ max: whole rows where it can. */
static struct streaming_content next_piece(void *arg, size_t max, size_t written, size_t total)
{
	struct report *r = arg;
	size_t n = 0, at = written;
	if (max > sizeof r->piece - ROW_LEN)
		max = sizeof r->piece - ROW_LEN;
	while (n < max && at < total) {
		char line[64];
		const char *from;
		size_t len, skip;
		if (at < HEADER_LEN) {
			from = HEADER, len = HEADER_LEN, skip = at;
		} else {
			row(r, (at - HEADER_LEN) / ROW_LEN, line);
			from = line, len = ROW_LEN, skip = (at - HEADER_LEN) % ROW_LEN;
		}
		size_t take = len - skip;
		if (take > max - n)
			take = max - n;
		memcpy(r->piece + n, from + skip, take);
		n += take;
		at += take;
	}
	return (struct streaming_content){ r->piece, n };
}

static uint64_t param(const char *url, const char *key, uint64_t fallback)
{
	const char *q = strchr(url, '?');
	size_t klen = strlen(key);
	for (const char *p = q; p; p = strchr(p + 1, '&'))
		if (strncmp(p + 1, key, klen) == 0 && p[1 + klen] == '=')
			return strtoull(p + 2 + klen, NULL, 10);
	return fallback;
}

static void on_get(const char *url, const char *arg)
{
	(void)arg;
	/* The callback's state stays in this frame: the host calls it below the frame that began the stream. */
	struct report r = { .rows = param(url, "rows", 1000), .seed = param(url, "seed", 1) };
	if (r.rows > MAX_ROWS) {
		backend_response_str(400, "text/plain", "rows: at most 50000000\n");
		return;
	}
	const char ctype[] = "text/csv";
	begin_streaming_response(200, ctype, sizeof ctype - 1, HEADER_LEN + r.rows * ROW_LEN, next_piece, &r);
}

int main(int argc, char **argv)
{
	if (!kvm_is_sandboxed()) {
		static struct report r;
		r.rows = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000;
		r.seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
		size_t total = HEADER_LEN + r.rows * ROW_LEN;
		for (size_t written = 0; written < total;) {
			struct streaming_content c = next_piece(&r, 65536, written, total);
			fwrite(c.data, 1, c.len, stdout);
			written += c.len;
		}
		return 0;
	}
	set_backend_get(on_get);
	wait_for_requests();
}
