/*
 * attr_batch.h - batch attribution (SPEC section 5) over a whole set of
 * events at once: the events are grouped per user as they are added, and
 * every conversion is then credited with attr_credit() against the events of
 * its (user, advertiser) key.  Totals of impressions and clicks per
 * (advertiser, campaign) are counted on the way.
 *
 * The result is the credit attr_credit() gives each conversion given all the
 * events added, which is what the streaming engine (attr_engine.h) reaches
 * after any sequence of batches of the same in-time events.
 *
 * Pure C: memory comes from a CoreAllocator.  The caller bounds memory with
 * ab_memory() and splits users into hash classes when it must (by the high
 * bits of ab_hash(); the parts use the low ones).
 */
#ifndef PROPENSITY_ATTR_BATCH_H
#define PROPENSITY_ATTR_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attr_engine.h"

typedef struct AttrBatch AttrBatch;

/* One credited conversion, valid during the emit callback only. */
typedef struct AttrBatchCredit
{
	const char *user_id;
	uint32_t	user_len;
	int64_t		advertiser_id;
	const char *conversion_id;
	int64_t		conversion_time_us;
	AttrStored	credit;
} AttrBatchCredit;

typedef void (*AttrBatchEmit) (void *arg, const AttrBatchCredit *credit);

/* Impressions and clicks of one (advertiser, campaign). */
typedef struct AttrBatchTotal
{
	int64_t		advertiser_id;
	bool		has_campaign;
	int64_t		campaign_id;
	int64_t		impressions;
	int64_t		clicks;
} AttrBatchTotal;

extern AttrBatch *ab_create(const CoreAllocator *allocator);
extern void ab_destroy(AttrBatch *ab);

/* The user hash ab_add expects (the same as ut_hash). */
extern uint32_t ab_hash(const char *user, uint32_t len);

/*
 * Add one event of an advertiser (IM, CL or CN; any other type is ignored).
 * hash is ab_hash() of the user id.  The event id and auction id are
 * id_len and auction_len bytes, not necessarily NUL-terminated; all
 * strings are copied.
 */
extern void ab_add(AttrBatch *ab, const AttrInput *event, uint32_t hash, uint32_t id_len,
				   uint32_t auction_len);

/*
 * Credit every conversion added, in no particular order, calling emit for
 * each.  Call once, after the last ab_add.
 */
extern void ab_evaluate(AttrBatch *ab, AttrSettingsFn settings, void *settings_arg,
						AttrBatchEmit emit, void *emit_arg);

/* Iterate the totals: *pos starts at 0; returns false when done. */
extern bool ab_next_total(const AttrBatch *ab, size_t *pos, AttrBatchTotal *out);

extern size_t ab_event_count(const AttrBatch *ab);
/* users seen: known after ab_evaluate */
extern size_t ab_user_count(const AttrBatch *ab);
extern size_t ab_memory(const AttrBatch *ab);

#endif
