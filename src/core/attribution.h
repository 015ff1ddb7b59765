/*
 * attribution.h - the post-click / post-view rules of docs/computing.md section 5 for one
 * (user, advertiser) key: which impression, if any, earns a conversion.
 *
 * Pure C.  A conversion's credit is a function of the set of the key's
 * events only (never of the order they are given in), which is what makes
 * retraction-based order independence possible on top of it.
 *
 * Two implementations of the same rules: attr_credit() credits one
 * conversion by looking at every pair of events (the specification, kept
 * for tests), and attr_credit_key() credits all of a key's conversions in
 * one sweep, which is what the engines run: a key can hold the events of a
 * bot or of a stress test, and per-conversion pair searches over it grow
 * with conversions x events x clicks.
 */
#ifndef PROPENSITY_ATTRIBUTION_H
#define PROPENSITY_ATTRIBUTION_H

#include <stdbool.h>
#include <stdint.h>

#include "core_alloc.h"
#include "features.h"

typedef struct AttrEvent
{
	const char *event_id;		/* unique; ties break on it (bytewise) */
	FeatEventType type;
	int64_t		time_us;
	bool		has_campaign;
	int64_t		campaign_id;
	const char *auction_id;		/* NULL when absent */
	bool		has_pixel;
	int64_t		pixel_id;
} AttrEvent;

typedef enum AttrKind
{
	ATTR_NONE = 0,
	ATTR_PC,
	ATTR_PV
} AttrKind;

typedef struct AttrSettings
{
	int64_t		pc_window_us;	/* post-click window */
	int64_t		pv_window_us;	/* post-view window */
	int64_t		rolling_us;		/* W: a longer window acts as W */
} AttrSettings;

typedef struct AttrCredit
{
	AttrKind	kind;
	int			impression;		/* index into events, -1 for ATTR_NONE */
	bool		has_campaign;	/* false: credited under a NULL campaign */
	int64_t		campaign_id;
} AttrCredit;

extern const char *attr_kind_name(AttrKind kind);

/* defaults of docs/computing.md: 30 days each. */
extern AttrSettings attr_default_settings(void);

/*
 * Credit of events[conversion] (a CN) given all n events of its key, by
 * looking at every candidate impression and click: quadratic in the key's
 * events.  The reference the sweep below is tested against.
 */
extern AttrCredit attr_credit(const AttrEvent *events, int n, int conversion,
							  const AttrSettings *settings);

/*
 * Working memory of attr_credit_key(), reused from key to key.  interrupt
 * (NULL: none) must outlive it; it is checked every CORE_INTERRUPT_EVERY
 * units of work.
 */
typedef struct AttrScratch AttrScratch;

extern AttrScratch *attr_scratch_create(const CoreAllocator *allocator,
										const CoreInterrupt *interrupt);
extern void attr_scratch_destroy(AttrScratch *scratch);
extern size_t attr_scratch_memory(const AttrScratch *scratch);

/*
 * The credit of every conversion of a key whose time is at or after
 * from_us, into out[i] for each such events[i] (other entries untouched);
 * events in any order.  Equal to attr_credit() for each of them.  Costs
 * O(m log m) for the m events within the windows of those conversions,
 * plus, for each click, the distinct pixels among the impressions of its
 * auction (one, unless auction ids are reused across pixels).
 */
extern void attr_credit_key(AttrScratch *scratch, const AttrEvent *events, int n, int64_t from_us,
							const AttrSettings *settings, AttrCredit *out);

#endif
