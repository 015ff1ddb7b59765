/*
 * test_attr_engine.c - the incremental attribution engine: deltas of the
 * MediaMath example step by step, the 36 cases with one event per batch
 * (final credits written by hand, changelog netting to them), lateness,
 * rebuild from stored credits, and a randomized property test (random keys,
 * arrival orders, batch boundaries, evictions) against attr_credit() over
 * the whole event set.
 */
#include <stdlib.h>
#include <string.h>

#include "core/attr_engine.h"
#include "check.h"

#define DAY (INT64_C(86400) * 1000000)
#define T0 (INT64_C(9000) * DAY)

static AttrAdvSettings fixed_settings;

static void
settings_fn(void *arg, int64_t adv, AttrAdvSettings *out)
{
	(void) arg;
	(void) adv;
	*out = fixed_settings;
}

static void
defaults(int64_t lateness_days)
{
	fixed_settings.windows = attr_default_settings();
	fixed_settings.lateness_us = lateness_days * DAY;
}

static AttrInput
in(const char *user, const char *id, FeatEventType type, int64_t t, int64_t campaign,
   const char *auction, int64_t pixel)
{
	AttrInput	e;

	memset(&e, 0, sizeof(e));
	e.user_id = user;
	e.user_len = strlen(user);
	e.advertiser_id = 1;
	e.event_id = id;
	e.type = type;
	e.time_us = t;
	e.has_campaign = campaign != 0;
	e.campaign_id = campaign;
	e.auction_id = auction;
	e.has_pixel = pixel != 0;
	e.pixel_id = pixel;
	return e;
}

static bool
delta_is(const AttrDelta *d, int sign, AttrKind kind, int64_t campaign)
{
	return d->sign == sign && d->credit.kind == kind &&
		(kind == ATTR_NONE ? !d->credit.has_campaign :
		 d->credit.has_campaign && d->credit.campaign_id == campaign);
}

static void
test_mediamath_deltas(void)
{
	AttrEngine *e = ae_create(&core_malloc_allocator);
	AttrInput	i = in("u", "i", FEAT_IM, T0, 101, "a1", 7);
	AttrInput	c = in("u", "c", FEAT_CL, T0 + DAY, 101, "a1", 0);
	AttrInput	cn = in("u", "e", FEAT_CN, T0 + 2 * DAY, 0, NULL, 7);
	const AttrBatchResult *r;

	defaults(30);
	r = ae_apply(e, &i, 1, true, settings_fn, NULL);
	CHECK(r->ndeltas == 0, "an impression alone credits nothing (%zu deltas)", r->ndeltas);
	r = ae_apply(e, &cn, 1, true, settings_fn, NULL);
	CHECK(r->ndeltas == 1 && delta_is(&r->deltas[0], +1, ATTR_PV, 101) &&
		  strcmp(r->deltas[0].conversion_id, "e") == 0 &&
		  strcmp(r->deltas[0].credit.impression_id, "i") == 0,
		  "conversion after the impression: PV+1 for campaign 101");
	r = ae_apply(e, &c, 1, true, settings_fn, NULL);
	CHECK(r->ndeltas == 2 && delta_is(&r->deltas[0], -1, ATTR_PV, 101) &&
		  delta_is(&r->deltas[1], +1, ATTR_PC, 101),
		  "the late click: PV-1 then PC+1 (%zu deltas)", r->ndeltas);
	/* a click of another auction changes nothing */
	c = in("u", "c2", FEAT_CL, T0 + DAY, 101, "other", 0);
	r = ae_apply(e, &c, 1, true, settings_fn, NULL);
	CHECK(r->ndeltas == 0 && r->naffected == 1, "an unrelated click re-evaluates but emits nothing");
	ae_destroy(e);
}

/* Net changelog per conversion: the single credit with net +1, others 0. */
typedef struct Net
{
	char		conv[16];
	AttrKind	kind;
	int64_t		campaign;
	char		imp[16];
	int			net;
} Net;

