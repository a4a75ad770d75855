/*
 * lua — runs the Lua 5.4 script in the request body, each request in a fresh interpreter state:
 * untrusted code isolated per request, the way one would run user scripts at the edge.
 *
 * Only the safe libraries are opened: base (without dofile and loadfile; load takes text chunks only),
 * coroutine, string, table, math, utf8 — no io, os, package or debug. Bytecode is refused.
 * The body of a 200 answer (text/plain) is what the script printed, then its return values if any,
 * formatted like print (tostring, tab-separated, one line).
 *
 *   200 text/plain   the output
 *   400 text/plain   the Lua error message ("script:3: attempt to …", "not enough memory", …)
 *
 * Limits: the Lua heap (and the output) may use 3/4 of max_request_memory (get_meminfo), then the
 * allocator fails and the script stops with "not enough memory" (400); the rest is headroom for the C
 * side to answer. (Without the cap the outcome is the same, one step later: the host refuses brk/mmap
 * beyond max_request_memory with ENOMEM, malloc returns NULL, and Lua raises the same error.) A script
 * that never ends is stopped by the host at max_request_time (504, TSKVM_ERR_GUEST_TIMEOUT; no
 * on_error handler is registered).
 *
 *   in tskvm:   any method; the script is the body, or `arg` when the body is empty
 *   natively:   lua < script  → the same body on stdout (exit 0, or 1 for a Lua error), heap limit 48 MiB
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lua5.4/lua.h>
#include <lua5.4/lauxlib.h>
#include <lua5.4/lualib.h>
#include "kvm_api.h"
#include "native.h"
#include "respond.h"

/* What one run may allocate, Lua heap and output together. */
static size_t heap_limit = (size_t)48 << 20;

struct run {
	size_t used;      /* bytes held by the Lua heap and the output buffer */
	char *out;        /* the response body */
	size_t len, cap;
};

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct run *run = ud;
	size_t old = ptr ? osize : 0;
	if (nsize == 0) {
		free(ptr);
		run->used -= old;
		return NULL;
	}
	if (nsize > old && nsize - old > heap_limit - run->used) return NULL;
	void *p = realloc(ptr, nsize);
	if (p) run->used = run->used - old + nsize;
	return p;
}

static struct run *get_run(lua_State *L)
{
	void *ud;
	lua_getallocf(L, &ud);
	return ud;
}

/* Appends to the output; a Lua error when the output would pass the limit. */
static void output(lua_State *L, const char *s, size_t n)
{
	struct run *run = get_run(L);
	if (run->len + n > run->cap) {
		size_t cap = run->cap ? run->cap : 4096;
		while (cap < run->len + n) cap *= 2;
		if (cap - run->cap > heap_limit - run->used) luaL_error(L, "not enough memory");
		char *p = realloc(run->out, cap);
		if (!p) luaL_error(L, "not enough memory");
		run->used += cap - run->cap;
		run->out = p;
		run->cap = cap;
	}
	memcpy(run->out + run->len, s, n);
	run->len += n;
}

/* print, with the stock formatting, into the output. */
static void print_values(lua_State *L, int first, int last)
{
	for (int i = first; i <= last; i++) {
		size_t n;
		const char *s = luaL_tolstring(L, i, &n);
		if (i > first) output(L, "\t", 1);
		output(L, s, n);
		lua_pop(L, 1);
	}
	output(L, "\n", 1);
}

static int l_print(lua_State *L)
{
	print_values(L, 1, lua_gettop(L));
	return 0;
}

/* load(chunk [, chunkname [, mode [, env]]]), for string chunks and text mode only. */
static int l_load(lua_State *L)
{
	size_t n;
	const char *chunk = luaL_checklstring(L, 1, &n);
	const char *name = luaL_optstring(L, 2, chunk);
	int env = !lua_isnone(L, 4) ? 4 : 0;
	if (luaL_loadbufferx(L, chunk, n, name, "t") != LUA_OK) {
		luaL_pushfail(L);
		lua_insert(L, -2);
		return 2;
	}
	if (env) {
		lua_pushvalue(L, env);
		if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
	}
	return 1;
}

/* In protected mode: open the libraries, load the script (text only), run it, print what it returns. */
static int l_main(lua_State *L)
{
	const char *script = lua_touserdata(L, 1);
	size_t len = (size_t)lua_tointeger(L, 2);
	static const luaL_Reg libs[] = {
		{ LUA_GNAME, luaopen_base }, { LUA_COLIBNAME, luaopen_coroutine }, { LUA_STRLIBNAME, luaopen_string },
		{ LUA_TABLIBNAME, luaopen_table }, { LUA_MATHLIBNAME, luaopen_math }, { LUA_UTF8LIBNAME, luaopen_utf8 },
		{ NULL, NULL },
	};
	for (const luaL_Reg *lib = libs; lib->func; lib++) {
		luaL_requiref(L, lib->name, lib->func, 1);
		lua_pop(L, 1);
	}
	lua_pushnil(L);
	lua_setglobal(L, "dofile");
	lua_pushnil(L);
	lua_setglobal(L, "loadfile");
	lua_pushcfunction(L, l_load);
	lua_setglobal(L, "load");
	lua_pushcfunction(L, l_print);
	lua_setglobal(L, "print");

	lua_settop(L, 0);
	if (luaL_loadbufferx(L, script, len, "=script", "t") != LUA_OK) return lua_error(L);
	lua_call(L, 0, LUA_MULTRET);
	if (lua_gettop(L) > 0) print_values(L, 1, lua_gettop(L));
	return 0;
}

/* Runs one script in a fresh state; returns 200 or 400 with *body (malloc'd) and *len set. */
static int run_script(const char *script, size_t len, char **body, size_t *body_len)
{
	struct run run = { 0, NULL, 0, 0 };
	lua_State *L = lua_newstate(limited_alloc, &run);
	if (!L) {
		*body = strdup("not enough memory\n");
		*body_len = strlen(*body);
		return 400;
	}
	lua_pushcfunction(L, l_main);
	lua_pushlightuserdata(L, (void *)script);
	lua_pushinteger(L, (lua_Integer)len);
	int status = 200;
	if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
		status = 400;
		const char *message = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		char *m = NULL;
		size_t n = 0;
		FILE *f = open_memstream(&m, &n);
		if (message) fprintf(f, "%s\n", message);
		else fprintf(f, "(error object is a %s value)\n", luaL_typename(L, -1));
		fclose(f);
		free(run.out);
		run.out = m;
		run.len = n;
	}
	lua_close(L);
	*body = run.out;
	*body_len = run.len;
	return status;
}

static void on_request(const struct kvm_request *r)
{
	const char *script = r->content_len ? (const char *)r->content : r->arg;
	size_t len = r->content_len ? r->content_len : r->arg_len;
	char *body;
	size_t n;
	int status = run_script(script, len, &body, &n);
	respond_owned((int16_t)status, "text/plain", body, body ? n : 0, free, NULL);
}

int main(void)
{
	if (!kvm_is_sandboxed()) {
		size_t len;
		char *script = read_all(0, &len);
		char *body;
		size_t n;
		int status = run_script(script ? script : "", len, &body, &n);
		if (body) fwrite(body, 1, n, stdout);
		return status == 200 ? 0 : 1;
	}
	struct meminfo info;
	get_meminfo(&info);
	if (info.max_reqmem) heap_limit = info.max_reqmem / 4 * 3;
	/* One run before the freeze warms malloc and the code pages every request uses. */
	char *body;
	size_t n;
	run_script("return ('warm'):rep(2)", 22, &body, &n);
	free(body);
	set_backend_request(on_request);
	wait_for_requests();
}
