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

/* malloc-backed allocator that aborts on exhaustion; for standalone use */
extern const CoreAllocator core_malloc_allocator;

#endif