static void
net_add(Net *nets, int *nnets, const AttrDelta *d)
{
	int			i;
	int64_t		camp = d->credit.has_campaign ? d->credit.campaign_id : 0;
	const char *imp = d->credit.impression_id ? d->credit.impression_id : "";

	for (i = 0; i < *nnets; i++)
		if (strcmp(nets[i].conv, d->conversion_id) == 0 && nets[i].kind == d->credit.kind &&
			nets[i].campaign == camp && strcmp(nets[i].imp, imp) == 0)
		{
			nets[i].net += d->sign;
			return;
		}
	snprintf(nets[*nnets].conv, sizeof(nets[0].conv), "%s", d->conversion_id);
	nets[*nnets].kind = d->credit.kind;
	nets[*nnets].campaign = camp;
	snprintf(nets[*nnets].imp, sizeof(nets[0].imp), "%s", imp);
	nets[*nnets].net = d->sign;
	(*nnets)++;
}

static void
test_36_cases(void)
{
	/* event times for the 6 orders of (i, c, e): position 0, 1, 2 in days */
	static const struct
	{
		int			ti,
					tc,
					te;
		AttrKind	expect;		/* written by hand from docs/computing.md section 5 */
	}			orders[6] = {
		{0, 1, 2, ATTR_PC},		/* i c e: the click is between: post-click */
		{0, 2, 1, ATTR_PV},		/* i e c: click after the conversion: post-view */
		{1, 0, 2, ATTR_PV},		/* c i e: click before the impression: post-view */
		{2, 0, 1, ATTR_NONE},	/* c e i: impression after the conversion */
		{1, 2, 0, ATTR_NONE},	/* e i c */
		{2, 1, 0, ATTR_NONE},	/* e c i */
	};
	static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
	int			o,
				p;

	defaults(30);
	for (o = 0; o < 6; o++)
		for (p = 0; p < 6; p++)
		{
			AttrEngine *e = ae_create(&core_malloc_allocator);
			AttrInput	evs[3];
			Net			nets[8];
			int			nnets = 0,
						k,
						positive = 0;
			AttrStored	fin;

			evs[0] = in("u", "i", FEAT_IM, T0 + orders[o].ti * DAY, 101, "a1", 7);
			evs[1] = in("u", "c", FEAT_CL, T0 + orders[o].tc * DAY, 101, "a1", 0);
			evs[2] = in("u", "e", FEAT_CN, T0 + orders[o].te * DAY, 0, NULL, 7);
			for (k = 0; k < 3; k++)
			{
				const AttrBatchResult *r = ae_apply(e, &evs[perms[p][k]], 1, true, settings_fn, NULL);
				size_t		d;

				CHECK(!r->late[0], "nothing is late within 30 days");
				for (d = 0; d < r->ndeltas; d++)
					net_add(nets, &nnets, &r->deltas[d]);
			}
			CHECK(ae_lookup_credit(e, "u", 1, 1, "e", &fin) && fin.kind == orders[o].expect,
				  "order %d arrival %d: final %s, expected %s", o, p, attr_kind_name(fin.kind),
				  attr_kind_name(orders[o].expect));
			for (k = 0; k < nnets; k++)
			{
				CHECK(nets[k].net == 0 || nets[k].net == 1, "net delta is 0 or 1");
				if (nets[k].net == 1)
				{
					positive++;
					CHECK(nets[k].kind == orders[o].expect, "the changelog nets to the final credit");
				}
			}
			CHECK(positive == 1, "order %d arrival %d: one credit nets +1 (%d)", o, p, positive);
			ae_destroy(e);
		}
}

