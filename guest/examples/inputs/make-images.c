/*
 * make-images — writes the example images of this folder, deterministically (no clock, no rand()):
 *   photo.jpg   640×480 RGB, baseline, quality 85, 4:2:0 — gradients, discs and a little noise
 *   gray.jpg    200×150 grayscale, progressive, quality 80
 *   logo.png    256×192 RGBA, 8 bits — flat shapes on a transparent-to-opaque background
 * The files are checked in (the tests and the benchmark read them); to make them again:
 *   gcc -O2 -Wall -Wextra -o /tmp/make-images make-images.c -ljpeg -lpng -lz && /tmp/make-images .
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jpeglib.h>
#include <png.h>

static uint32_t seed = 12345;
static int noise(int amplitude) /* [-amplitude, amplitude], a fixed LCG */
{
	seed = seed * 1103515245u + 12345u;
	return (int)((seed >> 16) % (uint32_t)(2 * amplitude + 1)) - amplitude;
}
static uint8_t clamp(int v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }

static void paint(uint8_t *px, int w, int h, int channels, int noisy)
{
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t *p = px + ((size_t)y * w + x) * channels;
			int r = 40 + 180 * x / w, g = 60 + 150 * y / h, b = 200 - 120 * (x + y) / (w + h);
			/* three discs */
			static const int disc[3][6] = { { 30, 40, 14, 230, 80, 40 }, { 62, 55, 20, 40, 160, 90 }, { 45, 70, 10, 250, 230, 60 } };
			for (int d = 0; d < 3; d++) {
				int cx = disc[d][0] * w / 100, cy = disc[d][1] * h / 100, rad = disc[d][2] * w / 100;
				if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= rad * rad) r = disc[d][3], g = disc[d][4], b = disc[d][5];
			}
			/* stripes in the lower band, some fine detail for the codecs */
			if (y > h * 85 / 100 && (x / 3) % 2) r /= 2, g /= 2, b /= 2;
			if (noisy) { int n = noise(6); r += n; g += n; b += n; }
			if (channels == 1) p[0] = clamp((r * 77 + g * 150 + b * 29) >> 8);
			else { p[0] = clamp(r); p[1] = clamp(g); p[2] = clamp(b); }
			if (channels == 4) p[3] = clamp(96 + 160 * x / w);
		}
}

static void write_jpeg(const char *path, int w, int h, int channels, int quality, int progressive)
{
	uint8_t *px = malloc((size_t)w * h * channels);
	paint(px, w, h, channels, 1);
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr err;
	c.err = jpeg_std_error(&err);
	jpeg_create_compress(&c);
	FILE *f = fopen(path, "wb");
	if (!f) { perror(path); exit(1); }
	jpeg_stdio_dest(&c, f);
	c.image_width = (JDIMENSION)w;
	c.image_height = (JDIMENSION)h;
	c.input_components = channels;
	c.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&c);
	jpeg_set_quality(&c, quality, TRUE);
	if (progressive) jpeg_simple_progression(&c);
	jpeg_start_compress(&c, TRUE);
	while (c.next_scanline < c.image_height) {
		JSAMPROW row = px + (size_t)c.next_scanline * w * channels;
		jpeg_write_scanlines(&c, &row, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	fclose(f);
	free(px);
}

static void write_png(const char *path, int w, int h)
{
	uint8_t *px = malloc((size_t)w * h * 4);
	paint(px, w, h, 4, 0);
	png_image img;
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	img.width = (png_uint_32)w;
	img.height = (png_uint_32)h;
	img.format = PNG_FORMAT_RGBA;
	if (!png_image_write_to_file(&img, path, 0, px, 0, NULL)) { fprintf(stderr, "%s: %s\n", path, img.message); exit(1); }
	free(px);
}

int main(int argc, char **argv)
{
	if (argc > 1 && chdir(argv[1]) != 0) { perror(argv[1]); return 1; }
	write_jpeg("photo.jpg", 640, 480, 3, 85, 0);
	write_jpeg("gray.jpg", 200, 150, 1, 80, 1);
	write_png("logo.png", 256, 192);
	return 0;
}
