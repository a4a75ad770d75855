/*
 * sqlite — read-only SQL queries against one SQLite database, answered as JSON:
 *   {"columns":["id","name"],"rows":[[1,"alpha"],[2,null]]}
 * Values: INTEGER → number, REAL → number (shortest text that reads back the same double; ±Inf and NaN
 * → null), TEXT → string (controls escaped as \u00XX, other bytes as stored), BLOB → {"blob":"<hex>"},
 * NULL → null.
 *
 * The database (argv[1], readable through allowed_paths) is opened read-only once in main(), and its
 * schema is read there (all of it, when it fits in the page cache), so every request starts from the
 * frozen connection and its warm page cache. Each request is a read transaction: SQLite takes a shared
 * lock and re-reads the file's change counter (fcntl, stat, pread: 8 system calls), and drops its cache
 * if the file was changed. With --immutable (argv[2]) the database is opened as
 * "file:DATABASE?immutable=1": no locks, no checks, no system call at all for a cached page — several
 * times faster for small queries under tskvm — but the file must then not change while the program runs.
 * (tskvm's fcntl locks are not host locks, so a host process writing the file is never held off anyway.)
 * A request is one SQL statement, in the body (or in `arg` when the body is empty):
 *   200 application/json   the rows
 *   400 application/json   {"error":"<sqlite's message>"} — bad SQL, several statements, a runtime error
 *   403 application/json   {"error":"…"} — a statement that is not read-only (sqlite3_stmt_readonly)
 * ATTACH is disabled, temporary storage stays in memory, and what SQLite allocates in a request is capped
 * at 3/4 of max_request_memory (get_meminfo), so a query that needs more fails inside SQLite with "out of
 * memory" (400) while the C side still has room to answer.
 *
 *   in tskvm:   main_arguments ["/path/to/db"] or ["/path/to/db", "--immutable"],
 *               allowed_paths ["/path/to/db"]; any method
 *   natively:   sqlite DB [--immutable] < query → the same body on stdout; exit 0 (200), 1 (400), 3 (403)
 *               sqlite --create DB < script → runs an SQL script against a new read-write DB (to build
 *                                             the demo and test databases; native only)
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sqlite3.h>
#include "kvm_api.h"
#include "native.h"
#include "respond.h"

static sqlite3 *db;

struct answer {
	int status;
	char *body;
	size_t len;
};

static void json_string(FILE *f, const char *s, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
		else if (c == '\n') fputs("\\n", f);
		else if (c == '\t') fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
		else fputc(c, f);
	}
	fputc('"', f);
}

/* The shortest %.Ng (N = 15..17) that reads back as the same double. */
static void json_real(FILE *f, double d)
{
	if (!isfinite(d)) {
		fputs("null", f);
		return;
	}
	char buf[32];
	for (int digits = 15; digits <= 17; digits++) {
		snprintf(buf, sizeof buf, "%.*g", digits, d);
		if (strtod(buf, NULL) == d) break;
	}
	fputs(buf, f);
}

static struct answer error_answer(int status, const char *message)
{
	struct answer a = { status, NULL, 0 };
	FILE *f = open_memstream(&a.body, &a.len);
	fputs("{\"error\":", f);
	json_string(f, message, strlen(message));
	fputs("}\n", f);
	fclose(f);
	return a;
}

static struct answer run_query(const char *sql, size_t sql_len)
{
	sqlite3_stmt *stmt = NULL;
	const char *tail = NULL;
	if (sqlite3_prepare_v2(db, sql, (int)sql_len, &stmt, &tail) != SQLITE_OK)
		return error_answer(400, sqlite3_errmsg(db));
	if (stmt == NULL) return error_answer(400, "empty query");

	/* Anything after the statement must be whitespace, comments or semicolons. */
	size_t rest = sql_len - (size_t)(tail - sql);
	if (rest > 0) {
		sqlite3_stmt *next = NULL;
		int rc = sqlite3_prepare_v2(db, tail, (int)rest, &next, NULL);
		sqlite3_finalize(next);
		if (rc != SQLITE_OK || next != NULL) {
			sqlite3_finalize(stmt);
			return error_answer(400, "one SQL statement per request");
		}
	}
	if (!sqlite3_stmt_readonly(stmt)) {
		sqlite3_finalize(stmt);
		return error_answer(403, "only read-only statements are allowed");
	}

