/*
 * attr_engine.h - the incremental attribution engine of docs/computing.md section 5.
 *
 * Per (user, advertiser) key the engine keeps the key's events of the
 * rolling window and, for every conversion, the credit it last emitted.  A
 * batch of new events is applied as a set: events older than the watermark
 * at the start of the batch are reported late and change nothing; the rest
 * join their keys, and every conversion of a touched key at or after the
 * earliest new event is re-evaluated with attr_credit().  A conversion whose
 * credit changed yields the retraction (-1) of the old credit, when there was
 * one, and the new credit (+1).
 *
 * Since attr_credit() is a function of the key's event set, the credits after
 * any sequence of batches equal a batch evaluation over the union of the
 * in-time events, whatever the order: that is the order-independence
 * property, and the retractions are what make the changelog sum to it.
 *
 * Pure C: memory comes from a CoreAllocator; nothing here knows PostgreSQL.
 * The engine does not deduplicate: the store in front of it does.
 */
#ifndef PROPENSITY_ATTR_ENGINE_H
#define PROPENSITY_ATTR_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attribution.h"
#include "core_alloc.h"

typedef struct AttrEngine AttrEngine;

/* An event given to the engine; strings are copied. */
typedef struct AttrInput
{
	const char *user_id;
	uint32_t	user_len;
	int64_t		advertiser_id;
	const char *event_id;
	FeatEventType type;
	int64_t		time_us;
	bool		has_campaign;
	int64_t		campaign_id;
	const char *auction_id;		/* NULL when absent */
	bool		has_pixel;
	int64_t		pixel_id;
} AttrInput;

/* A conversion's credit as stored (rebuild) or emitted. */
typedef struct AttrStored
{
	AttrKind	kind;
	bool		has_campaign;
	int64_t		campaign_id;
	const char *impression_id;	/* NULL for ATTR_NONE */
} AttrStored;

/* One changelog row.  Strings live until the next ae_apply or ae_evict. */
typedef struct AttrDelta
{
	const char *user_id;
	uint32_t	user_len;
	int64_t		advertiser_id;
	const char *conversion_id;
	int64_t		conversion_time_us;
	AttrStored	credit;
	int			sign;			/* -1 retraction, +1 credit */
} AttrDelta;

/* Per-advertiser settings: the windows plus the allowed lateness. */
typedef struct AttrAdvSettings
{
	AttrSettings windows;
	int64_t		lateness_us;
} AttrAdvSettings;

typedef void (*AttrSettingsFn) (void *arg, int64_t advertiser_id, AttrAdvSettings *out);

/* What one ae_apply did. */
typedef struct AttrBatchResult
{
	bool	   *late;			/* per input: older than the watermark */
	bool	   *future;			/* per input: later than the future limit */
	AttrDelta  *deltas;
	size_t		ndeltas;
	size_t		naffected;		/* conversions re-evaluated */
} AttrBatchResult;

extern AttrEngine *ae_create(const CoreAllocator *allocator);
extern void ae_destroy(AttrEngine *engine);

/*
 * Let the engine's long loops call interrupt->check (which must outlive the
 * engine).  If a check does not return, the engine is left half-updated and
 * must be thrown away with the memory it came from.
 */
extern void ae_set_interrupt(AttrEngine *engine, const CoreInterrupt *interrupt);

/*
 * Rebuild: add an event already attributed (credit: its conversion's stored
 * credit, NULL when it has none) without emitting anything.  The latest
 * event time seen moves as for ingested events.
 */
extern void ae_load(AttrEngine *engine, const AttrInput *event, const AttrStored *credit);

/*
 * Apply a batch of new events (already deduplicated).  With use_watermark,
 * an event with time < (latest time seen before the batch - its
 * advertiser's allowed lateness) is late.  An event later than the future
 * limit (ae_set_future_limit) is future.  Late and future events change
 * nothing, and a future one does not move the latest time seen: one event
 * dated years ahead would otherwise make every event after it late.  The
 * result is valid until the next call.
 */
extern const AttrBatchResult *ae_apply(AttrEngine *engine, const AttrInput *events, size_t n,
									   bool use_watermark, AttrSettingsFn settings,
									   void *settings_arg);

/*
 * Drop events that no in-time event can reach any more: older than the
 * latest time seen minus (allowed lateness + W) of their advertiser.
 * Returns the number of events dropped.
 */
extern size_t ae_evict(AttrEngine *engine, AttrSettingsFn settings, void *settings_arg);

/* Events after limit_us are future from the next ae_apply on (INT64_MAX: none). */
extern void ae_set_future_limit(AttrEngine *engine, int64_t limit_us);

/* Move the latest event time seen forward (never back) to t. */
extern void ae_observe_time(AttrEngine *engine, int64_t t);

/* Latest event time seen; false before any event. */
extern bool ae_max_time(const AttrEngine *engine, int64_t *max_time_us);
extern size_t ae_key_count(const AttrEngine *engine);
extern size_t ae_event_count(const AttrEngine *engine);
extern size_t ae_memory(const AttrEngine *engine);

/* Current credit of a conversion, for tests: false when unknown. */
extern bool ae_lookup_credit(const AttrEngine *engine, const char *user_id, uint32_t user_len,
							 int64_t advertiser_id, const char *conversion_id, AttrStored *out);

#endif
