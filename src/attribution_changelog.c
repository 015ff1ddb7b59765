/*
 * attribution_changelog.c - writing what the attribution engine said, in
 * the caller's transaction: the changelog (-1 and +1 rows), each changed
 * conversion's current credit, the late and future events, and the totals
 * per advertiser and campaign.  The streaming engine and the backfill both
 * write through here.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"

#include "attribution_changelog.h"
#include "util.h"

static SPIPlanPtr totals_plan = NULL;
static SPIPlanPtr late_plan = NULL;
static SPIPlanPtr changelog_plan = NULL;
static SPIPlanPtr current_plan = NULL;
static SPIPlanPtr current_new_plan = NULL;

/*
 * Whether the installed schema has the columns of future events (0.8.0:
 * attribution_totals.future, attribution_late.reason).  A session whose
 * library is newer than the schema it writes (between installing the
 * library and ALTER EXTENSION ... UPDATE, or in the upgrade tests) lists
 * and counts a future event as late.  The two plans that name the columns
 * are prepared again when this changes under the session.
 */
static int	plans_future = -1;

bool
prop_attr_schema_has_future(void)
{
	Oid			nsp = get_namespace_oid("propensity", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("attribution_totals", nsp) : InvalidOid;
	bool		has = OidIsValid(rel) && get_attnum(rel, "future") != InvalidAttrNumber;

	if (plans_future != (int) has)
	{
		prop_plan_forget(&totals_plan);
		prop_plan_forget(&late_plan);
		plans_future = has;
	}
	return has;
}

void
prop_attr_totals_add(HTAB *h, int64 adv, bool has_campaign, int64 campaign, int which, int64 n)
{
	TotalsKey	k;
	TotalsEntry *e;
	bool		found;

	memset(&k, 0, sizeof(k));
	k.advertiser_id = adv;
	k.has_campaign = has_campaign;
	k.campaign_id = has_campaign ? campaign : 0;
	e = hash_search(h, &k, HASH_ENTER, &found);
	if (!found)
		memset(e->c, 0, sizeof(e->c));
	e->c[which] += n;
}

/*
 * The batch's totals into attribution_totals, in one statement; the rows
 * are locked in key order, so that batches of two workers meeting on the
 * same campaigns wait for each other instead of deadlocking.
 */
void
prop_attr_write_totals(HTAB *h)
{
	long		n = hash_get_num_entries(h);
	Datum	   *cols[2 + TOTAL_N];
	bool	   *campnull = palloc(sizeof(bool) * Max(n, 1));
	Oid			types[2 + TOTAL_N];
	Datum		values[2 + TOTAL_N];
	HASH_SEQ_STATUS seq;
	TotalsEntry *e;
	int			i = 0,
				j;

	if (n == 0)
		return;
	for (j = 0; j < 2 + TOTAL_N; j++)
	{
		cols[j] = palloc(sizeof(Datum) * n);
		types[j] = INT8ARRAYOID;
	}
	hash_seq_init(&seq, h);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		cols[0][i] = Int64GetDatum(e->key.advertiser_id);
		cols[1][i] = Int64GetDatum(e->key.campaign_id);
		campnull[i] = !e->key.has_campaign;
		for (j = 0; j < TOTAL_N; j++)
			cols[2 + j][i] = Int64GetDatum(e->c[j]);
		i++;
	}
	for (j = 0; j < 2 + TOTAL_N; j++)
		values[j] = prop_array_datum(cols[j], j == 1 ? campnull : NULL, n, INT8OID);
	if (prop_attr_schema_has_future())
		prop_plan_run(&totals_plan,
				 "INSERT INTO propensity.attribution_totals AS t"
				 "       (advertiser_id, campaign_id, impressions, clicks, pc, pv, unattributed, late, future)"
				 " SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9) AS x(a, c, i, l, p, v, u, late, fut)"
				 "  ORDER BY a, c"
				 " ON CONFLICT (advertiser_id, campaign_id) DO UPDATE SET"
				 "   impressions = t.impressions + excluded.impressions,"
				 "   clicks = t.clicks + excluded.clicks, pc = t.pc + excluded.pc,"
				 "   pv = t.pv + excluded.pv, unattributed = t.unattributed + excluded.unattributed,"
				 "   late = t.late + excluded.late, future = t.future + excluded.future",
				 2 + TOTAL_N, types, values, NULL, SPI_OK_INSERT);
	else
		prop_plan_run(&totals_plan,
				 "INSERT INTO propensity.attribution_totals AS t"
				 "       (advertiser_id, campaign_id, impressions, clicks, pc, pv, unattributed, late)"
				 " SELECT a, c, i, l, p, v, u, late + fut FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9)"
				 "        AS x(a, c, i, l, p, v, u, late, fut)"
				 "  ORDER BY a, c"
				 " ON CONFLICT (advertiser_id, campaign_id) DO UPDATE SET"
				 "   impressions = t.impressions + excluded.impressions,"
				 "   clicks = t.clicks + excluded.clicks, pc = t.pc + excluded.pc,"
				 "   pv = t.pv + excluded.pv, unattributed = t.unattributed + excluded.unattributed,"
				 "   late = t.late + excluded.late",
				 2 + TOTAL_N, types, values, NULL, SPI_OK_INSERT);
}

