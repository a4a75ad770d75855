/*
 * respond.h — answering with a body the handler allocated, freed one request later.
 *
 * sys_backend_response() ends the request: nothing after it runs, so a handler cannot free its own
 * answer. An ephemeral VM does not care (the fork is reset to the frozen image), but a VM with
 * `ephemeral: false`, and the native loop of `tskvm bench` (guest/bench/loop-host.c), keep their heap
 * from one request to the next. There the body of one answer is released when the next one is given,
 * so that a program's heap stays flat however many requests it serves.
 */
#ifndef TSKVM_EXAMPLES_RESPOND_H
#define TSKVM_EXAMPLES_RESPOND_H

#include <string.h>
#include "kvm_api.h"

/* Answers with body (NULL for none) and releases the previous answer's body with its release
 * function (NULL: the body is not to be freed, e.g. a static buffer). */
static inline void respond_owned(int16_t status, const char *ctype, void *body, size_t len,
                                 void (*release)(void *), const struct BackendResponseExtra *extra)
{
	static void *previous;
	static void (*release_previous)(void *);
	if (previous && release_previous) release_previous(previous);
	previous = body;
	release_previous = release;
	sys_backend_response(status, ctype, strlen(ctype), body ? body : "", len, extra);
}

#endif