	struct answer a = { 200, NULL, 0 };
	FILE *f = open_memstream(&a.body, &a.len);
	int columns = sqlite3_column_count(stmt);
	fputs("{\"columns\":[", f);
	for (int i = 0; i < columns; i++) {
		const char *name = sqlite3_column_name(stmt, i);
		if (i) fputc(',', f);
		json_string(f, name, strlen(name));
	}
	fputs("],\"rows\":[", f);
	int rc, row = 0;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		fputs(row++ ? ",[" : "[", f);
		for (int i = 0; i < columns; i++) {
			if (i) fputc(',', f);
			switch (sqlite3_column_type(stmt, i)) {
			case SQLITE_INTEGER:
				fprintf(f, "%lld", (long long)sqlite3_column_int64(stmt, i));
				break;
			case SQLITE_FLOAT:
				json_real(f, sqlite3_column_double(stmt, i));
				break;
			case SQLITE_TEXT: {
				const char *text = (const char *)sqlite3_column_text(stmt, i);
				json_string(f, text, (size_t)sqlite3_column_bytes(stmt, i));
				break;
			}
			case SQLITE_BLOB: {
				const unsigned char *blob = sqlite3_column_blob(stmt, i);
				int n = sqlite3_column_bytes(stmt, i);
				fputs("{\"blob\":\"", f);
				for (int j = 0; j < n; j++) fprintf(f, "%02x", blob[j]);
				fputs("\"}", f);
				break;
			}
			default:
				fputs("null", f);
			}
		}
		fputc(']', f);
	}
	fputs("]}\n", f);
	fclose(f);
	if (rc != SQLITE_DONE) {
		struct answer e = error_answer(400, sqlite3_errmsg(db));
		free(a.body);
		a = e;
	}
	sqlite3_finalize(stmt);
	return a;
}

static void on_request(const struct kvm_request *r)
{
	const char *sql = r->content_len ? (const char *)r->content : r->arg;
	size_t len = r->content_len ? r->content_len : r->arg_len;
	struct answer a = run_query(sql, len);
	respond_owned((int16_t)a.status, "application/json", a.body, a.len, free, NULL);
}

static long long pragma_int(const char *name)
{
	char sql[64];
	sqlite3_stmt *stmt;
	long long value = 0;
	snprintf(sql, sizeof sql, "PRAGMA %s", name);
	if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW)
		value = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return value;
}

/* Native only: sqlite --create DB < script.sql */
static int create(const char *path)
{
	size_t len;
	char *script = read_all(0, &len), *message = NULL;
	if (unlink(path) != 0 && errno != ENOENT) {
		perror(path);
		return 1;
	}
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, script, NULL, NULL, &message) != SQLITE_OK) {
		fprintf(stderr, "sqlite --create %s: %s\n", path, message ? message : sqlite3_errmsg(db));
		return 1;
	}
	return sqlite3_close(db) == SQLITE_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--create") == 0 && !kvm_is_sandboxed()) return create(argv[2]);
	bool immutable = argc == 3 && strcmp(argv[2], "--immutable") == 0;
	if (argc != 2 && !immutable) {
		fprintf(stderr, "usage: sqlite DATABASE [--immutable] < query   (or sqlite --create DATABASE < script)\n");
		return 2;
	}
	/* --immutable: "file:DATABASE?immutable=1", with the URI's special characters escaped. */
	char *uri = NULL;
	size_t uri_len = 0;
	FILE *f = open_memstream(&uri, &uri_len);
	fputs("file:", f);
	for (const char *c = argv[1]; *c; c++) {
		if (*c == '%' || *c == '?' || *c == '#') fprintf(f, "%%%02X", (unsigned char)*c);
		else fputc(*c, f);
	}
	fputs("?immutable=1", f);
	fclose(f);
	if (sqlite3_open_v2(immutable ? uri : argv[1], &db, SQLITE_OPEN_READONLY | (immutable ? SQLITE_OPEN_URI : 0), NULL) != SQLITE_OK) {
		fprintf(stderr, "sqlite: %s: %s\n", argv[1], sqlite3_errmsg(db));
		return 1;
	}
	sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
	sqlite3_exec(db, "PRAGMA temp_store = MEMORY", NULL, NULL, NULL);
	/* Read the schema now (and with it the first pages), before the VM is frozen. */
	char *message = NULL;
	if (sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, &message) != SQLITE_OK) {
		fprintf(stderr, "sqlite: %s: %s\n", argv[1], message);
		return 1;
	}
	/* A database that fits in the page cache (2 MiB by default) is read whole: quick_check visits
	 * every page. Requests then read no page from the file, only its change counter. */
	if (pragma_int("page_count") * pragma_int("page_size") <= (2 << 20))
		sqlite3_exec(db, "PRAGMA quick_check", NULL, NULL, NULL);

	if (!kvm_is_sandboxed()) {
		size_t len;
		char *sql = read_all(0, &len);
		struct answer a = run_query(sql, len);
		fwrite(a.body, 1, a.len, stdout);
		return a.status == 200 ? 0 : a.status == 403 ? 3 : 1;
	}
	struct meminfo info;
	get_meminfo(&info);
	if (info.max_reqmem) sqlite3_hard_heap_limit64(sqlite3_memory_used() + (sqlite3_int64)(info.max_reqmem / 4 * 3));
	set_backend_request(on_request);
	wait_for_requests();
}