static void
test_lateness(void)
{
	AttrEngine *e = ae_create(&core_malloc_allocator);
	AttrInput	a[3];
	const AttrBatchResult *r;
	AttrStored	fin;

	defaults(2);
	a[0] = in("u", "i", FEAT_IM, T0, 101, "a1", 7);
	a[1] = in("u", "e", FEAT_CN, T0 + 5 * DAY, 0, NULL, 7);
	r = ae_apply(e, a, 2, true, settings_fn, NULL);
	CHECK(!r->late[0] && !r->late[1], "one batch is judged against the watermark before it");
	CHECK(r->ndeltas == 1 && delta_is(&r->deltas[0], +1, ATTR_PV, 101), "PV+1");
	/* watermark is now T0+5d - 2d = T0+3d: a click at T0+1d is late */
	a[2] = in("u", "c", FEAT_CL, T0 + DAY, 101, "a1", 0);
	r = ae_apply(e, &a[2], 1, true, settings_fn, NULL);
	CHECK(r->late[0] && r->ndeltas == 0, "a click older than the watermark is late and changes nothing");
	CHECK(ae_lookup_credit(e, "u", 1, 1, "e", &fin) && fin.kind == ATTR_PV, "still PV");
	/* exactly at the watermark is in time */
	a[2] = in("u", "c3", FEAT_CL, T0 + 3 * DAY, 101, "a1", 0);
	r = ae_apply(e, &a[2], 1, true, settings_fn, NULL);
	CHECK(!r->late[0] && r->ndeltas == 2 && delta_is(&r->deltas[1], +1, ATTR_PC, 101),
		  "a click at the watermark is in time: PV-1, PC+1");
	/* without the watermark (backfill) nothing is late */
	a[2] = in("u", "c4", FEAT_CL, T0, 101, "a1", 0);
	r = ae_apply(e, &a[2], 1, false, settings_fn, NULL);
	CHECK(!r->late[0], "backfill has no watermark");
	ae_destroy(e);
}

/*
 * An event past the future limit (a clock in year 2999) is future: it
 * changes nothing and does not move the latest time, so the events after
 * it are judged as before it came (once, every later event was late).
 */
static void
test_future(void)
{
	AttrEngine *e = ae_create(&core_malloc_allocator);
	AttrInput	a[3];
	const AttrBatchResult *r;
	int64_t		max_time;
	AttrStored	fin;

	defaults(2);
	ae_set_future_limit(e, T0 + 10 * DAY);
	a[0] = in("u", "i", FEAT_IM, T0, 101, "a1", 7);
	a[1] = in("u", "far", FEAT_IM, T0 + 360000 * DAY, 102, "a2", 7);
	r = ae_apply(e, a, 2, true, settings_fn, NULL);
	CHECK(!r->future[0] && r->future[1] && !r->late[1], "the far event is future, not late");
	CHECK(ae_max_time(e, &max_time) && max_time == T0, "and does not move the latest time");
	a[2] = in("u", "e", FEAT_CN, T0 + DAY, 0, NULL, 7);
	r = ae_apply(e, &a[2], 1, true, settings_fn, NULL);
	CHECK(!r->late[0] && !r->future[0] && r->ndeltas == 1 && delta_is(&r->deltas[0], +1, ATTR_PV, 101),
		  "a conversion after it is in time and credited to the in-time impression: PV 101");
	CHECK(ae_event_count(e) == 2, "the future event was not kept: %zu events", ae_event_count(e));
	/* exactly at the limit is not future */
	a[2] = in("u", "edge", FEAT_CL, T0 + 10 * DAY, 101, "a1", 0);
	r = ae_apply(e, &a[2], 1, true, settings_fn, NULL);
	CHECK(!r->future[0], "an event at the limit is not future");
	CHECK(ae_lookup_credit(e, "u", 1, 1, "e", &fin) && fin.kind == ATTR_PV, "the conversion stays PV");
	ae_destroy(e);
}

static void
test_rebuild(void)
{
	AttrEngine *e = ae_create(&core_malloc_allocator);
	AttrInput	i = in("u", "i", FEAT_IM, T0, 101, "a1", 7);
	AttrInput	cn = in("u", "e", FEAT_CN, T0 + 2 * DAY, 0, NULL, 7);
	AttrInput	c = in("u", "c", FEAT_CL, T0 + DAY, 101, "a1", 0);
	AttrInput	i2 = in("u", "i2", FEAT_IM, T0 - DAY / 2, 102, "a2", 7);
	AttrStored	pv = {ATTR_PV, true, 101, "i"};
	const AttrBatchResult *r;

	defaults(30);
	ae_load(e, &i, NULL);
	ae_load(e, &cn, &pv);
	/* an impression older than the credited one: re-evaluated, unchanged, silent */
	r = ae_apply(e, &i2, 1, true, settings_fn, NULL);
	CHECK(r->naffected == 1 && r->ndeltas == 0, "a loaded credit that still holds emits nothing");
	r = ae_apply(e, &c, 1, true, settings_fn, NULL);
	CHECK(r->ndeltas == 2 && delta_is(&r->deltas[0], -1, ATTR_PV, 101) &&
		  strcmp(r->deltas[0].credit.impression_id, "i") == 0 &&
		  delta_is(&r->deltas[1], +1, ATTR_PC, 101), "the loaded credit is what gets retracted");
	ae_destroy(e);
}

