/*
 * huge_alloc.h - a CoreAllocator for the batch scans' large tables and
 * arenas: blocks of 2 MB or more are mapped on transparent huge pages where
 * the kernel allows it (a million random touches do not also miss the TLB,
 * and a gigabyte faults in 2 MB at a time); the mappings are listed so that
 * an error cannot leak them (huge_unmap_all in PG_FINALLY).  Smaller
 * requests come from a memory context.  It does not reallocate.
 */
#ifndef PROPENSITY_HUGE_ALLOC_H
#define PROPENSITY_HUGE_ALLOC_H

#include "utils/memutils.h"

#include "core/core_alloc.h"

typedef struct HugeMapping
{
	void	   *user;
	void	   *base;
	size_t		len;
} HugeMapping;

typedef struct HugeAllocator
{
	MemoryContext cxt;			/* requests under 2 MB */
	MemoryContext list_cxt;		/* the list of mappings */
	const char *purpose;		/* for the out-of-memory detail */
	HugeMapping *maps;
	int			nmaps;
	int			maxmaps;
} HugeAllocator;

/*
 * Set up ha and allocator.  Small requests come from cxt; the list of
 * mappings lives in the current memory context, which must outlive the
 * allocations (cxt may be reset in between, once they are freed).
 */
extern void huge_allocator_init(HugeAllocator *ha, CoreAllocator *allocator, MemoryContext cxt,
								const char *purpose);

/* Unmap whatever is still mapped. */
extern void huge_unmap_all(HugeAllocator *ha);

#endif
