/*
 * webp — converts a JPEG or PNG image (told apart by its magic bytes) to WebP, with libjpeg-turbo,
 * libpng and libwebp.
 *
 *   arg   comma-separated options, all optional: "q=80,w=320"
 *           q=0..100   lossy quality (default 80)
 *           w=N, h=N   largest width / height: the image is scaled down to fit, keeping its aspect
 *                      ratio, and never enlarged (w alone: that width; both: fit in the box)
 *
 *   in tskvm:   any method with the image as the body
 *                 → 200 image/webp
 *                 → 200 with the ORIGINAL bytes and type (image/jpeg, image/png) and a header
 *                   "X-Webp-Error: <reason>" when the image does not convert (corrupt or truncated
 *                   data, an unsupported kind such as a CMYK JPEG, too large, out of memory)
 *                 → 415 text/plain for a body that is neither JPEG nor PNG, 400 for a bad arg or no body
 *   natively:   webp [ARG] < image > image.webp — the same bytes on stdout; when it falls back to the
 *               original, the original on stdout, the reason on stderr and exit status 2; 415/400
 *               cases print their text on stderr and exit with status 1
 *
 * Errors, two layers ("on a decode error, return the original image"):
 *   1. The codecs report what they detect — libjpeg through an error manager that longjmps (its
 *      warnings, e.g. "Premature end of JPEG file", count as errors: a half-grey WebP is worse than the
 *      original), libpng's simplified API and libwebp through return values, allocation failures
 *      (max_request_memory makes malloc return NULL) likewise. The handler then answers the original
 *      itself: no crash, nothing for the host to clean up.
 *   2. What the codecs cannot report — a crash inside them, a request that runs past
 *      max_request_time — ends the request in the host, which calls on_error on the failed request's
 *      memory. The handler records the body and its type in globals before it touches a codec, so
 *      on_error answers the same fallback, with the host's exception text as the reason. It calls no
 *      codec and does not allocate (the heap may be what broke).
 *
 * Initialised once in main(), before the VM is frozen: the libjpeg decompressor, the WebP encoder
 * configuration, and a warm-up conversion of a tiny JPEG and PNG, so that the libraries' one-time
 * set-up (CPU feature detection, function tables) is part of the frozen image rather than redone
 * by every request. And the heap is grown once (heap.h), so that image buffers cost no brk or mmap
 * (VM exits) per request.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/encode.h>
#include "kvm_api.h"
#include "native.h"
#include "heap.h"
#include "respond.h"

struct options {
	float quality;
	int max_w, max_h; /* 0: no bound */
};

/* What a conversion produced: the WebP, or a failure with a status (200: fall back to the original). */
struct result {
	int status;
	uint8_t *webp;
	size_t webp_len;
	char reason[200];
};

/* The request being converted, for on_error (set before any codec runs). */
static struct {
	const uint8_t *data;
	size_t len;
	const char *type;
} original;

static struct jpeg_decompress_struct jpeg;
static WebPConfig webp_config;

/* ------------------------------------------------------------------------------------------------- */

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

static int parse_options(const char *arg, struct options *o, struct result *r)
{
	o->quality = 80;
	o->max_w = o->max_h = 0;
	for (const char *p = arg; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char key[8], *stop;
		const char *eq = memchr(p, '=', len);
		if (!eq || eq == p || (size_t)(eq - p) >= sizeof key) return fail(r, 400, "bad option '%.*s' in arg (expected q=, w= or h=)", (int)len, p);
		memcpy(key, p, (size_t)(eq - p));
		key[eq - p] = 0;
		errno = 0;
		long v = strtol(eq + 1, &stop, 10);
		if (stop == eq + 1 || stop != p + len || errno) return fail(r, 400, "bad number in arg option '%.*s'", (int)len, p);
		if (!strcmp(key, "q") && v >= 0 && v <= 100) o->quality = (float)v;
		else if (!strcmp(key, "w") && v >= 1 && v <= WEBP_MAX_DIMENSION) o->max_w = (int)v;
		else if (!strcmp(key, "h") && v >= 1 && v <= WEBP_MAX_DIMENSION) o->max_h = (int)v;
		else return fail(r, 400, "bad option '%.*s' in arg (q=0..100, w=1..16383, h=1..16383)", (int)len, p);
		p = end ? end + 1 : p + len;
	}
	return 0;
}

