/*
 * heap.h — a heap grown once, before the freeze.
 *
 * In a request VM every brk and mmap is a guest exit (tens of µs on PVM), and an ephemeral request
 * starts again from the frozen malloc state: the heap glibc grew for one request is gone for the
 * next. A handler that allocates a few MiB would pay a brk per 128 KiB (glibc's default step), or an
 * mmap and a munmap per large block, in every request. Growing the heap in main() and keeping it (no
 * trimming, large blocks from the heap too) makes the requests' allocations free of syscalls; the
 * pages stay untouched until a request uses them.
 *
 * The reservation belongs to the program, not to its requests: max_request_memory limits what a
 * request allocates beyond it.
 */
#ifndef TSKVM_EXAMPLES_HEAP_H
#define TSKVM_EXAMPLES_HEAP_H

#include <malloc.h>
#include <stdlib.h>

static inline void reserve_heap(size_t bytes)
{
	mallopt(M_MMAP_THRESHOLD, 32 << 20); /* glibc's largest; blocks below it come from the heap */
	mallopt(M_TRIM_THRESHOLD, 1 << 30);  /* never give the heap's top back */
	mallopt(M_TOP_PAD, 4 << 20);         /* beyond the reservation, grow in 4 MiB steps */
	void *volatile block = malloc(bytes); /* volatile: the compiler would drop a malloc freed unused */
	free(block);
}

#endif