/* ---- randomized property test ---- */

static uint64_t rng_state;

static uint32_t
rnd(uint32_t n)
{
	rng_state = rng_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
	return (uint32_t) ((rng_state >> 33) % n);
}

#define PROP_EVENTS 3000
#define PROP_USERS 60

typedef struct PropEvent
{
	char		user[16];
	char		id[16];
	char		auction[16];
	AttrInput	in;
	AttrStored	final;			/* engine's final credit */
	bool		final_known;
	int			net_all;		/* deltas: net of all */
} PropEvent;

static void
test_property(uint64_t seed, bool evict)
{
	static PropEvent pe[PROP_EVENTS];
	static int	order[PROP_EVENTS];
	static AttrInput batch[PROP_EVENTS];
	AttrEngine *e = ae_create(&core_malloc_allocator);
	int			n = PROP_EVENTS,
				i,
				mismatches = 0,
				badnet = 0,
				nconv = 0,
				kinds[3] = {0, 0, 0};
	size_t		dropped = 0;

	memset(pe, 0, sizeof(pe));
	rng_state = seed;
	/* windows: 3 days post-click, 5 post-view, W 4; lateness covers the stream */
	fixed_settings.windows.pc_window_us = 3 * DAY;
	fixed_settings.windows.pv_window_us = 5 * DAY;
	fixed_settings.windows.rolling_us = 4 * DAY;
	fixed_settings.lateness_us = 40 * DAY;
	for (i = 0; i < n; i++)
	{
		PropEvent  *p = &pe[i];
		uint32_t	r = rnd(10);
		FeatEventType type = r < 5 ? FEAT_IM : r < 8 ? FEAT_CL : FEAT_CN;

		int			user = (int) rnd(PROP_USERS);

		snprintf(p->user, sizeof(p->user), "u%d", user);
		snprintf(p->id, sizeof(p->id), "x%d", i);
		snprintf(p->auction, sizeof(p->auction), "a%d-%d", user, (int) rnd(8));
		p->in = in(p->user, p->id, type, T0 + (int64_t) rnd(20 * 24) * (DAY / 24),
				   type == FEAT_CN ? 0 : 1 + rnd(5), type == FEAT_CN ? NULL : p->auction,
				   type == FEAT_CL ? 0 : 1 + rnd(2));
		p->in.advertiser_id = 1 + rnd(2);
		order[i] = i;
	}
	for (i = n - 1; i > 0; i--)
	{
		int			j = rnd(i + 1),
					t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (i = 0; i < n;)
	{
		int			len = 1 + rnd(200),
					j;
		const AttrBatchResult *r;
		size_t		d;

		if (len > n - i)
			len = n - i;
		for (j = 0; j < len; j++)
			batch[j] = pe[order[i + j]].in;
		r = ae_apply(e, batch, len, true, settings_fn, NULL);
		for (j = 0; j < len; j++)
			if (r->late[j])
				mismatches++;
		for (d = 0; d < r->ndeltas; d++)
		{
			int			id = atoi(r->deltas[d].conversion_id + 1);
			PropEvent  *p = &pe[id];

			p->net_all += r->deltas[d].sign;
			if (r->deltas[d].sign > 0)
			{
				p->final = r->deltas[d].credit;
				p->final.impression_id = NULL;	/* arena string, gone next call */
				p->final_known = true;
			}
		}
		i += len;
		if (evict)
			dropped += ae_evict(e, settings_fn, NULL);
	}
	/* the independent evaluation: attr_credit over each key's full event set */
	for (i = 0; i < n; i++)
	{
		AttrEvent	key[PROP_EVENTS];
		int			m = 0,
					self = -1,
					j;
		AttrCredit	c;

		if (pe[i].in.type != FEAT_CN)
			continue;
		nconv++;
		for (j = 0; j < n; j++)
		{
			if (strcmp(pe[j].user, pe[i].user) != 0 || pe[j].in.advertiser_id != pe[i].in.advertiser_id)
				continue;
			if (j == i)
				self = m;
			memset(&key[m], 0, sizeof(AttrEvent));
			key[m].event_id = pe[j].id;
			key[m].type = pe[j].in.type;
			key[m].time_us = pe[j].in.time_us;
			key[m].has_campaign = pe[j].in.has_campaign;
			key[m].campaign_id = pe[j].in.campaign_id;
			key[m].auction_id = pe[j].in.auction_id;
			key[m].has_pixel = pe[j].in.has_pixel;
			key[m].pixel_id = pe[j].in.pixel_id;
			m++;
		}
		c = attr_credit(key, m, self, &fixed_settings.windows);
		kinds[c.kind]++;
		if (!pe[i].final_known || pe[i].final.kind != c.kind ||
			pe[i].final.has_campaign != c.has_campaign ||
			(c.has_campaign && pe[i].final.campaign_id != c.campaign_id))
			mismatches++;
		if (pe[i].net_all != 1)
			badnet++;
	}
	CHECK(mismatches == 0, "seed %llu evict %d: %d of %d conversions differ from the batch evaluation",
		  (unsigned long long) seed, evict, mismatches, nconv);
	CHECK(badnet == 0, "every conversion's changelog nets to one credit (%d do not)", badnet);
	CHECK(kinds[ATTR_NONE] > 10 && kinds[ATTR_PC] > 10 && kinds[ATTR_PV] > 10,
		  "the stream exercises every kind (%d/%d/%d)", kinds[0], kinds[1], kinds[2]);
	if (!evict)
		CHECK(ae_event_count(e) == (size_t) n, "every event is held without eviction");
	ae_destroy(e);
}

/*
 * Eviction with a short lateness: the stream arrives nearly in time order,
 * events are dropped as the watermark passes, and the credits still equal
 * the batch evaluation over the in-time events.
 */
static void
test_eviction(void)
{
	AttrEngine *e = ae_create(&core_malloc_allocator);
	static AttrInput evs[2000];
	static char ids[2000][16];
	int			i,
				pv = 0;
	size_t		dropped = 0;

	fixed_settings.windows = attr_default_settings();
	fixed_settings.windows.rolling_us = 2 * DAY;
	fixed_settings.lateness_us = DAY;
	for (i = 0; i < 2000; i++)
	{
		/* per user 'v': impression at hour h, conversion at hour h+1 */
		snprintf(ids[i], sizeof(ids[i]), "v%d", i);
		if (i % 2 == 0)
			evs[i] = in("v", ids[i], FEAT_IM, T0 + (int64_t) i * (DAY / 24), 100 + i, NULL, 9);
		else
			evs[i] = in("v", ids[i], FEAT_CN, T0 + (int64_t) i * (DAY / 24), 0, NULL, 9);
	}
	for (i = 0; i < 2000; i += 10)
	{
		const AttrBatchResult *r = ae_apply(e, &evs[i], 10, true, settings_fn, NULL);
		size_t		d;

		for (d = 0; d < r->ndeltas; d++)
			if (r->deltas[d].sign > 0 && r->deltas[d].credit.kind == ATTR_PV &&
				r->deltas[d].credit.campaign_id == 100 + atoi(r->deltas[d].conversion_id + 1) - 1)
				pv++;
		dropped += ae_evict(e, settings_fn, NULL);
	}
	CHECK(pv == 1000, "each conversion credits the impression an hour before (%d)", pv);
	/* held: events within lateness + W = 3 days = 72 hours of the latest */
	CHECK(ae_event_count(e) <= 73 + 10 && dropped >= 2000 - 83,
		  "eviction bounds the state (%zu held, %zu dropped)", ae_event_count(e), dropped);
	ae_destroy(e);
}

void
test_attr_engine(void)
{
	test_mediamath_deltas();
	test_36_cases();
	test_lateness();
	test_future();
	test_rebuild();
	test_property(1, false);
	test_property(2, true);
	test_property(3, true);
	test_eviction();
}
