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

/*
 * A bump arena over a CoreAllocator: allocations are carved from blocks
 * and only freed all at once.  Blocks start at first_block bytes and double
 * up to max_block (equal for fixed-size blocks); a request larger than the
 * next block gets a block of its own size.
 */
typedef struct CoreArenaBlock
{
	struct CoreArenaBlock *next;
	size_t		used;
	size_t		size;
	char		data[];
} CoreArenaBlock;

typedef struct CoreArena
{
	CoreAllocator allocator;
	CoreArenaBlock *blocks;		/* the current block first */
	size_t		bytes;			/* held in blocks, their headers included */
	size_t		next_size;
	size_t		max_block;
} CoreArena;

extern void core_arena_init(CoreArena *arena, CoreAllocator allocator, size_t first_block,
							size_t max_block);

/* len bytes aligned to align (a power of two); never NULL */
extern void *core_arena_alloc(CoreArena *arena, size_t len, size_t align);

/* A copy of s[0..len), NUL-terminated. */
extern char *core_arena_strdup(CoreArena *arena, const char *s, size_t len);

/* Free every block; the arena can be used again. */
extern void core_arena_reset(CoreArena *arena);

#endif