/*
 * The changelog rows of a batch, and each changed conversion's new credit
 * into attribution_current; fresh: the conversions have no row there yet
 * (a backfill into emptied tables), so no conflict is looked for.
 */
void
prop_attr_write_deltas(int64 batch, const AttrBatchResult *r, HTAB *totals, bool fresh)
{
	int			n = (int) r->ndeltas;
	Datum	   *conv = palloc(sizeof(Datum) * n),
			   *ctime = palloc(sizeof(Datum) * n),
			   *user = palloc(sizeof(Datum) * n),
			   *adv = palloc(sizeof(Datum) * n),
			   *camp = palloc(sizeof(Datum) * n),
			   *kind = palloc(sizeof(Datum) * n),
			   *imp = palloc(sizeof(Datum) * n),
			   *sign = palloc(sizeof(Datum) * n);
	bool	   *campnull = palloc(sizeof(bool) * n),
			   *impnull = palloc(sizeof(bool) * n);
	Oid			types[9] = {INT8OID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
	INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT2ARRAYOID};
	Datum		values[9];
	int			i;

	if (n == 0)
		return;
	for (i = 0; i < n; i++)
	{
		const AttrDelta *d = &r->deltas[i];

		conv[i] = CStringGetTextDatum(d->conversion_id);
		ctime[i] = TimestampTzGetDatum(d->conversion_time_us);
		user[i] = PointerGetDatum(cstring_to_text_with_len(d->user_id, d->user_len));
		adv[i] = Int64GetDatum(d->advertiser_id);
		campnull[i] = !d->credit.has_campaign;
		camp[i] = Int64GetDatum(d->credit.campaign_id);
		kind[i] = CStringGetTextDatum(attr_kind_name(d->credit.kind));
		impnull[i] = d->credit.impression_id == NULL;
		imp[i] = impnull[i] ? (Datum) 0 : CStringGetTextDatum(d->credit.impression_id);
		sign[i] = Int16GetDatum((int16) d->sign);
		prop_attr_totals_add(totals, d->advertiser_id, d->credit.has_campaign, d->credit.campaign_id,
				   d->credit.kind == ATTR_PC ? TOTAL_PC : d->credit.kind == ATTR_PV ? TOTAL_PV : TOTAL_NONE,
				   d->sign);
	}
	values[0] = Int64GetDatum(batch);
	values[1] = prop_array_datum(conv, NULL, n, TEXTOID);
	values[2] = prop_array_datum(ctime, NULL, n, TIMESTAMPTZOID);
	values[3] = prop_array_datum(user, NULL, n, TEXTOID);
	values[4] = prop_array_datum(adv, NULL, n, INT8OID);
	values[5] = prop_array_datum(camp, campnull, n, INT8OID);
	values[6] = prop_array_datum(kind, NULL, n, TEXTOID);
	values[7] = prop_array_datum(imp, impnull, n, TEXTOID);
	values[8] = prop_array_datum(sign, NULL, n, INT2OID);
	prop_plan_run(&changelog_plan,
			 "INSERT INTO propensity.attribution_changelog"
			 "       (batch, conversion_event_id, conversion_time, user_id, advertiser_id,"
			 "        campaign_id, kind, impression_event_id, delta)"
			 " SELECT $1, * FROM unnest($2, $3, $4, $5, $6, $7, $8, $9)",
			 9, types, values, NULL, SPI_OK_INSERT);
	/* the table side: each changed conversion's new credit (its one +1) */
	if (fresh)
		prop_plan_run(&current_new_plan,
				 "INSERT INTO propensity.attribution_current"
				 "       (conversion_event_id, conversion_time, user_id, advertiser_id, campaign_id,"
				 "        kind, impression_event_id, batch)"
				 " SELECT d.conv, d.ctime, d.usr, d.adv, d.camp, d.kind, d.imp, $1"
				 "   FROM unnest($2, $3, $4, $5, $6, $7, $8, $9)"
				 "        AS d(conv, ctime, usr, adv, camp, kind, imp, sign)"
				 "  WHERE d.sign = 1",
				 9, types, values, NULL, SPI_OK_INSERT);
	else
		prop_plan_run(&current_plan,
				 "INSERT INTO propensity.attribution_current AS c"
				 "       (conversion_event_id, conversion_time, user_id, advertiser_id, campaign_id,"
				 "        kind, impression_event_id, batch)"
				 " SELECT d.conv, d.ctime, d.usr, d.adv, d.camp, d.kind, d.imp, $1"
				 "   FROM unnest($2, $3, $4, $5, $6, $7, $8, $9)"
				 "        AS d(conv, ctime, usr, adv, camp, kind, imp, sign)"
				 "  WHERE d.sign = 1"
				 " ON CONFLICT (conversion_event_id, conversion_time) DO UPDATE SET"
				 "   campaign_id = excluded.campaign_id, kind = excluded.kind,"
				 "   impression_event_id = excluded.impression_event_id, batch = excluded.batch",
				 9, types, values, NULL, SPI_OK_INSERT);
}

