/*
 * attribution_settings.h - the attribution rules' parameters
 * (attribution_settings.c): each advertiser's windows and allowed lateness
 * from propensity.advertiser_settings, the defaults, and the future horizon.
 */
#ifndef PROPENSITY_ATTRIBUTION_SETTINGS_H
#define PROPENSITY_ATTRIBUTION_SETTINGS_H

#include "postgres.h"

#include "core/attr_batch.h"

typedef struct AdvRow
{
	int64		advertiser_id;
	AttrAdvSettings s;
} AdvRow;

typedef struct AttrSettingsTable
{
	int			n;
	AdvRow	   *rows;			/* sorted by advertiser_id */
	AttrAdvSettings defaults;
	int64		max_reach_us;	/* max of lateness + W over all */
} AttrSettingsTable;

/* minutes, -1: none */
extern int	propensity_future_horizon;

/* Defines the GUCs of this room (from _PG_init). */
extern void prop_attr_settings_init(void);

/* The settings of every advertiser, in the caller's context (SPI connected). */
extern AttrSettingsTable prop_attr_load_settings(void);

/* An advertiser's settings (the defaults when it has no row); table is an AttrSettingsTable. */
extern void prop_attr_settings_lookup(void *table, int64_t advertiser_id, AttrAdvSettings *out);

/*
 * Events later than this (the transaction's start plus
 * propensity.future_horizon) are future: kept out of attribution and off
 * the watermark.  PG_INT64_MAX without a horizon.
 */
extern int64 prop_future_limit(void);

#endif
