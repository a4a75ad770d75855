/*
 * thumbnail — JPEG → small JPEG with TurboJPEG: the decoder scales in the DCT (by M/8) to the
 * smallest size at or above the target, an area-average filter takes it the rest of the way, and the
 * result is encoded again (4:2:0, or grayscale for a grayscale JPEG, CMYK for a CMYK one).
 *
 *   arg   "N" or comma-separated options, all optional: "max=128,q=80"
 *           max=1..4096  (or a bare N) the thumbnail fits in N×N, keeping the aspect ratio; an
 *                        image that already fits keeps its size (default 128)
 *           q=1..100     JPEG quality (default 80)
 *
 *   in tskvm:   any method with the JPEG as the body
 *                 → 200 image/jpeg
 *                 → 422 text/plain for a JPEG that does not decode (corrupt or truncated: warnings
 *                   count as errors), 415 for a body that is not a JPEG, 400 for a bad arg or no body
 *   natively:   thumbnail [ARG] < photo.jpg > thumb.jpg — the same bytes on stdout; errors print
 *               their text on stderr and exit with status 1
 *
 * Initialised once in main(), before the VM is frozen: the TurboJPEG decompressor and compressor
 * handles, the list of scaling factors, and a warm-up thumbnail of a tiny JPEG (the library's lazy
 * one-time set-up then is part of the frozen image). And the heap is grown once (heap.h), so that
 * image buffers cost no brk or mmap (VM exits) per request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <turbojpeg.h>
#include "kvm_api.h"
#include "native.h"
#include "heap.h"
#include "respond.h"

static tjhandle decompressor, compressor;
static tjscalingfactor *factors;
static int num_factors;

struct result {
	int status;
	unsigned char *jpeg; /* tjAlloc'd */
	unsigned long jpeg_len;
	char reason[200];
};

static int fail(struct result *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct result *r, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof r->reason, fmt, ap);
	va_end(ap);
	r->status = status;
	return -1;
}

static int parse_options(const char *arg, int *max, int *quality, struct result *r)
{
	*max = 128;
	*quality = 80;
	for (const char *p = arg; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len), *num = eq ? eq + 1 : p;
		char *stop;
		errno = 0;
		long v = strtol(num, &stop, 10);
		if (stop == num || stop != p + len || errno) return fail(r, 400, "bad option '%.*s' in arg (expected N, max=N or q=N)", (int)len, p);
		size_t key = eq ? (size_t)(eq - p) : 0;
		if ((key == 0 || (key == 3 && !memcmp(p, "max", 3))) && v >= 1 && v <= 4096) *max = (int)v;
		else if (key == 1 && *p == 'q' && v >= 1 && v <= 100) *quality = (int)v;
		else return fail(r, 400, "bad option '%.*s' in arg (max=1..4096, q=1..100)", (int)len, p);
		p = end ? end + 1 : p + len;
	}
	return 0;
}

/* Area average of an sw×sh image with `ch` channels down to tw×th (tw ≤ sw, th ≤ sh), in integers:
 * in units where a source pixel is tw (th) wide, a target pixel covers exactly sw (sh) of them. */
static void shrink(const unsigned char *src, int sw, int sh, unsigned char *dst, int tw, int th, int ch)
{
	for (int ty = 0; ty < th; ty++) {
		uint64_t y0 = (uint64_t)ty * sh, y1 = y0 + sh; /* in source pixels × th */
		for (int tx = 0; tx < tw; tx++) {
			uint64_t x0 = (uint64_t)tx * sw, x1 = x0 + sw;
			uint64_t sum[4] = { 0, 0, 0, 0 };
			for (uint64_t sy = y0 / th; sy * th < y1; sy++) {
				uint64_t wy = (sy + 1) * th < y1 ? (sy + 1) * th : y1;
				wy -= sy * th > y0 ? sy * th : y0;
				const unsigned char *row = src + (size_t)sy * sw * ch;
				for (uint64_t sx = x0 / tw; sx * tw < x1; sx++) {
					uint64_t wx = (sx + 1) * tw < x1 ? (sx + 1) * tw : x1;
					wx -= sx * tw > x0 ? sx * tw : x0;
					for (int c = 0; c < ch; c++) sum[c] += wx * wy * row[sx * ch + c];
				}
			}
			uint64_t area = (uint64_t)sw * sh;
			for (int c = 0; c < ch; c++) dst[((size_t)ty * tw + tx) * ch + c] = (unsigned char)((sum[c] + area / 2) / area);
		}
	}
}

