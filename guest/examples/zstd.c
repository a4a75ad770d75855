/*
 * zstd — compresses or decompresses the body with libzstd, as `arg` says:
 *   ""  or "compress"      compress at level 3 (zstd's default), with a content checksum
 *   "compress:N"           compress at level N (ZSTD_minCLevel()..ZSTD_maxCLevel(), e.g. -5 or 19)
 *   "decompress"           decompress one or more concatenated zstd frames
 * The compression and decompression contexts are created (and the compressor's work space sized for
 * a large input at the default level) in main(), before the VM is frozen: every request starts with
 * them ready.
 *
 *   in tskvm:   any method, the body → 200 application/zstd (compressed) or application/octet-stream
 *               (decompressed); errors → 400 text/plain "zstd: <message>\n", where the message is
 *               zstd's own error name (ZSTD_getErrorName) for data zstd rejects, e.g.
 *               "zstd: Unknown frame descriptor"; out of memory for the output → 413, and when zstd
 *               itself runs out (e.g. level 22 on a large body) → 500 "zstd: Allocation error : …"
 *   natively:   zstd [ARG] < in > out  → the same bytes on stdout; exit status 0, or 1 with the
 *               400 message on stdout
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>
#include "kvm_api.h"
#include "native.h"
#include "heap.h"
#include "respond.h"

#define DEFAULT_LEVEL 3

static ZSTD_CCtx *cctx;
static ZSTD_DCtx *dctx;

struct result {
	int         status;     /* 200, 400, 413 or 500 */
	const char *ctype;
	void       *out;
	size_t      len;
};

static struct result error(int status, const char *fmt, const char *detail)
{
	struct result r = { status, "text/plain", NULL, 0 };
	char *msg = NULL;
	FILE *f = open_memstream(&msg, &r.len);
	fputs("zstd: ", f);
	fprintf(f, fmt, detail);
	fputc('\n', f);
	fclose(f);
	r.out = msg;
	return r;
}

static struct result compress(const void *in, size_t len, int level)
{
	size_t r;
	if (ZSTD_isError(r = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters))
	    || ZSTD_isError(r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level))
	    || ZSTD_isError(r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)))
		return error(400, "%s", ZSTD_getErrorName(r));
	size_t cap = ZSTD_compressBound(len);
	void *out = malloc(cap);
	if (!out) return error(413, "%s", "out of memory for the compressed data");
	r = ZSTD_compress2(cctx, out, cap, in, len);
	if (ZSTD_isError(r)) {
		free(out);
		return error(500, "%s", ZSTD_getErrorName(r));
	}
	return (struct result){ 200, "application/zstd", out, r };
}

static struct result decompress(const void *in, size_t len)
{
	if (len == 0) return error(400, "%s", "empty input, expected a zstd frame");
	ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
	/* Start from the size the first frame declares (when it does and it is sane), grow as needed. */
	unsigned long long declared = ZSTD_getFrameContentSize(in, len);
	size_t cap = ZSTD_DStreamOutSize();
	if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != ZSTD_CONTENTSIZE_ERROR && declared < (1ull << 30))
		cap = (size_t)declared + 1;
	unsigned char *out = malloc(cap);
	if (!out) return error(413, "%s", "out of memory for the decompressed data");
	ZSTD_inBuffer src = { in, len, 0 };
	ZSTD_outBuffer dst = { out, cap, 0 };
	size_t left = 0;
	while (src.pos < src.size || left != 0) {
		if (dst.pos == dst.size) {
			size_t bigger = dst.size * 2;
			unsigned char *grown = realloc(dst.dst, bigger);
			if (!grown) { free(dst.dst); return error(413, "%s", "out of memory for the decompressed data"); }
			dst.dst = grown;
			dst.size = bigger;
		}
		size_t before_in = src.pos, before_out = dst.pos;
		left = ZSTD_decompressStream(dctx, &dst, &src);
		if (ZSTD_isError(left)) { free(dst.dst); return error(400, "%s", ZSTD_getErrorName(left)); }
		if (left != 0 && src.pos == src.size && dst.pos < dst.size && before_in == src.pos && before_out == dst.pos) {
			free(dst.dst);
			return error(400, "%s", "truncated input, the last frame is incomplete");
		}
	}
	return (struct result){ 200, "application/octet-stream", dst.dst, dst.pos };
}

/* arg: "" | "compress" | "compress:N" | "decompress" */
static struct result run(const char *arg, const void *in, size_t len)
{
	if (!in) in = "";
	if (arg[0] == 0 || strcmp(arg, "compress") == 0) return compress(in, len, DEFAULT_LEVEL);
	if (strcmp(arg, "decompress") == 0) return decompress(in, len);
	if (strncmp(arg, "compress:", 9) == 0) {
		char *end;
		errno = 0;
		long level = strtol(arg + 9, &end, 10);
		if (arg[9] == 0 || *end || errno || level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
			return error(400, "invalid level \"%s\"", arg + 9);
		return compress(in, len, (int)level);
	}
	return error(400, "unknown arg \"%s\", expected compress, compress:LEVEL or decompress", arg);
}

static void on_request(const struct kvm_request *req)
{
	struct result r = run(req->arg, req->content, req->content_len);
	respond_owned(r.status, r.ctype, r.out, r.len, free, NULL);
}

int main(int argc, char **argv)
{
	cctx = ZSTD_createCCtx();
	dctx = ZSTD_createDCtx();
	if (!cctx || !dctx) { fputs("zstd: cannot create the contexts\n", stderr); return 2; }
	if (!kvm_is_sandboxed()) {
		size_t len;
		unsigned char *in = read_all(0, &len);
		if (!in) { fputs("zstd: out of memory\n", stderr); return 2; }
		struct result r = run(argc > 1 ? argv[1] : "", in, len);
		fwrite(r.out, 1, r.len, stdout);
		return r.status == 200 ? 0 : 1;
	}
	/* Size the compressor's tables for a large input at the default level once, before the freeze,
	 * and keep a heap for the output (heap.h). */
	reserve_heap(8 << 20);
	size_t warm = 1 << 20;
	void *src = calloc(1, warm), *dst = malloc(ZSTD_compressBound(warm));
	if (src && dst) {
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, DEFAULT_LEVEL);
		ZSTD_compress2(cctx, dst, ZSTD_compressBound(warm), src, warm);
	}
	free(src);
	free(dst);
	set_backend_request(on_request);
	wait_for_requests();
}
