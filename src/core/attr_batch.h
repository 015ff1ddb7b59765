/*
 * attr_batch.h - batch attribution (docs/computing.md section 5) over a whole set of
 * events at once: the events are grouped per user as they are added, and
 * every conversion is then credited with attr_credit() against the events of
 * its (user, advertiser) key.  Totals of impressions and clicks per
 * (advertiser, campaign) are counted on the way.
 *
 * The result is the credit attr_credit() gives each conversion given all the
 * events added, which is what the streaming engine (attr_engine.h) reaches
 * after any sequence of batches of the same in-time events.
 *
 * Most impressions and clicks cannot affect any conversion: a caller that
 * adds the conversions first can leave those out (ab_needed()), and count
 * them in the totals only (ab_count()).
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

/* The key of a user (by ab_hash()) and an advertiser for ab_needed(). */
extern uint32_t ab_key(uint32_t user_hash, int64_t advertiser_id);

/*
 * Count an impression or click in the totals (any other type is ignored).
 * Every IM and CL is counted once, whether it is added or not.
 */
extern void ab_count(AttrBatch *ab, const AttrInput *event);

/*
 * Add one event of an advertiser (IM, CL or CN; any other type is ignored).
 * hash is ab_hash() of the user id.  The event id and auction id are
 * id_len and auction_len bytes, not necessarily NUL-terminated; all
 * strings are copied.  Totals are ab_count()'s.
 */
extern void ab_add(AttrBatch *ab, const AttrInput *event, uint32_t hash, uint32_t id_len,
				   uint32_t auction_len);

/*
 * Whether an impression or click of key (ab_key()) at time_us can change
 * the credit of a conversion added so far: true when the key has one at or
 * after time_us (docs/computing.md section 5 looks back only, and within the key).
 * Keys are hashed, so it may be true for an event that cannot; it is never
 * false for one that can.  Adding every conversion first and then only the
 * impressions and clicks needed gives the same credits as adding all.
 */
extern bool ab_needed(const AttrBatch *ab, uint32_t key, int64_t time_us);

/*
 * Let ab_evaluate() call interrupt->check now and then (interrupt must
 * outlive the batch).  A check that does not return leaves the batch to be
 * thrown away with its memory.
 */
extern void ab_set_interrupt(AttrBatch *ab, const CoreInterrupt *interrupt);

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