/*
 * Late and future events of a batch: recorded with the watermark they
 * missed, or the future limit they passed.
 */
void
prop_attr_write_late(int64 batch, const AttrInput *in, char **type_names, const bool *has_adv, int n,
		   const bool *late, const bool *future, int64 max_before, int64 future_limit,
		   AttrSettingsTable *settings, HTAB *totals)
{
	Datum	   *id = palloc(sizeof(Datum) * n),
			   *time = palloc(sizeof(Datum) * n),
			   *user = palloc(sizeof(Datum) * n),
			   *type = palloc(sizeof(Datum) * n),
			   *adv = palloc(sizeof(Datum) * n),
			   *camp = palloc(sizeof(Datum) * n),
			   *mark = palloc(sizeof(Datum) * n),
			   *reason = palloc(sizeof(Datum) * n);
	bool	   *advnull = palloc(sizeof(bool) * n),
			   *campnull = palloc(sizeof(bool) * n);
	Oid			types[9] = {INT8OID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	INT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID};
	Datum		values[9];
	Datum		late_text = CStringGetTextDatum("late");
	Datum		future_text = CStringGetTextDatum("future");
	int			i,
				m = 0;

	for (i = 0; i < n; i++)
	{
		AttrAdvSettings s;

		if (!late[i] && !future[i])
			continue;
		prop_attr_settings_lookup(settings, in[i].advertiser_id, &s);
		id[m] = CStringGetTextDatum(in[i].event_id);
		time[m] = TimestampTzGetDatum(in[i].time_us);
		user[m] = CStringGetTextDatum(in[i].user_id);
		/* the stored type: an event without advertiser was handed over as PS */
		type[m] = CStringGetTextDatum(type_names[i]);
		advnull[m] = !has_adv[i];
		adv[m] = Int64GetDatum(in[i].advertiser_id);
		campnull[m] = !in[i].has_campaign;
		camp[m] = Int64GetDatum(in[i].campaign_id);
		mark[m] = TimestampTzGetDatum(future[i] ? future_limit : max_before - s.lateness_us);
		reason[m] = future[i] ? future_text : late_text;
		if (!advnull[m])
			prop_attr_totals_add(totals, in[i].advertiser_id, in[i].has_campaign, in[i].campaign_id,
					   future[i] ? TOTAL_FUTURE : TOTAL_LATE, 1);
		m++;
	}
	if (m == 0)
		return;
	values[0] = Int64GetDatum(batch);
	values[1] = prop_array_datum(id, NULL, m, TEXTOID);
	values[2] = prop_array_datum(time, NULL, m, TIMESTAMPTZOID);
	values[3] = prop_array_datum(user, NULL, m, TEXTOID);
	values[4] = prop_array_datum(type, NULL, m, TEXTOID);
	values[5] = prop_array_datum(adv, advnull, m, INT8OID);
	values[6] = prop_array_datum(camp, campnull, m, INT8OID);
	values[7] = prop_array_datum(mark, NULL, m, TIMESTAMPTZOID);
	values[8] = prop_array_datum(reason, NULL, m, TEXTOID);
	if (prop_attr_schema_has_future())
		prop_plan_run(&late_plan,
				 "INSERT INTO propensity.attribution_late"
				 "       (batch, event_id, event_time, user_id, event_type, advertiser_id, campaign_id, watermark, reason)"
				 " SELECT $1, * FROM unnest($2, $3, $4, $5, $6, $7, $8, $9)",
				 9, types, values, NULL, SPI_OK_INSERT);
	else
		prop_plan_run(&late_plan,
				 "INSERT INTO propensity.attribution_late"
				 "       (batch, event_id, event_time, user_id, event_type, advertiser_id, campaign_id, watermark)"
				 " SELECT $1, x.i, x.t, x.u, x.y, x.a, x.c, x.w"
				 "   FROM unnest($2, $3, $4, $5, $6, $7, $8, $9) AS x(i, t, u, y, a, c, w, r)",
				 9, types, values, NULL, SPI_OK_INSERT);
}

HTAB *
prop_attr_totals_create(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(TotalsKey);
	ctl.entrysize = sizeof(TotalsEntry);
	ctl.hcxt = CurrentMemoryContext;
	return hash_create("propensity attribution totals", 256, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Counts in-time impressions and clicks into the totals. */
void
prop_attr_count_events(const AttrInput *in, int n, const bool *late, const bool *future, HTAB *totals)
{
	int			i;

	for (i = 0; i < n; i++)
		if ((late == NULL || (!late[i] && !future[i])) && (in[i].type == FEAT_IM || in[i].type == FEAT_CL))
			prop_attr_totals_add(totals, in[i].advertiser_id, in[i].has_campaign, in[i].campaign_id,
					   in[i].type == FEAT_IM ? TOTAL_IM : TOTAL_CL, 1);
}
