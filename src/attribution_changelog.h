/*
 * attribution_changelog.h - writing what the attribution engine said
 * (attribution_changelog.c), in the caller's transaction with SPI
 * connected: the changelog, the current credits, the late and future
 * events and the totals.
 */
#ifndef PROPENSITY_ATTRIBUTION_CHANGELOG_H
#define PROPENSITY_ATTRIBUTION_CHANGELOG_H

#include "postgres.h"
#include "utils/hsearch.h"

#include "attribution_settings.h"
#include "core/attr_engine.h"

/* the totals of a batch, per (advertiser, campaign), before they are added */
typedef struct TotalsKey
{
	int64		advertiser_id;
	int64		campaign_id;
	int32		has_campaign;
	int32		pad;
} TotalsKey;

enum
{
	TOTAL_IM, TOTAL_CL, TOTAL_PC, TOTAL_PV, TOTAL_NONE, TOTAL_LATE, TOTAL_FUTURE, TOTAL_N
};

typedef struct TotalsEntry
{
	TotalsKey	key;
	int64		c[TOTAL_N];
} TotalsEntry;

/* An empty table of totals in CurrentMemoryContext, and adding n to one. */
extern HTAB *prop_attr_totals_create(void);
extern void prop_attr_totals_add(HTAB *h, int64 adv, bool has_campaign, int64 campaign,
								 int which, int64 n);

/* Adds the batch's totals to propensity.attribution_totals. */
extern void prop_attr_write_totals(HTAB *h);

/*
 * The changelog rows of a batch, and each changed conversion's new credit
 * into attribution_current (counted into totals); fresh: the conversions
 * have no row there yet (a backfill into emptied tables).
 */
extern void prop_attr_write_deltas(int64 batch, const AttrBatchResult *r, HTAB *totals, bool fresh);

/*
 * The late and future events among in[n] (late[i], future[i]) into
 * attribution_late, with the watermark they missed (max_before less the
 * advertiser's lateness) or the future limit they passed.
 */
extern void prop_attr_write_late(int64 batch, const AttrInput *in, char **type_names,
								 const bool *has_adv, int n, const bool *late, const bool *future,
								 int64 max_before, int64 future_limit,
								 AttrSettingsTable *settings, HTAB *totals);

/* Counts the in-time impressions and clicks of in[n] into the totals. */
extern void prop_attr_count_events(const AttrInput *in, int n, const bool *late,
								   const bool *future, HTAB *totals);

/*
 * Whether the installed schema has the columns of future events (0.8.0);
 * an older schema gets a future event listed and counted as late.
 */
extern bool prop_attr_schema_has_future(void);

#endif
