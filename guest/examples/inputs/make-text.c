/*
 * make-text — writes the benchmark's text inputs, deterministically (a fixed xorshift32, no clock):
 *   make-text prose BYTES > text.txt   English-like prose in paragraphs (zstd, gzip)
 *   make-text markdown BYTES > doc.md  a CommonMark document: headings, paragraphs with emphasis,
 *                                      code spans and links, lists, quotes, code blocks (markdown)
 * Built and run by the Makefile of this folder into bin/inputs/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t state = 2463534242u;
static uint32_t next(void)
{
	state ^= state << 13;
	state ^= state >> 17;
	state ^= state << 5;
	return state;
}
static unsigned pick(unsigned n) { return next() % n; }

static const char *words[] = {
	"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
	"not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they",
	"you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when",
	"will", "would", "who", "so", "no", "machine", "request", "memory", "program", "kernel", "page",
	"table", "guest", "host", "virtual", "register", "snapshot", "fork", "reset", "server", "client",
	"latency", "throughput", "library", "compression", "image", "document", "interpreter", "sandbox",
	"isolation", "hypervisor", "instruction", "processor", "cache", "buffer", "network", "storage",
	"river", "mountain", "morning", "window", "garden", "letter", "music", "history", "question",
	"answer", "village", "harbour", "winter", "summer", "journey", "evening", "forest", "language",
	"quickly", "quietly", "carefully", "almost", "always", "never", "often", "together", "between",
	"through", "against", "without", "before", "after", "under", "across", "around", "because",
	"small", "large", "early", "late", "bright", "dark", "simple", "careful", "ancient", "modern",
};
#define NWORDS (sizeof words / sizeof *words)

/* Frequent words often, rare ones seldom: the smaller of two picks. */
static const char *word(void)
{
	unsigned a = pick(NWORDS), b = pick(NWORDS);
	return words[a < b ? a : b];
}

static size_t sentence(char *out, int capital)
{
	size_t n = 0;
	int len = 6 + (int)pick(14);
	for (int i = 0; i < len; i++) {
		const char *w = word();
		n += (size_t)sprintf(out + n, "%s%c%s", i ? " " : "", capital && i == 0 ? w[0] - 32 : w[0], w + 1);
		if (i + 1 < len && pick(9) == 0) out[n++] = ',';
	}
	out[n++] = pick(7) ? '.' : '?';
	out[n] = 0;
	return n;
}

static void prose(long bytes)
{
	char s[512];
	long written = 0;
	while (written < bytes) {
		int sentences = 3 + (int)pick(6);
		for (int i = 0; i < sentences; i++) {
			sentence(s, 1);
			written += printf("%s%s", i ? " " : "", s);
		}
		written += printf("\n\n");
	}
}

/* A sentence with inline markup: emphasis, strong, a code span or a link on some words. */
static long inline_sentence(void)
{
	long n = 0;
	int len = 6 + (int)pick(14);
	for (int i = 0; i < len; i++) {
		const char *w = word(), *sep = i ? " " : "";
		switch (pick(14)) {
		case 0: n += printf("%s*%s*", sep, w); break;
		case 1: n += printf("%s**%s**", sep, w); break;
		case 2: n += printf("%s`%s()`", sep, w); break;
		case 3: n += printf("%s[%s](https://example.com/%s/%u)", sep, w, w, pick(1000)); break;
		default: n += printf("%s%s", sep, w);
		}
	}
	return n + printf(".");
}

static void markdown(long bytes)
{
	long written = 0;
	int section = 0;
	while (written < bytes) {
		char s[512];
		sentence(s, 1);
		s[strlen(s) - 1] = 0;
		written += printf("%s %s\n\n", section++ % 4 ? "##" : "#", s);
		for (int block = 0, blocks = 2 + (int)pick(4); block < blocks; block++) {
			switch (pick(6)) {
			case 0: /* a list */
				for (int i = 0, items = 2 + (int)pick(5); i < items; i++) {
					written += printf("%s ", pick(2) ? "-" : "*");
					written += inline_sentence();
					written += printf("\n");
				}
				break;
			case 1: /* a quote */
				written += printf("> ");
				written += inline_sentence();
				written += printf("\n> ");
				written += inline_sentence();
				written += printf("\n");
				break;
			case 2: /* a code block */
				written += printf("```c\n");
				for (int i = 0, lines = 2 + (int)pick(6); i < lines; i++)
					written += printf("%*sint %s_%u = %s(%u);\n", 4 * (int)pick(3), "", word(), pick(100), word(), pick(1000));
				written += printf("```\n");
				break;
			default: /* a paragraph */
				for (int i = 0, n = 2 + (int)pick(5); i < n; i++) {
					written += i ? printf(i % 2 ? "\n" : " ") : 0;
					written += inline_sentence();
				}
				written += printf("\n");
			}
			written += printf("\n");
		}
	}
}

int main(int argc, char **argv)
{
	long bytes = argc == 3 ? strtol(argv[2], NULL, 10) : 0;
	if (bytes <= 0 || (strcmp(argv[1], "prose") != 0 && strcmp(argv[1], "markdown") != 0)) {
		fputs("usage: make-text prose|markdown BYTES\n", stderr);
		return 2;
	}
	if (argv[1][0] == 'p') prose(bytes);
	else markdown(bytes);
	return 0;
}
