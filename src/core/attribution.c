/*
 * attribution.c - SPEC section 5 for one key: candidate impressions, the
 * post-click pair with the latest click, else the latest post-view
 * impression, else unattributed.
 */
#include <string.h>

#include "attribution.h"

#define US_PER_DAY (INT64_C(86400) * 1000000)

const char *
attr_kind_name(AttrKind kind)
{
	switch (kind)
	{
		case ATTR_PC:
			return "PC";
		case ATTR_PV:
			return "PV";
		default:
			return "NONE";
	}
}

AttrSettings
attr_default_settings(void)
{
	AttrSettings s;

	s.pc_window_us = 30 * US_PER_DAY;
	s.pv_window_us = 30 * US_PER_DAY;
	s.rolling_us = 30 * US_PER_DAY;
	return s;
}

static int64_t
effective(int64_t window, int64_t rolling)
{
	return window < rolling ? window : rolling;
}

/* i is a candidate impression of conversion e */
static bool
is_candidate(const AttrEvent *i, const AttrEvent *e)
{
	return i->type == FEAT_IM && i->has_pixel && e->has_pixel &&
		i->pixel_id == e->pixel_id && i->time_us < e->time_us;
}

/* a before b under "latest first, then smallest event_id" */
static bool
later_or_smaller_id(int64_t ta, const char *ida, int64_t tb, const char *idb)
{
	if (ta != tb)
		return ta > tb;
	return strcmp(ida, idb) < 0;
}

AttrCredit
attr_credit(const AttrEvent *events, int n, int conversion, const AttrSettings *settings)
{
	const AttrEvent *e = &events[conversion];
	int64_t		pc_window = effective(settings->pc_window_us, settings->rolling_us);
	int64_t		pv_window = effective(settings->pv_window_us, settings->rolling_us);
	AttrCredit	credit = {ATTR_NONE, -1, false, 0};
	int			best_pc_imp = -1;
	int			best_pc_click = -1;
	int			best_pv = -1;
	int			i;

	for (i = 0; i < n; i++)
	{
		const AttrEvent *imp = &events[i];
		int			c;

		if (!is_candidate(imp, e))
			continue;

		/* post-view: within the window, latest impression, smallest id */
		if (e->time_us - imp->time_us <= pv_window &&
			(best_pv < 0 || later_or_smaller_id(imp->time_us, imp->event_id,
												events[best_pv].time_us,
												events[best_pv].event_id)))
			best_pv = i;

		/* post-click: a click on this impression between it and e */
		if (imp->auction_id == NULL || e->time_us - imp->time_us > pc_window)
			continue;
		for (c = 0; c < n; c++)
		{
			const AttrEvent *click = &events[c];
			bool		better;

			if (click->type != FEAT_CL || click->auction_id == NULL ||
				strcmp(click->auction_id, imp->auction_id) != 0 ||
				click->time_us < imp->time_us || click->time_us > e->time_us)
				continue;
			if (best_pc_imp < 0)
				better = true;
			else if (click->time_us != events[best_pc_click].time_us)
				better = click->time_us > events[best_pc_click].time_us;
			else
				better = later_or_smaller_id(imp->time_us, imp->event_id,
											 events[best_pc_imp].time_us,
											 events[best_pc_imp].event_id);
			if (better)
			{
				best_pc_imp = i;
				best_pc_click = c;
			}
		}
	}

	if (best_pc_imp >= 0)
	{
		credit.kind = ATTR_PC;
		credit.impression = best_pc_imp;
	}
	else if (best_pv >= 0)
	{
		credit.kind = ATTR_PV;
		credit.impression = best_pv;
	}
	if (credit.impression >= 0)
	{
		credit.has_campaign = events[credit.impression].has_campaign;
		credit.campaign_id = events[credit.impression].campaign_id;
	}
	return credit;
}