/* The size (w, h) scaled down to fit the options' bounds, keeping the aspect ratio; never enlarged. */
static void fit(const struct options *o, int w, int h, int *tw, int *th)
{
	double s = 1.0;
	if (o->max_w && o->max_w < w) s = (double)o->max_w / w;
	if (o->max_h && o->max_h < h && (double)o->max_h / h < s) s = (double)o->max_h / h;
	*tw = w, *th = h;
	if (s < 1.0) {
		*tw = (int)(w * s + 0.5), *th = (int)(h * s + 0.5);
		if (*tw < 1) *tw = 1;
		if (*th < 1) *th = 1;
	}
}

/* ------------------------------------------------------------------------------------------------- */
/* Decoding into a WebPPicture */

struct jpeg_failure {
	struct jpeg_error_mgr mgr;
	jmp_buf jump;
	char message[JMSG_LENGTH_MAX];
};

static void jpeg_fail(j_common_ptr c)
{
	struct jpeg_failure *f = (struct jpeg_failure *)c->err;
	c->err->format_message(c, f->message);
	longjmp(f->jump, 1);
}

/* Warnings (level -1) are corrupt or missing data: an error here. Trace messages (level ≥ 0) are ignored. */
static void jpeg_message(j_common_ptr c, int level)
{
	if (level < 0) jpeg_fail(c);
}

static int decode_jpeg(const uint8_t *in, size_t len, const struct options *o, WebPPicture *pic, struct result *r)
{
	static struct jpeg_failure failure;
	uint8_t *volatile rgb = NULL;
	jpeg.err = jpeg_std_error(&failure.mgr);
	failure.mgr.error_exit = jpeg_fail;
	failure.mgr.emit_message = jpeg_message;
	if (setjmp(failure.jump)) {
		jpeg_abort_decompress(&jpeg);
		free(rgb);
		return fail(r, 200, "JPEG: %s", failure.message);
	}
	jpeg_mem_src(&jpeg, in, (unsigned long)len);
	jpeg_read_header(&jpeg, TRUE);
	jpeg.out_color_space = JCS_RGB; /* from YCbCr or grayscale; CMYK fails here */
	/* Scale in the DCT when the target is much smaller: the smallest M/8 that stays at or above it. */
	int tw, th;
	fit(o, (int)jpeg.image_width, (int)jpeg.image_height, &tw, &th);
	jpeg.scale_denom = 8;
	for (jpeg.scale_num = 1; jpeg.scale_num < 8; jpeg.scale_num++) {
		jpeg_calc_output_dimensions(&jpeg);
		if ((int)jpeg.output_width >= tw && (int)jpeg.output_height >= th) break;
	}
	jpeg_start_decompress(&jpeg);
	size_t stride = (size_t)jpeg.output_width * 3;
	if (jpeg.output_width > WEBP_MAX_DIMENSION || jpeg.output_height > WEBP_MAX_DIMENSION) {
		jpeg_abort_decompress(&jpeg);
		return fail(r, 200, "JPEG of %ux%u: too large for WebP without w= or h=", jpeg.output_width, jpeg.output_height);
	}
	rgb = malloc(stride * jpeg.output_height);
	if (!rgb) {
		jpeg_abort_decompress(&jpeg);
		return fail(r, 200, "out of memory for a %ux%u JPEG", jpeg.output_width, jpeg.output_height);
	}
	while (jpeg.output_scanline < jpeg.output_height) {
		JSAMPROW row = rgb + stride * jpeg.output_scanline;
		jpeg_read_scanlines(&jpeg, &row, 1);
	}
	jpeg_finish_decompress(&jpeg);
	pic->width = (int)jpeg.output_width;
	pic->height = (int)jpeg.output_height;
	pic->use_argb = pic->width != tw || pic->height != th; /* rescale in RGB, as cwebp does */
	int ok = WebPPictureImportRGB(pic, rgb, (int)stride);
	free(rgb);
	return ok ? 0 : fail(r, 200, "out of memory importing a %dx%d image", pic->width, pic->height);
}

