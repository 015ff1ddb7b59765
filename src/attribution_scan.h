/*
 * attribution_scan.h - batch attribution over the stored events
 * (attribution_scan.c): attribute_batch(), and the scan a backfill writes
 * from.
 */
#ifndef PROPENSITY_ATTRIBUTION_SCAN_H
#define PROPENSITY_ATTRIBUTION_SCAN_H

#include "postgres.h"

#include "attribution_settings.h"
#include "core/attr_batch.h"

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
