/*
 * huge_alloc.c - the batch scans' CoreAllocator (huge_alloc.h).
 */
#include "postgres.h"

#include <sys/mman.h>

#include "huge_alloc.h"

#define HUGE_BLOCK ((size_t) 2 * 1024 * 1024)

static void *
huge_alloc(void *ctx, size_t size)
{
	HugeAllocator *ha = ctx;
	size_t		len;
	char	   *base;
	char	   *user;

	if (size < HUGE_BLOCK)
		return MemoryContextAllocHuge(ha->cxt, size);
	if (ha->nmaps == ha->maxmaps)
	{
		int			n = ha->maxmaps == 0 ? 64 : ha->maxmaps * 2;

		ha->maps = ha->maps == NULL ?
			MemoryContextAlloc(ha->list_cxt, sizeof(HugeMapping) * n) :
			repalloc(ha->maps, sizeof(HugeMapping) * n);
		ha->maxmaps = n;
	}
	len = size + HUGE_BLOCK;
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on a request of size %zu for %s.", size, ha->purpose),
				 errhint("Lower propensity.batch_memory.")));
	user = (char *) TYPEALIGN(HUGE_BLOCK, base);
#ifdef MADV_HUGEPAGE
	(void) madvise(user, TYPEALIGN_DOWN(HUGE_BLOCK, size), MADV_HUGEPAGE);
#endif
	ha->maps[ha->nmaps++] = (HugeMapping) {user, base, len};
	return user;
}

static void *
huge_realloc(void *ctx, void *ptr, size_t size)
{
	HugeAllocator *ha = ctx;

	elog(ERROR, "the allocator for %s does not reallocate", ha->purpose);
	return NULL;
}

static void
huge_free(void *ctx, void *ptr)
{
	HugeAllocator *ha = ctx;
	int			i;

	/* the latest first: blocks are mostly freed in reverse */
	for (i = ha->nmaps - 1; i >= 0; i--)
	{
		if (ha->maps[i].user == ptr)
		{
			munmap(ha->maps[i].base, ha->maps[i].len);
			ha->maps[i] = ha->maps[--ha->nmaps];
			return;
		}
	}
	pfree(ptr);
}

void
huge_allocator_init(HugeAllocator *ha, CoreAllocator *allocator, MemoryContext cxt,
					const char *purpose)
{
	memset(ha, 0, sizeof(*ha));
	ha->cxt = cxt;
	ha->list_cxt = CurrentMemoryContext;
	ha->purpose = purpose;
	allocator->alloc = huge_alloc;
	allocator->realloc = huge_realloc;
	allocator->free = huge_free;
	allocator->ctx = ha;
}

void
huge_unmap_all(HugeAllocator *ha)
{
	while (ha->nmaps > 0)
	{
		ha->nmaps--;
		munmap(ha->maps[ha->nmaps].base, ha->maps[ha->nmaps].len);
	}
}