static int decode_png(const uint8_t *in, size_t len, const struct options *o, WebPPicture *pic, struct result *r)
{
	png_image image;
	memset(&image, 0, sizeof image);
	image.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_memory(&image, in, len)) return fail(r, 200, "PNG: %s", image.message);
	int alpha = (image.format & PNG_FORMAT_FLAG_ALPHA) != 0;
	image.format = alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
	if (image.width > WEBP_MAX_DIMENSION || image.height > WEBP_MAX_DIMENSION) {
		/* WebPPictureRescale would take it, but the whole image has to be decoded first: refuse. */
		png_image_free(&image);
		return fail(r, 200, "PNG of %ux%u: too large", image.width, image.height);
	}
	uint8_t *px = malloc(PNG_IMAGE_SIZE(image));
	if (!px) {
		png_image_free(&image);
		return fail(r, 200, "out of memory for a %ux%u PNG", image.width, image.height);
	}
	if (!png_image_finish_read(&image, NULL, px, 0, NULL)) {
		free(px);
		return fail(r, 200, "PNG: %s", image.message);
	}
	int tw, th;
	fit(o, (int)image.width, (int)image.height, &tw, &th);
	pic->width = (int)image.width;
	pic->height = (int)image.height;
	pic->use_argb = alpha || pic->width != tw || pic->height != th;
	int stride = (int)PNG_IMAGE_ROW_STRIDE(image);
	int ok = alpha ? WebPPictureImportRGBA(pic, px, stride) : WebPPictureImportRGB(pic, px, stride);
	free(px);
	return ok ? 0 : fail(r, 200, "out of memory importing a %dx%d image", pic->width, pic->height);
}

static const char *const encode_errors[] = {
	"ok", "out of memory", "out of memory (bitstream)", "null parameter", "invalid configuration",
	"bad dimension", "partition 0 overflow", "partition overflow", "bad write", "file too big", "aborted",
};

/* ------------------------------------------------------------------------------------------------- */

static const char *image_type(const uint8_t *in, size_t len)
{
	if (len >= 3 && in[0] == 0xFF && in[1] == 0xD8 && in[2] == 0xFF) return "image/jpeg";
	if (len >= 8 && !memcmp(in, "\x89PNG\r\n\x1a\n", 8)) return "image/png";
	return NULL;
}

/* JPEG or PNG → WebP. 0 with r->webp set, or -1 with r->status and r->reason. */
static int convert(const uint8_t *in, size_t len, const char *arg, struct result *r)
{
	struct options o;
	memset(r, 0, sizeof *r);
	memset(&original, 0, sizeof original); /* a persistent VM keeps the last request's */
	if (parse_options(arg, &o, r)) return -1;
	if (len == 0) return fail(r, 400, "no image: send a JPEG or PNG as the request body");
	original.type = image_type(in, len);
	if (!original.type) return fail(r, 415, "not a JPEG or PNG image");
	original.data = in;
	original.len = len;

	WebPPicture pic;
	if (!WebPPictureInit(&pic)) return fail(r, 500, "libwebp version mismatch");
	int err = original.type[6] == 'j' ? decode_jpeg(in, len, &o, &pic, r) : decode_png(in, len, &o, &pic, r);
	if (err) {
		WebPPictureFree(&pic);
		return -1;
	}
	int tw, th;
	fit(&o, pic.width, pic.height, &tw, &th);
	if ((tw != pic.width || th != pic.height) && !WebPPictureRescale(&pic, tw, th)) {
		WebPPictureFree(&pic);
		return fail(r, 200, "out of memory rescaling to %dx%d", tw, th);
	}
	WebPConfig config = webp_config;
	config.quality = o.quality;
	WebPMemoryWriter out;
	WebPMemoryWriterInit(&out);
	pic.writer = WebPMemoryWrite;
	pic.custom_ptr = &out;
	int ok = WebPEncode(&config, &pic);
	WebPEncodingError code = pic.error_code;
	WebPPictureFree(&pic);
	if (!ok) {
		WebPMemoryWriterClear(&out);
		return fail(r, 200, "WebP encoder: %s", code < VP8_ENC_ERROR_LAST ? encode_errors[code] : "error");
	}
	r->status = 200;
	r->webp = out.mem;
	r->webp_len = out.size;
	return 0;
}

