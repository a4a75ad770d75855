/*
 * json-minify — validates JSON strictly (RFC 8259) and removes the whitespace between tokens.
 * Strings and numbers are copied as written (escapes are kept, not re-encoded). No library: a small
 * non-recursive parser with an explicit nesting stack.
 *
 *   strict means: one value per document (after optional whitespace); objects, arrays, strings,
 *   numbers, true, false, null; no comments, no trailing commas, no leading zeros, no unescaped
 *   control characters in strings, escapes \" \\ \/ \b \f \n \r \t \uXXXX with surrogates in pairs,
 *   valid UTF-8 (no overlongs, no encoded surrogates), at most 1000 levels of nesting.
 *
 *   in tskvm:   any method, the body → 200 application/json, the minified JSON (no trailing newline)
 *               invalid → 400 text/plain, one line:
 *                 invalid JSON: <what> at byte <offset> (line <l>, column <c>)[: found 'x' | : found 0xNN]
 *               (offset counts bytes from 0; line and column from 1, the column in bytes; the byte
 *               found there is named unless the input ended)
 *               out of memory (for a body larger than the request memory allows) → 500 "out of memory\n"
 *   natively:   json-minify < in.json  → the same body on stdout; exit status 0, 1 when invalid, 2 when
 *               out of memory
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kvm_api.h"
#include "native.h"
#include "respond.h"

#define MAX_DEPTH 1000

struct result {
	char  *out;      /* minified JSON, or the error message */
	size_t len;
	int    status;   /* 200, 400 or 500 */
};

struct parser {
	const unsigned char *s;
	size_t len, pos;
	char  *out;
	size_t olen;
	const char *error;   /* what went wrong, set with pos at the offending byte */
};

