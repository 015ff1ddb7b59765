/*
 * core_alloc.c - malloc-backed CoreAllocator for standalone programs, and
 * the core's one bump arena.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void
core_arena_init(CoreArena *arena, CoreAllocator allocator, size_t first_block, size_t max_block)
{
	arena->allocator = allocator;
	arena->blocks = NULL;
	arena->bytes = 0;
	arena->next_size = first_block;
	arena->max_block = max_block < first_block ? first_block : max_block;
}

void *
core_arena_alloc(CoreArena *arena, size_t len, size_t align)
{
	CoreArenaBlock *b = arena->blocks;
	size_t		at = b == NULL ? 0 : (b->used + align - 1) & ~(align - 1);

	if (b == NULL || at + len > b->size)
	{
		size_t		size = arena->next_size < len ? len : arena->next_size;

		b = arena->allocator.alloc(arena->allocator.ctx, sizeof(CoreArenaBlock) + size);
		b->next = arena->blocks;
		b->used = 0;
		b->size = size;
		arena->blocks = b;
		arena->bytes += sizeof(CoreArenaBlock) + size;
		arena->next_size = size * 2 > arena->max_block ? arena->max_block : size * 2;
		at = 0;
	}
	b->used = at + len;
	return b->data + at;
}

char *
core_arena_strdup(CoreArena *arena, const char *s, size_t len)
{
	char	   *out = core_arena_alloc(arena, len + 1, 1);

	memcpy(out, s, len);
	out[len] = '\0';
	return out;
}

void
core_arena_reset(CoreArena *arena)
{
	while (arena->blocks != NULL)
	{
		CoreArenaBlock *next = arena->blocks->next;

		arena->allocator.free(arena->allocator.ctx, arena->blocks);
		arena->blocks = next;
	}
	arena->bytes = 0;
}
