/*
 * core_alloc.c - malloc-backed CoreAllocator for standalone programs.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core_alloc.h"

static void *
malloc_alloc(void *ctx, size_t size)
{
	void	   *p = malloc(size ? size : 1);

	(void) ctx;
	if (p == NULL)
	{
		fprintf(stderr, "out of memory\n");
		abort();
	}
	return p;
}

static void *
malloc_realloc(void *ctx, void *ptr, size_t size)
{
	void	   *p = realloc(ptr, size ? size : 1);

	(void) ctx;
	if (p == NULL)
	{
		fprintf(stderr, "out of memory\n");
		abort();
	}
	return p;
}

static void
malloc_free(void *ctx, void *ptr)
{
	(void) ctx;
	free(ptr);
}

const CoreAllocator core_malloc_allocator = {malloc_alloc, malloc_realloc, malloc_free, NULL};