static int fail(struct parser *p, const char *what)
{
	p->error = what;
	return -1;
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len) {
		unsigned char c = p->s[p->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
		p->pos++;
	}
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* \uXXXX at p->pos (pointing at the 'u'); the code unit in *cu. */
static int parse_u4(struct parser *p, unsigned *cu)
{
	unsigned v = 0;
	for (int i = 1; i <= 4; i++) {
		if (p->pos + i >= p->len) { p->pos = p->len; return fail(p, "unexpected end of input in a \\u escape"); }
		int h = hexval(p->s[p->pos + i]);
		if (h < 0) { p->pos += i; return fail(p, "invalid hex digit in a \\u escape"); }
		v = v << 4 | (unsigned)h;
	}
	*cu = v;
	return 0;
}

/* One UTF-8 sequence starting at p->pos (a byte >= 0x80); returns its length or -1. */
static int utf8_seq(struct parser *p)
{
	const unsigned char *s = p->s + p->pos;
	size_t left = p->len - p->pos;
	unsigned char c = s[0];
	int n;
	unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
	if (c >= 0xC2 && c <= 0xDF) n = 2;
	else if (c >= 0xE0 && c <= 0xEF) { n = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
	else if (c >= 0xF0 && c <= 0xF4) { n = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
	else return fail(p, "invalid UTF-8 byte");
	for (int i = 1; i < n; i++) {
		if ((size_t)i >= left) { p->pos = p->len; return fail(p, "unexpected end of input in a UTF-8 sequence"); }
		unsigned b = s[i];
		if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) { p->pos += i; return fail(p, "invalid UTF-8 sequence"); }
	}
	return n;
}

/* A string starting at the opening quote; copied to the output as written. */
static int parse_string(struct parser *p)
{
	size_t start = p->pos++;
	for (;;) {
		if (p->pos >= p->len) return fail(p, "unexpected end of input in a string");
		unsigned char c = p->s[p->pos];
		if (c == '"') { p->pos++; break; }
		if (c < 0x20) return fail(p, "control character in a string (must be escaped)");
		if (c == '\\') {
			if (p->pos + 1 >= p->len) { p->pos = p->len; return fail(p, "unexpected end of input in a string"); }
			unsigned char e = p->s[p->pos + 1];
			if (e && strchr("\"\\/bfnrt", e)) { p->pos += 2; continue; }
			if (e != 'u') { p->pos++; return fail(p, "invalid escape in a string"); }
			size_t esc = p->pos;
			p->pos++;
			unsigned cu;
			if (parse_u4(p, &cu)) return -1;
			p->pos += 5;
			if (cu >= 0xDC00 && cu <= 0xDFFF) { p->pos = esc; return fail(p, "lone low surrogate in a \\u escape"); }
			if (cu >= 0xD800 && cu <= 0xDBFF) {
				if (p->pos + 1 >= p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
					p->pos = esc;
					return fail(p, "high surrogate not followed by a low surrogate");
				}
				size_t low = p->pos;
				p->pos++;
				if (parse_u4(p, &cu)) return -1;
				if (cu < 0xDC00 || cu > 0xDFFF) { p->pos = low; return fail(p, "high surrogate not followed by a low surrogate"); }
				p->pos += 5;
			}
			continue;
		}
		if (c >= 0x80) {
			int n = utf8_seq(p);
			if (n < 0) return -1;
			p->pos += (size_t)n;
			continue;
		}
		p->pos++;
	}
	memcpy(p->out + p->olen, p->s + start, p->pos - start);
	p->olen += p->pos - start;
	return 0;
}

static int is_digit(struct parser *p)
{
	return p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9';
}

static int parse_number(struct parser *p)
{
	size_t start = p->pos;
	if (p->s[p->pos] == '-') p->pos++;
	if (!is_digit(p)) return fail(p, p->pos < p->len ? "expected a digit" : "unexpected end of input in a number");
	if (p->s[p->pos] == '0') {
		p->pos++;
		if (is_digit(p)) return fail(p, "leading zero in a number");
	} else {
		while (is_digit(p)) p->pos++;
	}
	if (p->pos < p->len && p->s[p->pos] == '.') {
		p->pos++;
		if (!is_digit(p)) return fail(p, p->pos < p->len ? "expected a digit after the decimal point" : "unexpected end of input in a number");
		while (is_digit(p)) p->pos++;
	}
	if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
		p->pos++;
		if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
		if (!is_digit(p)) return fail(p, p->pos < p->len ? "expected a digit in the exponent" : "unexpected end of input in a number");
		while (is_digit(p)) p->pos++;
	}
	memcpy(p->out + p->olen, p->s + start, p->pos - start);
	p->olen += p->pos - start;
	return 0;
}

static int parse_literal(struct parser *p, const char *word)
{
	for (size_t i = 0; word[i]; i++) {
		if (p->pos >= p->len) return fail(p, "unexpected end of input in a literal");
		if (p->s[p->pos] != (unsigned char)word[i]) return fail(p, i ? "invalid literal" : "unexpected character");
		p->pos++;
	}
	size_t n = strlen(word);
	memcpy(p->out + p->olen, word, n);
	p->olen += n;
	return 0;
}

/* The whole document: a state machine over an explicit stack of open containers. */
static int parse(struct parser *p)
{
	char stack[MAX_DEPTH]; /* '{' or '[' */
	int depth = 0;
	enum { VALUE, AFTER_VALUE, KEY_OR_END, KEY, VALUE_OR_END } state = VALUE;
	for (;;) {
		skip_ws(p);
		int at_end = p->pos >= p->len;
		unsigned char c = at_end ? 0 : p->s[p->pos];
		switch (state) {
		case VALUE_OR_END: /* just after '[' */
			if (!at_end && c == ']') { p->out[p->olen++] = ']'; p->pos++; depth--; state = AFTER_VALUE; continue; }
			/* fall through */
		case VALUE:
			if (at_end) return fail(p, "unexpected end of input, expected a value");
			if (c == '{' || c == '[') {
				if (depth == MAX_DEPTH) return fail(p, "nesting deeper than 1000 levels");
				stack[depth++] = (char)c;
				p->out[p->olen++] = (char)c;
				p->pos++;
				state = c == '{' ? KEY_OR_END : VALUE_OR_END;
				continue;
			}
			if (c == '"') { if (parse_string(p)) return -1; }
			else if (c == '-' || (c >= '0' && c <= '9')) { if (parse_number(p)) return -1; }
			else if (c == 't') { if (parse_literal(p, "true")) return -1; }
			else if (c == 'f') { if (parse_literal(p, "false")) return -1; }
			else if (c == 'n') { if (parse_literal(p, "null")) return -1; }
			else return fail(p, "unexpected character, expected a value");
			state = AFTER_VALUE;
			continue;
		case KEY_OR_END: /* just after '{' */
			if (!at_end && c == '}') { p->out[p->olen++] = '}'; p->pos++; depth--; state = AFTER_VALUE; continue; }
			/* fall through */
		case KEY:
			if (at_end) return fail(p, "unexpected end of input, expected a string key");
			if (c != '"') return fail(p, "unexpected character, expected a string key");
			if (parse_string(p)) return -1;
			skip_ws(p);
			if (p->pos >= p->len) return fail(p, "unexpected end of input, expected ':'");
			if (p->s[p->pos] != ':') return fail(p, "unexpected character, expected ':'");
			p->out[p->olen++] = ':';
			p->pos++;
			state = VALUE;
			continue;
		case AFTER_VALUE:
			if (depth == 0) {
				if (!at_end) return fail(p, "unexpected character after the JSON value");
				return 0;
			}
			if (at_end) return fail(p, stack[depth - 1] == '{' ? "unexpected end of input, expected ',' or '}'"
			                                                  : "unexpected end of input, expected ',' or ']'");
			if (c == ',') { p->out[p->olen++] = ','; p->pos++; state = stack[depth - 1] == '{' ? KEY : VALUE; continue; }
			if (stack[depth - 1] == '{' && c == '}') { p->out[p->olen++] = '}'; p->pos++; depth--; continue; }
			if (stack[depth - 1] == '[' && c == ']') { p->out[p->olen++] = ']'; p->pos++; depth--; continue; }
			return fail(p, stack[depth - 1] == '{' ? "unexpected character, expected ',' or '}'"
			                                       : "unexpected character, expected ',' or ']'");
		}
	}
}

static struct result minify(const unsigned char *in, size_t len)
{
	struct result r = { NULL, 0, 500 };
	struct parser p = { in, len, 0, malloc(len ? len : 1), 0, NULL };
	if (!p.out) {
		static char oom[] = "out of memory\n";
		r.out = oom; r.len = sizeof oom - 1;
		return r;
	}
	if (parse(&p) == 0) {
		r.out = p.out; r.len = p.olen; r.status = 200;
		return r;
	}
	/* line and column of the offending byte (1-based, the column in bytes) */
	size_t line = 1, col = 1;
	for (size_t i = 0; i < p.pos && i < len; i++) {
		if (in[i] == '\n') { line++; col = 1; }
		else col++;
	}
	char found[32] = "";
	if (p.pos < len) {
		unsigned char c = in[p.pos];
		if (c >= 0x21 && c < 0x7f) snprintf(found, sizeof found, " '%c'", c);
		else snprintf(found, sizeof found, " 0x%02x", c);
	}
	free(p.out);
	char *msg = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&msg, &size);
	fprintf(f, "invalid JSON: %s at byte %zu (line %zu, column %zu)%s%s\n", p.error, p.pos, line, col,
	        found[0] ? ": found" : "", found);
	fclose(f);
	r.out = msg; r.len = size; r.status = 400;
	return r;
}

static void on_request(const struct kvm_request *req)
{
	struct result r = minify(req->content ? req->content : (const unsigned char *)"", req->content_len);
	respond_owned(r.status, r.status == 200 ? "application/json" : "text/plain", r.out, r.len,
	              r.status == 500 ? NULL : free, NULL); /* 500: the static "out of memory" */
}

int main(void)
{
	if (!kvm_is_sandboxed()) {
		size_t len;
		unsigned char *in = read_all(0, &len);
		if (!in) { fputs("out of memory\n", stderr); return 2; }
		struct result r = minify(in, len);
		fwrite(r.out, 1, r.len, stdout);
		return r.status == 200 ? 0 : r.status == 400 ? 1 : 2;
	}
	set_backend_request(on_request);
	wait_for_requests();
}
