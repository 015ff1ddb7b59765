/*
 * core_alloc.h - the allocator the pure-C core allocates through, so that
 * inside the server its memory lives in a memory context (freed on error)
 * while the standalone tests use malloc under ASan or Valgrind.
 */
#ifndef PROPENSITY_CORE_ALLOC_H
#define PROPENSITY_CORE_ALLOC_H

#include <stddef.h>

typedef struct CoreAllocator
{
	void	   *(*alloc) (void *ctx, size_t size);	/* never returns NULL */
	void	   *(*realloc) (void *ctx, void *ptr, size_t size);
	void		(*free) (void *ctx, void *ptr);
	void	   *ctx;
} CoreAllocator;

/*
 * Called now and then from the core's long loops so that the caller can
 * honour a cancel or a statement timeout.  Inside the server it is
 * CHECK_FOR_INTERRUPTS(), which may not return: a core structure that was
 * being changed is then left half-done, and its owner must discard it (all
 * its memory lives in one memory context).
 */
typedef struct CoreInterrupt
{
	void		(*check) (void *arg);	/* NULL: never interrupted */
	void	   *arg;
} CoreInterrupt;

#define CORE_INTERRUPT_EVERY 4096	/* units of work between two checks */

/* malloc-backed allocator that aborts on exhaustion; for standalone use */
extern const CoreAllocator core_malloc_allocator;

#endif
