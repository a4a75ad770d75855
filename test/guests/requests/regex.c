/*
 * req-regex — the regex hypercalls (sys_regex_*). main() compiles two patterns, so every request
 * starts with handles 0 ("^X-Copy") and 1 ("(a*)*b"). Each request answers 200 text/plain, by path:
 *
 *   /corpus    one line per pattern and subject of CORPUS below: `/PATTERN/ SUBJECT: match|no`. In a VM
 *              through sys_regex_compile and sys_regex_match; natively through POSIX regcomp and
 *              regexec (REG_EXTENDED). The patterns mean the same in both dialects, and whether a
 *              regex matches somewhere does not depend on leftmost-first or leftmost-longest, so the
 *              two outputs must be the same.
 *   /subst     one line per substitution of SUBST below: `RESULT rc=N`, the result between [ and ].
 *              The expected lines are in that table.
 *   /copyto    the VMOD's regex.vtc: sys_http_find(REQ, "X-Value") ("X-Value: 5") rewritten by
 *              sys_regex_subst(": .*" → ": 666") into the response with http_set, and the request's
 *              X-Copy* fields copied to the response with handle 0; body `copied=N find=FIELD`.
 *   /table     what this request did to the table, to show the next one starts from main()'s:
 *              `main0=RC main1=RC new=H freed=RC after=RC`: matches with handles 0 and 1, a new
 *              handle for a pattern compiled here, then handle 0 freed and matched again (-EBADF).
 *              Every request sees `main0=1 main1=-1 new=2 freed=0 after=-9`.
 *   /hostile   one line per hostile call, `NAME=RC` (RC in decimal); /expected gives the lines it
 *              must give (EXPECTED below, with why), /expected-subst those of /subst.
 *   /budget    a match that runs out of steps: `rc=-47` (PCRE2_ERROR_MATCHLIMIT), then `next=1`: the
 *              handle still works.
 *
 * Natively (KVM_NAME unset) it serves /corpus (each URL argument in turn) and prints
 * "regex: native mode" for the other paths.
 */
#include <errno.h>
#include <regex.h>

#include "common.h"

/* sys_regex_free's rax (0, or -EBADF), which the VMOD's void prototype hides. */
extern long sys_regex_free_rc(int rgx) __asm__("sys_regex_free");

/* Patterns of the common part of POSIX ERE and PCRE: no backslash inside brackets, no subject with a
 * newline (POSIX's '.' takes one, PCRE's does not), no '$' before a final newline. */