/* ------------------------------------------------------------------------------------------------- */

/* The fallback: the original image, as it came, with the reason in X-Webp-Error. Allocates nothing. */
static void respond_original(const char *reason)
{
	static char field[256];
	int n = snprintf(field, sizeof field, "X-Webp-Error: %s", reason);
	if (n < 0) n = 0;
	if ((size_t)n >= sizeof field) n = sizeof field - 1;
	for (int i = 14; i < n; i++) /* one line of printable ASCII */
		if ((unsigned char)field[i] < 0x20 || (unsigned char)field[i] > 0x7e) field[i] = ' ';
	struct ResponseHeader header = { field, (size_t)n };
	backend_response_headers(200, original.type, original.data, original.len, &header, 1);
}

static void on_request(const struct kvm_request *req)
{
	struct result r;
	if (convert(req->content, req->content ? req->content_len : 0, req->arg, &r) == 0) {
		respond_owned(200, "image/webp", r.webp, r.webp_len, WebPFree, NULL);
	} else if (r.status == 200) {
		respond_original(r.reason);
	} else {
		char text[sizeof r.reason + 8];
		backend_response(r.status, "text/plain", 10, text, (size_t)snprintf(text, sizeof text, "webp: %s\n", r.reason));
	}
}

/* A crash or a timeout during the conversion (see the top of the file). */
static void on_error(const char *url, const char *arg, const char *exception)
{
	(void)url; (void)arg;
	if (original.data) respond_original(exception);
	/* else: not in a conversion; the host answers its own 500/504 */
}

/* ------------------------------------------------------------------------------------------------- */

/* Converts a tiny JPEG and PNG once, so the libraries' lazy one-time set-up happens before the freeze. */
static void warm_up(void)
{
	/* A 16×16 JPEG and PNG, made here with the libraries themselves. */
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr err;
	uint8_t px[16 * 16 * 3], *jpg = NULL;
	unsigned long jpg_len = 0;
	for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 7);
	c.err = jpeg_std_error(&err);
	jpeg_create_compress(&c);
	jpeg_mem_dest(&c, &jpg, &jpg_len);
	c.image_width = c.image_height = 16;
	c.input_components = 3;
	c.in_color_space = JCS_RGB;
	jpeg_set_defaults(&c);
	jpeg_start_compress(&c, TRUE);
	while (c.next_scanline < 16) {
		JSAMPROW row = px + c.next_scanline * 48;
		jpeg_write_scanlines(&c, &row, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);

	png_image image;
	uint8_t png[4096];
	png_alloc_size_t png_len = sizeof png;
	memset(&image, 0, sizeof image);
	image.version = PNG_IMAGE_VERSION;
	image.width = image.height = 16;
	image.format = PNG_FORMAT_RGB;
	if (!png_image_write_to_memory(&image, png, &png_len, 0, px, 0, NULL)) png_len = 0;

	struct result r; /* w=5: DCT scaling to 6×6 and a rescale, the whole path */
	if (convert(jpg, jpg_len, "w=5", &r) == 0) WebPFree(r.webp);
	if (convert(png, png_len, "q=50", &r) == 0) WebPFree(r.webp);
	free(jpg);
	memset(&original, 0, sizeof original);
}

int main(int argc, char **argv)
{
	/* Image buffers come from a heap grown once, not from brk or mmap calls per request (heap.h). */
	reserve_heap(16 << 20);
	static struct jpeg_error_mgr err;
	jpeg.err = jpeg_std_error(&err);
	jpeg_create_decompress(&jpeg);
	if (!WebPConfigInit(&webp_config)) return 1;
	warm_up();

	if (!kvm_is_sandboxed()) {
		size_t len;
		uint8_t *in = read_all(0, &len);
		struct result r;
		if (!in) return 1;
		if (convert(in, len, argc > 1 ? argv[1] : "", &r) == 0) {
			fwrite(r.webp, 1, r.webp_len, stdout);
			return 0;
		}
		fprintf(stderr, "webp: %s\n", r.reason);
		if (r.status != 200) return 1;
		fwrite(in, 1, len, stdout);
		return 2;
	}
	set_backend_request(on_request);
	set_on_error(on_error);
	wait_for_requests();
}