static int convert(const unsigned char *in, size_t len, const char *arg, struct result *r)
{
	int max, quality, w, h, subsamp, colorspace;
	memset(r, 0, sizeof *r);
	if (parse_options(arg, &max, &quality, r)) return -1;
	if (len == 0) return fail(r, 400, "no image: send a JPEG as the request body");
	if (len < 3 || in[0] != 0xFF || in[1] != 0xD8 || in[2] != 0xFF) return fail(r, 415, "not a JPEG image");
	if (tjDecompressHeader3(decompressor, in, len, &w, &h, &subsamp, &colorspace))
		return fail(r, 422, "JPEG: %s", tjGetErrorStr2(decompressor));

	/* The target: fit in max×max, never enlarged. */
	int tw = w, th = h;
	if (w >= h && w > max) tw = max, th = (int)(((int64_t)h * max + w / 2) / w);
	else if (h > w && h > max) th = max, tw = (int)(((int64_t)w * max + h / 2) / h);
	if (tw < 1) tw = 1;
	if (th < 1) th = 1;
	/* The smallest DCT scaling (≤ 1) that stays at or above the target. */
	tjscalingfactor best = { 1, 1 };
	for (int i = 0; i < num_factors; i++) {
		tjscalingfactor f = factors[i];
		if (f.num > f.denom || TJSCALED(w, f) < tw || TJSCALED(h, f) < th) continue;
		if (TJSCALED(w, f) < TJSCALED(w, best)) best = f;
	}
	int sw = TJSCALED(w, best), sh = TJSCALED(h, best);

	int pf = colorspace == TJCS_GRAY ? TJPF_GRAY : colorspace == TJCS_CMYK || colorspace == TJCS_YCCK ? TJPF_CMYK : TJPF_RGB;
	int ch = tjPixelSize[pf];
	unsigned char *px = malloc((size_t)sw * sh * ch), *small = NULL;
	if (!px) return fail(r, 422, "out of memory for a %dx%d image", sw, sh);
	if (tjDecompress2(decompressor, in, len, px, sw, 0, sh, pf, TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS)) {
		free(px);
		return fail(r, 422, "JPEG: %s", tjGetErrorStr2(decompressor));
	}
	if (sw != tw || sh != th) {
		if (!(small = malloc((size_t)tw * th * ch))) {
			free(px);
			return fail(r, 422, "out of memory for a %dx%d image", tw, th);
		}
		shrink(px, sw, sh, small, tw, th, ch);
		free(px);
		px = small;
	}
	int out_subsamp = pf == TJPF_GRAY ? TJSAMP_GRAY : TJSAMP_420;
	int err = tjCompress2(compressor, px, tw, 0, th, pf, &r->jpeg, &r->jpeg_len, out_subsamp, quality, 0);
	free(px);
	if (err) {
		tjFree(r->jpeg);
		r->jpeg = NULL;
		return fail(r, 422, "JPEG encoder: %s", tjGetErrorStr2(compressor));
	}
	r->status = 200;
	return 0;
}

static void release_jpeg(void *jpeg) { tjFree(jpeg); }

static void on_request(const struct kvm_request *req)
{
	struct result r;
	if (convert(req->content, req->content ? req->content_len : 0, req->arg, &r) == 0) {
		respond_owned(200, "image/jpeg", r.jpeg, r.jpeg_len, release_jpeg, NULL);
	} else {
		char text[sizeof r.reason + 16];
		backend_response(r.status, "text/plain", 10, text, (size_t)snprintf(text, sizeof text, "thumbnail: %s\n", r.reason));
	}
}

/* Thumbnails a tiny JPEG once, so TurboJPEG's lazy one-time set-up (CPU feature detection) happens
 * before the freeze rather than in every request. */
static void warm_up(void)
{
	unsigned char px[32 * 32 * 3], *jpg = NULL;
	unsigned long jpg_len = 0;
	struct result r;
	for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 7);
	if (tjCompress2(compressor, px, 32, 0, 32, TJPF_RGB, &jpg, &jpg_len, TJSAMP_420, 80, 0) == 0 && convert(jpg, jpg_len, "5", &r) == 0)
		tjFree(r.jpeg);
	tjFree(jpg);
}

int main(int argc, char **argv)
{
	/* Image buffers come from a heap grown once, not from brk or mmap calls per request (heap.h). */
	reserve_heap(8 << 20);
	decompressor = tjInitDecompress();
	compressor = tjInitCompress();
	factors = tjGetScalingFactors(&num_factors);
	if (!decompressor || !compressor || !factors) {
		fprintf(stderr, "thumbnail: TurboJPEG: %s\n", tjGetErrorStr2(NULL));
		return 1;
	}
	warm_up();
	if (!kvm_is_sandboxed()) {
		size_t len;
		uint8_t *in = read_all(0, &len);
		struct result r;
		if (!in) return 1;
		if (convert(in, len, argc > 1 ? argv[1] : "", &r) == 0) {
			fwrite(r.jpeg, 1, r.jpeg_len, stdout);
			return 0;
		}
		fprintf(stderr, "thumbnail: %s\n", r.reason);
		return 1;
	}
	set_backend_request(on_request);
	wait_for_requests();
}
