/*
 * attribution.h - what the attribution glue files share: the advertiser
 * settings (attribution_engine.c) and the batch scan of the stored events
 * (attribution_batch.c).
 */
#ifndef PROPENSITY_ATTRIBUTION_GLUE_H
#define PROPENSITY_ATTRIBUTION_GLUE_H

#include "postgres.h"

#include "core/attr_batch.h"

typedef struct AdvRow
{
	int64		advertiser_id;
	AttrAdvSettings s;
} AdvRow;

/* The rows of propensity.advertiser_settings, and the SPEC defaults. */
typedef struct AttrSettingsTable
{
	int			n;
	AdvRow	   *rows;			/* sorted by advertiser_id */
	AttrAdvSettings defaults;
	int64		max_reach_us;	/* max of lateness + W over all */
} AttrSettingsTable;

/* Read the settings table; SPI must be connected.  In CurrentMemoryContext. */
extern AttrSettingsTable prop_attr_load_settings(void);

/* GUC (minutes, -1: none): how far past its ingest an event may be and count */
extern int	propensity_future_horizon;

/* The time after which an event ingested now is future (PG_INT64_MAX: none). */
extern int64 prop_future_limit(void);

/* An AttrSettingsFn over an AttrSettingsTable. */
extern void prop_attr_settings_lookup(void *table, int64_t advertiser_id, AttrAdvSettings *out);

/*
 * Where a scan's results go.  Per hash class of users: credit() for each
 * conversion, then total() for each (advertiser, campaign), then
 * class_done(); the strings handed to credit() live until class_done()
 * returns.
 */
typedef struct AttrScanSink
{
	AttrBatchEmit credit;
	void		(*total) (void *arg, const AttrBatchTotal *total);
	void		(*class_done) (void *arg);
	void	   *arg;
} AttrScanSink;

/* What a scan saw. */
typedef struct AttrScanInfo
{
	bool		has_max;
	int64		max_time;		/* latest event time, late events excluded */
	int64		events;			/* events handed to the engine's rules */
	int64		conversions;
	int			passes;			/* scans of the events (memory bound) */
} AttrScanInfo;

/*
 * Credit every conversion among the stored events into sink, with the
 * impressions and clicks of each (advertiser, campaign).  With
 * skip_late, events recorded in attribution_late are left out, as the
 * streaming engine left them out.  Memory is bounded by
 * propensity.batch_memory: past it, users are split by hash into classes
 * evaluated in separate scans.  Connects to SPI itself.
 */
extern void prop_attr_scan(bool skip_late, const AttrSettingsTable *settings,
						   const AttrScanSink *sink, AttrScanInfo *info);

#endif
