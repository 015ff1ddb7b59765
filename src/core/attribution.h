/*
 * attribution.h - the post-click / post-view rules of SPEC section 5 for one
 * (user, advertiser) key: which impression, if any, earns a conversion.
 *
 * Pure C, allocation-free.  A conversion's credit is a function of the set
 * of the key's events only (never of the order they are given in), which is
 * what makes retraction-based order independence possible on top of it.
 */
#ifndef PROPENSITY_ATTRIBUTION_H
#define PROPENSITY_ATTRIBUTION_H

#include <stdbool.h>
#include <stdint.h>

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

/* SPEC defaults: 30 days each. */
extern AttrSettings attr_default_settings(void);

/*
 * Credit of events[conversion] (a CN) given all n events of its key.
 * Quadratic in the key's impressions and clicks; keys are small.
 */
extern AttrCredit attr_credit(const AttrEvent *events, int n, int conversion,
							  const AttrSettings *settings);

#endif