static const char *const CORPUS[][2] = {
	{ "abc", "xxabcxx" },           { "abc", "abx" },
	{ "^abc", "abcdef" },           { "^abc", "xabc" },
	{ "def$", "abcdef" },           { "def$", "defx" },
	{ "a.c", "abc" },               { "a.c", "ac" },
	{ "a*b", "aaab" },              { "a*b", "aaa" },
	{ "x+y", "xxy" },               { "x+y", "y" },
	{ "colou?r", "color" },         { "colou?r", "colour" },     { "colou?r", "colouur" },
	{ "^a{2,3}$", "aaa" },          { "^a{2,3}$", "aaaa" },
	{ "[0-9]+", "abc123" },         { "[0-9]+", "abc" },
	{ "[^a-z]", "abc" },            { "[^a-z]", "abcD" },
	{ "(cat|dog)s?$", "hotdogs" },  { "(cat|dog)s?$", "catfish" },
	{ "^/api/v[0-9]+/(users|items)/[0-9]+$", "/api/v2/users/42" },
	{ "^/api/v[0-9]+/(users|items)/[0-9]+$", "/api/v2/others/42" },
	{ "\\.(jpe?g|png|gif)$", "/img/a.jpeg" }, { "\\.(jpe?g|png|gif)$", "/img/a.jpeg.txt" },
	{ "^(a|b)*c$", "ababc" },       { "^(a|b)*c$", "abacx" },
	{ "((a*)*)*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" },
	{ "^(x+x+)+y$", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxy" },
	{ "[[:alpha:]]+[[:digit:]]", "--ab7--" }, { "[[:upper:]]", "lower" },
	{ "", "anything" },
};
#define CORPUS_N (sizeof CORPUS / sizeof CORPUS[0])

/* Substitutions, each with the line /subst prints for it. */
static const struct {
	const char *pattern, *text, *replacement;
	int flags;
	const char *expected;
} SUBST[] = {
	{ ": .*", "X-Value: 5", ": 666", 0, "[X-Value: 666] rc=13" },
	{ "o", "foo boo", "0", 0, "[f0o boo] rc=8" },
	{ "o", "foo boo", "0", 1, "[f00 b00] rc=8" },
	{ "([a-z]+)@([a-z]+)", "ann@site, bob@host", "\\2 at \\1", 1, "[site at ann, host at bob] rc=25" },
	{ "^(\\w+)=(\\w*)$", "key=", "\\1 is '\\2'", 0, "[key is ''] rc=10" },
	{ "x", "no match", "y", 1, "[no match] rc=9" },
	{ "a*", "baaac", "<\\0>", 1, "[<>b<aaa>c] rc=10" },
	{ "(?i)HELLO", "say hello", "bye", 0, "[say bye] rc=8" },
};
#define SUBST_N (sizeof SUBST / sizeof SUBST[0])

/* The /hostile lines, in order. */
static const char EXPECTED[] =
	"compile_bad_pointer=-14\n"     /* -EFAULT */
	"compile_huge_length=-7\n"      /* -E2BIG: 1 MiB */
	"compile_minus_one=-7\n"        /* (size_t)-1 */
	"compile_backreference=-22\n"   /* -EINVAL: refused */
	"compile_lookahead=-22\n"
	"compile_unbalanced=-22\n"
	"compile_too_large=-7\n"        /* (?:a{1000}){1000}: past the program limit */
	"compile_stops_at_nul=0\n"      /* "^X-Copy\0junk": the same pattern as handle 0 */
	"compile_same_pattern=1\n"      /* "(a*)*b" again: handle 1 */
	"compile_until_full=62\n"       /* 62 more handles fit beside main()'s 2 */
	"compile_full=-24\n"            /* -EMFILE */
	"free=0\n"
	"free_again=-9\n"               /* -EBADF */
	"compile_after_free=2\n"        /* the freed slot is used again once the table is full */
	"free_unknown=-9\n"
	"free_negative=-9\n"
	"match_unknown=-9\n"
	"match_freed=-9\n"
	"match_bad_pointer=-14\n"
	"match_huge_length=-7\n"
	"match_exploding=-1\n"          /* (a*)*b on 50 000 'a': no match, in linear time */
	"subst_bad_text=-14\n"
	"subst_bad_replacement=-14\n"
	"subst_bad_dst=-14\n"
	"subst_no_room=0\n"             /* dst NULL, dstlen 0: nothing copied */
	"subst_cut=4 [X-Va]\n"          /* cut at dstlen 4, no NUL */
	"subst_unknown=-9\n"
	"copyto_bad_list=-22\n"
	"copyto_same_list=1\n";         /* one X-Copy field, appended to its own list once */

static char *out;
static size_t out_len;
static FILE *m;

static void begin(void) { m = open_memstream(&out, &out_len); }
static void finish(void)
{
	fclose(m);
	respond(200, "text/plain", out, out_len, NULL);
	free(out);
}

static int native_match(const char *pattern, const char *subject)
{
	regex_t re;
	if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
		return -1;
	int rc = regexec(&re, subject, 0, NULL, 0);
	regfree(&re);
	return rc == 0;
}

static void corpus(void)
{
	for (size_t i = 0; i < CORPUS_N; i++) {
		const char *p = CORPUS[i][0], *s = CORPUS[i][1];
		int matched;
		if (native) {
			matched = native_match(p, s);
		} else {
			int h = sys_regex_compile(p, strlen(p));
			matched = h < 0 ? -1 : sys_regex_match(h, s, strlen(s)) > 0;
			sys_regex_free(h);
		}
		fprintf(m, "/%s/ %s: %s\n", p, s, matched < 0 ? "error" : matched ? "match" : "no");
	}
}

static void subst(void)
{
	char dst[256];
	for (size_t i = 0; i < SUBST_N; i++) {
		int h = sys_regex_compile(SUBST[i].pattern, strlen(SUBST[i].pattern));
		memset(dst, 0, sizeof dst);
		long rc = sys_regex_subst(h, SUBST[i].text, SUBST[i].replacement, dst, sizeof dst, SUBST[i].flags);
		fprintf(m, "[%s] rc=%ld\n", dst, rc);
		sys_regex_free(h);
	}
}

static void copyto(void)
{
	char field[256], result[256];
	unsigned len = http_find(REQ, "X-Value", field, sizeof field);
	int h = sys_regex_compile(": .*", 4);
	memset(result, 0, sizeof result);
	sys_regex_subst(h, field, ": 666", result, sizeof result, 0);
	http_set(RESP, result);
	sys_regex_free(h);
	int copied = sys_regex_copyto(0, REQ, RESP);
	fprintf(m, "copied=%d find=%.*s", copied, (int)len, field);
}

static void table(void)
{
	int main0 = sys_regex_match(0, "X-Copy: 1", 9);
	int main1 = sys_regex_match(1, "aaa", 3);
	int fresh = sys_regex_compile("compiled in a request", 21);
	long freed = sys_regex_free_rc(0);
	int after = sys_regex_match(0, "X-Copy: 1", 9);
	fprintf(m, "main0=%d main1=%d new=%d freed=%ld after=%d", main0, main1, fresh, freed, after);
}

/* The /hostile calls: bad pointers, lengths and handles, a full table, a pattern that explodes a backtracker. */
static void hostile(void)
{
	char name[32], dst[64];
	fprintf(m, "compile_bad_pointer=%d\n", sys_regex_compile((const char *)0x10, 4));
	fprintf(m, "compile_huge_length=%d\n", sys_regex_compile("a", 1 << 20));
	fprintf(m, "compile_minus_one=%d\n", sys_regex_compile("a", (size_t)-1));
	fprintf(m, "compile_backreference=%d\n", sys_regex_compile("(a)\\1", 5));
	fprintf(m, "compile_lookahead=%d\n", sys_regex_compile("a(?=b)", 6));
	fprintf(m, "compile_unbalanced=%d\n", sys_regex_compile("(a", 2));
	fprintf(m, "compile_too_large=%d\n", sys_regex_compile("(?:a{1000}){1000}", 17));
	fprintf(m, "compile_stops_at_nul=%d\n", sys_regex_compile("^X-Copy\0junk", 12));
	fprintf(m, "compile_same_pattern=%d\n", sys_regex_compile("(a*)*b", 6));
	int fitted = 0, rc;
	for (;;) {
		snprintf(name, sizeof name, "pattern %d", fitted);
		if ((rc = sys_regex_compile(name, strlen(name))) < 0)
			break;
		fitted++;
	}
	fprintf(m, "compile_until_full=%d\ncompile_full=%d\n", fitted, rc);
	fprintf(m, "free=%ld\n", sys_regex_free_rc(2));
	fprintf(m, "free_again=%ld\n", sys_regex_free_rc(2));
	fprintf(m, "compile_after_free=%d\n", sys_regex_compile("another", 7));
	fprintf(m, "free_unknown=%ld\n", sys_regex_free_rc(1000));
	fprintf(m, "free_negative=%ld\n", sys_regex_free_rc(-1));
	fprintf(m, "match_unknown=%d\n", sys_regex_match(77, "a", 1));
	sys_regex_free_rc(3);
	fprintf(m, "match_freed=%d\n", sys_regex_match(3, "a", 1));
	fprintf(m, "match_bad_pointer=%d\n", sys_regex_match(0, (const char *)0x10, 4));
	fprintf(m, "match_huge_length=%d\n", sys_regex_match(0, "a", (size_t)1 << 30));
	size_t n = 50000;
	char *as = malloc(n);
	memset(as, 'a', n);
	fprintf(m, "match_exploding=%d\n", sys_regex_match(1, as, n));
	free(as);
	fprintf(m, "subst_bad_text=%ld\n", sys_regex_subst(0, (const char *)0x10, "x", dst, sizeof dst, 0));
	fprintf(m, "subst_bad_replacement=%ld\n", sys_regex_subst(0, "X-Copy", (const char *)0x10, dst, sizeof dst, 0));
	fprintf(m, "subst_bad_dst=%ld\n", sys_regex_subst(0, "X-Copy", "y", (char *)0x10, sizeof dst, 0));
	fprintf(m, "subst_no_room=%ld\n", sys_regex_subst(0, "X-Copy", "y", NULL, 0, 0));
	memset(dst, 0, sizeof dst);
	long cut = sys_regex_subst(0, "X-Value", "y", dst, 4, 0);
	fprintf(m, "subst_cut=%ld [%s]\n", cut, dst);
	fprintf(m, "subst_unknown=%ld\n", sys_regex_subst(99, "a", "b", dst, sizeof dst, 0));
	fprintf(m, "copyto_bad_list=%d\n", sys_regex_copyto(0, REQ, 7));
	fprintf(m, "copyto_same_list=%d\n", sys_regex_copyto(0, REQ, REQ));
}

/* Eight different bytes repeated over 4 MiB: each position keeps several threads alive, past the budget. */
static void budget(void)
{
	size_t n = 4u << 20;
	char *text = malloc(n);
	for (size_t i = 0; i < n; i++)
		text[i] = "abcdefgh"[i % 8];
	int h = sys_regex_compile("(?:a|b|c|d|e|f|g|h)*z", 21);
	fprintf(m, "rc=%d\n", sys_regex_match(h, text, n));
	fprintf(m, "next=%d\n", sys_regex_match(h, "abz", 3));
	free(text);
}

static void on_get(const char *url, const char *arg)
{
	(void)arg;
	char path[64];
	url_path(url, path, sizeof path);
	begin();
	if (strcmp(path, "/corpus") == 0)
		corpus();
	else if (native)
		fputs("regex: native mode\n", m);
	else if (strcmp(path, "/subst") == 0)
		subst();
	else if (strcmp(path, "/copyto") == 0)
		copyto();
	else if (strcmp(path, "/table") == 0)
		table();
	else if (strcmp(path, "/hostile") == 0)
		hostile();
	else if (strcmp(path, "/budget") == 0)
		budget();
	else if (strcmp(path, "/expected") == 0)
		fputs(EXPECTED, m);
	else if (strcmp(path, "/expected-subst") == 0)
		for (size_t i = 0; i < SUBST_N; i++)
			fprintf(m, "%s\n", SUBST[i].expected);
	finish();
}

int main(int argc, char **argv)
{
	if (native_mode()) {
		for (int i = 1; i < argc; i++)
			on_get(argv[i], "");
		return 0;
	}
	if (sys_regex_compile("^X-Copy", 7) != 0 || sys_regex_compile("(a*)*b", 6) != 1)
		return 1;
	set_backend_get(on_get);
	wait_for_requests();
}
