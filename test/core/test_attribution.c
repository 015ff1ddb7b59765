/*
 * test_attribution.c - docs/computing.md section 5 rules of the core, with expected
 * credits written by hand: the 6 event-time orders of one impression, one
 * click and one conversion, each given in all 6 orders; the MediaMath
 * example; window edges, W, the tie rules, and order independence on
 * random keys.
 */
#include <stdlib.h>
#include <string.h>

#include "core/attribution.h"
#include "check.h"

#define DAY (INT64_C(86400) * 1000000)
#define T0 (INT64_C(9000) * DAY)

static AttrEvent
ev(const char *id, FeatEventType type, int64_t t, int64_t campaign, const char *auction, int64_t pixel)
{
	AttrEvent	e;

	memset(&e, 0, sizeof(e));
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

static int
find(const AttrEvent *events, int n, const char *id)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(events[i].event_id, id) == 0)
			return i;
	return -1;
}

/* credit of conversion `conv` as (kind, crediting impression id or NULL) */
static AttrCredit
credit_of(const AttrEvent *events, int n, const char *conv, const AttrSettings *s)
{
	return attr_credit(events, n, find(events, n, conv), s);
}

static const char *
imp_id(const AttrEvent *events, AttrCredit c)
{
	return c.impression < 0 ? "-" : events[c.impression].event_id;
}

static void
test_36_cases(void)
{
	/* event-time orders of (i, c, e) and the credit each must get */
	static const struct
	{
		int			rank_i, rank_c, rank_e;
		AttrKind	kind;
	}			orders[6] = {
		{0, 1, 2, ATTR_PC},		/* i < c < e: the click led to the conversion */
		{0, 2, 1, ATTR_PV},		/* i < e < c: click after the conversion */
		{1, 0, 2, ATTR_PV},		/* c < i < e: click before the impression */
		{2, 0, 1, ATTR_NONE},	/* c < e < i: impression after the conversion */
		{1, 2, 0, ATTR_NONE},	/* e < i < c */
		{2, 1, 0, ATTR_NONE},	/* e < c < i */
	};
	static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
	AttrSettings s = attr_default_settings();
	int			o;
	int			p;

	for (o = 0; o < 6; o++)
	{
		AttrEvent	base[3];

		base[0] = ev("i", FEAT_IM, T0 + orders[o].rank_i * 3600000000LL, 7, "a1", 42);
		base[1] = ev("c", FEAT_CL, T0 + orders[o].rank_c * 3600000000LL, 7, "a1", 0);
		base[2] = ev("e", FEAT_CN, T0 + orders[o].rank_e * 3600000000LL, 0, NULL, 42);
		for (p = 0; p < 6; p++)
		{
			AttrEvent	given[3];
			AttrCredit	c;
			int			k;

			for (k = 0; k < 3; k++)
				given[k] = base[perms[p][k]];
			c = credit_of(given, 3, "e", &s);
			CHECK(c.kind == orders[o].kind &&
				  (c.kind == ATTR_NONE ? !c.has_campaign && c.impression == -1
				   : c.has_campaign && c.campaign_id == 7 && strcmp(imp_id(given, c), "i") == 0),
				  "time order %d, given order %d: got %s", o, p, attr_kind_name(c.kind));
		}
	}
}

static void
test_mediamath(void)
{
	/* impression, conversion, then a late click that happened between them */
	AttrSettings s = attr_default_settings();
	AttrEvent	events[3] = {
		ev("i", FEAT_IM, T0, 5, "a9", 1),
		ev("e", FEAT_CN, T0 + 2 * DAY, 0, NULL, 1),
		ev("c", FEAT_CL, T0 + DAY, 5, "a9", 0),
	};

	CHECK(credit_of(events, 2, "e", &s).kind == ATTR_PV, "before the click arrives: PV");
	CHECK(credit_of(events, 3, "e", &s).kind == ATTR_PC, "after the click arrives: PC (so PC+1, PV-1)");
}

static void
test_windows(void)
{
	AttrSettings s = attr_default_settings();
	AttrEvent	events[3];

	/* post-view edge: exactly pv_window before is in, a microsecond more is out */
	events[0] = ev("i", FEAT_IM, T0, 3, NULL, 1);
	events[1] = ev("e", FEAT_CN, T0 + 30 * DAY, 0, NULL, 1);
	CHECK(credit_of(events, 2, "e", &s).kind == ATTR_PV, "PV at exactly the window");
	events[1].time_us += 1;
	CHECK(credit_of(events, 2, "e", &s).kind == ATTR_NONE, "NONE just past the window");

	/* post-click window shorter than post-view: falls back to PV */
	s.pc_window_us = 7 * DAY;
	events[0] = ev("i", FEAT_IM, T0, 3, "a", 1);
	events[1] = ev("c", FEAT_CL, T0 + DAY, 3, "a", 0);
	events[2] = ev("e", FEAT_CN, T0 + 7 * DAY, 0, NULL, 1);
	CHECK(credit_of(events, 3, "e", &s).kind == ATTR_PC, "PC at exactly the PC window");
	events[2].time_us += 1;
	CHECK(credit_of(events, 3, "e", &s).kind == ATTR_PV, "PV once past the PC window");

	/* a window longer than W acts as W */
	s = attr_default_settings();
	s.pv_window_us = 60 * DAY;
	events[0] = ev("i", FEAT_IM, T0, 3, NULL, 1);
	events[1] = ev("e", FEAT_CN, T0 + 40 * DAY, 0, NULL, 1);
	CHECK(credit_of(events, 2, "e", &s).kind == ATTR_NONE, "60-day PV window capped at W = 30 days");
	s.rolling_us = 60 * DAY;
	CHECK(credit_of(events, 2, "e", &s).kind == ATTR_PV, "with W = 60 days it is PV");

	/* click exactly at the impression and exactly at the conversion both count */
	s = attr_default_settings();
	events[0] = ev("i", FEAT_IM, T0, 3, "a", 1);
	events[1] = ev("c", FEAT_CL, T0, 3, "a", 0);
	events[2] = ev("e", FEAT_CN, T0 + DAY, 0, NULL, 1);
	CHECK(credit_of(events, 3, "e", &s).kind == ATTR_PC, "click at the impression time");
	events[1].time_us = T0 + DAY;
	CHECK(credit_of(events, 3, "e", &s).kind == ATTR_PC, "click at the conversion time");

	/* an impression at the conversion's time is not a candidate */
	events[0].time_us = T0 + DAY;
	CHECK(credit_of(events, 3, "e", &s).kind == ATTR_NONE, "impression at the conversion time");
}

static void
test_candidates(void)
{
	AttrSettings s = attr_default_settings();
	AttrEvent	events[3];

	/* another pixel, or none, makes no candidate */
	events[0] = ev("i", FEAT_IM, T0, 3, "a", 2);
	events[1] = ev("e", FEAT_CN, T0 + DAY, 0, NULL, 1);
	CHECK(credit_of(events, 2, "e", &s).kind == ATTR_NONE, "pixel mismatch");
	events[0].has_pixel = false;
	events[1].pixel_id = 0;
	CHECK(credit_of(events, 2, "e", &s).kind == ATTR_NONE, "no pixel");
	events[1].has_pixel = false;
	CHECK(credit_of(events, 2, "e", &s).kind == ATTR_NONE, "neither has a pixel");

	/* a click with another auction, or none, is no post-click */
	events[0] = ev("i", FEAT_IM, T0, 3, "a", 1);
	events[1] = ev("c", FEAT_CL, T0 + 1, 3, "b", 0);
	events[2] = ev("e", FEAT_CN, T0 + DAY, 0, NULL, 1);
	CHECK(credit_of(events, 3, "e", &s).kind == ATTR_PV, "click of another auction");
	events[1].auction_id = NULL;
	CHECK(credit_of(events, 3, "e", &s).kind == ATTR_PV, "click without auction");
	events[0].auction_id = NULL;
	CHECK(credit_of(events, 3, "e", &s).kind == ATTR_PV, "neither has an auction");

	/* an impression without a campaign is credited under a NULL campaign */
	events[0] = ev("i", FEAT_IM, T0, 0, NULL, 1);
	{
		AttrCredit	c = credit_of(events, 3, "e", &s);

		CHECK(c.kind == ATTR_PV && !c.has_campaign, "PV under a NULL campaign");
	}
}

static void
test_ties(void)
{
	AttrSettings s = attr_default_settings();
	AttrEvent	events[6];
	AttrCredit	c;

	/* PV: latest impression; at equal times the smallest event_id */
	events[0] = ev("i2", FEAT_IM, T0 + DAY, 2, NULL, 1);
	events[1] = ev("i1", FEAT_IM, T0 + DAY, 1, NULL, 1);
	events[2] = ev("i0", FEAT_IM, T0, 9, NULL, 1);
	events[3] = ev("e", FEAT_CN, T0 + 2 * DAY, 0, NULL, 1);
	c = credit_of(events, 4, "e", &s);
	CHECK(c.kind == ATTR_PV && strcmp(imp_id(events, c), "i1") == 0 && c.campaign_id == 1,
		  "PV tie: smallest id, got %s", imp_id(events, c));

	/* PC: the pair with the latest click wins, even for an older impression */
	events[0] = ev("old", FEAT_IM, T0, 1, "a1", 1);
	events[1] = ev("new", FEAT_IM, T0 + DAY, 2, "a2", 1);
	events[2] = ev("c1", FEAT_CL, T0 + 3 * DAY, 1, "a1", 0);
	events[3] = ev("c2", FEAT_CL, T0 + 2 * DAY, 2, "a2", 0);
	events[4] = ev("e", FEAT_CN, T0 + 4 * DAY, 0, NULL, 1);
	c = credit_of(events, 5, "e", &s);
	CHECK(c.kind == ATTR_PC && strcmp(imp_id(events, c), "old") == 0 && c.campaign_id == 1,
		  "PC: latest click, got %s", imp_id(events, c));

	/* equal click times: the latest impression */
	events[3].time_us = events[2].time_us;
	c = credit_of(events, 5, "e", &s);
	CHECK(c.kind == ATTR_PC && strcmp(imp_id(events, c), "new") == 0, "PC tie: latest impression, got %s",
		  imp_id(events, c));

	/* equal click and impression times: the smallest impression id */
	events[1].time_us = events[0].time_us;
	c = credit_of(events, 5, "e", &s);
	CHECK(c.kind == ATTR_PC && strcmp(imp_id(events, c), "new") == 0, "PC tie: smallest id, got %s",
		  imp_id(events, c));
	events[1].event_id = "zzz";
	c = credit_of(events, 5, "e", &s);
	CHECK(c.kind == ATTR_PC && strcmp(imp_id(events, c), "old") == 0, "PC tie: smallest id, got %s",
		  imp_id(events, c));
}

/* random keys: the credit never depends on the order the events are given in */
static void
test_order_independence(void)
{
	static char ids[12][16];
	static char auctions[4][4] = {"a0", "a1", "a2", "a3"};
	AttrSettings s = attr_default_settings();
	uint64_t	x = 12345;
	int			round;
	int			disagreements = 0;
	int			pc = 0;
	int			pv = 0;
	int			none = 0;

	for (round = 0; round < 2000; round++)
	{
		AttrEvent	events[12];
		AttrEvent	shuffled[12];
		int			n = 3 + (int) (x % 10);
		int			k;

		for (k = 0; k < n; k++)
		{
			FeatEventType type;
			int64_t		t;

			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			type = (FeatEventType) ((x >> 33) % 4);
			if (type == FEAT_PS)
				type = FEAT_IM;
			t = T0 + (int64_t) ((x >> 20) % 40) * DAY / 2;	/* coarse: many ties */
			snprintf(ids[k], sizeof(ids[k]), "e%02d", k);
			events[k] = ev(ids[k], type, t, 1 + (x >> 50) % 3,
						   type == FEAT_CN ? NULL : auctions[(x >> 40) % 4],
						   type == FEAT_CL ? 0 : 1 + (x >> 45) % 2);
		}
		memcpy(shuffled, events, sizeof(events));
		for (k = n - 1; k > 0; k--)
		{
			int			j;
			AttrEvent	tmp;

			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			j = (int) ((x >> 33) % (uint64_t) (k + 1));
			tmp = shuffled[k];
			shuffled[k] = shuffled[j];
			shuffled[j] = tmp;
		}
		for (k = 0; k < n; k++)
		{
			AttrCredit	a;
			AttrCredit	b;

			if (events[k].type != FEAT_CN)
				continue;
			a = credit_of(events, n, events[k].event_id, &s);
			b = credit_of(shuffled, n, events[k].event_id, &s);
			if (a.kind != b.kind || strcmp(imp_id(events, a), imp_id(shuffled, b)) != 0 ||
				a.has_campaign != b.has_campaign || a.campaign_id != b.campaign_id)
				disagreements++;
			pc += a.kind == ATTR_PC;
			pv += a.kind == ATTR_PV;
			none += a.kind == ATTR_NONE;
		}
	}
	CHECK(disagreements == 0, "%d credits depend on the given order", disagreements);
	CHECK(pc > 100 && pv > 100 && none > 100, "random keys exercise every kind: PC %d, PV %d, NONE %d",
		  pc, pv, none);
}

static uint64_t
lcg(uint64_t *x)
{
	*x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
	return *x >> 11;
}

/*
 * attr_credit_key() against attr_credit() on random keys built to hit the
 * sweep's corners: few pixels and auctions (auctions reused across
 * pixels), impressions, clicks and conversions at equal times, clicks
 * before their impression, events outside the windows, short and capped
 * windows, and every from_us.  Each conversion at or after from_us must get
 * exactly attr_credit()'s credit; earlier ones and other events must be
 * left as they were.
 */
static void
test_sweep_equals_pairs(void)
{
	static char ids[64][16];
	static char auctions[6][4] = {"a0", "a1", "a2", "a3", "a4", "a5"};
	AttrScratch *scratch = attr_scratch_create(&core_malloc_allocator, NULL);
	uint64_t	x = 777;
	int			round;
	int			wrong = 0;
	int			untouched_wrong = 0;
	int			kinds[3] = {0, 0, 0};

	for (round = 0; round < 20000; round++)
	{
		AttrEvent	events[64];
		AttrCredit	out[64];
		AttrSettings s;
		int			n = 1 + (int) (lcg(&x) % 64);
		int			step = 1 + (int) (lcg(&x) % 4);	/* quarter days: coarse, many ties */
		int			npix = 1 + (int) (lcg(&x) % 3);
		int			nauc = 1 + (int) (lcg(&x) % 6);
		int64_t		from;
		int			k;

		s.pc_window_us = (1 + (int64_t) (lcg(&x) % 12)) * DAY / 2;
		s.pv_window_us = (1 + (int64_t) (lcg(&x) % 12)) * DAY / 2;
		s.rolling_us = (1 + (int64_t) (lcg(&x) % 14)) * DAY / 2;
		for (k = 0; k < n; k++)
		{
			uint64_t	r = lcg(&x);
			FeatEventType type = (FeatEventType) (r % 4);
			int64_t		t = T0 + (int64_t) ((r >> 3) % 40) * step * DAY / 4;

			/* unique ids, whose order is not the index order */
			snprintf(ids[k], sizeof(ids[k]), "%c%02d", "gfe"[k % 3], k);
			events[k] = ev(ids[k], type, t, 1 + (r >> 30) % 5,
						   ((r >> 35) % 5 == 0) ? NULL : auctions[(r >> 38) % nauc],
						   ((r >> 42) % 6 == 0) ? 0 : 1 + (int64_t) ((r >> 45) % npix));
			if (type == FEAT_CN && (r >> 50) % 2)
				events[k].auction_id = NULL;
		}
		from = T0 + (int64_t) (lcg(&x) % 42) * step * DAY / 4 - DAY;
		for (k = 0; k < n; k++)
		{
			out[k].kind = (AttrKind) 99;
			out[k].impression = -7;
		}
		attr_credit_key(scratch, events, n, from, &s, out);
		for (k = 0; k < n; k++)
		{
			AttrCredit	want;

			if (events[k].type != FEAT_CN || events[k].time_us < from)
			{
				untouched_wrong += out[k].kind != (AttrKind) 99 || out[k].impression != -7;
				continue;
			}
			want = attr_credit(events, n, k, &s);
			if (want.kind != out[k].kind || want.impression != out[k].impression ||
				want.has_campaign != out[k].has_campaign || want.campaign_id != out[k].campaign_id)
			{
				if (wrong < 5)
					printf("  sweep: round %d conversion %s: %s %s, pairs say %s %s\n", round,
						   events[k].event_id, attr_kind_name(out[k].kind), imp_id(events, out[k]),
						   attr_kind_name(want.kind), imp_id(events, want));
				wrong++;
			}
			kinds[want.kind]++;
		}
	}
	CHECK(wrong == 0, "%d sweep credits differ from attr_credit()", wrong);
	CHECK(untouched_wrong == 0, "%d entries outside the conversions asked for were written", untouched_wrong);
	CHECK(kinds[ATTR_PC] > 2000 && kinds[ATTR_PV] > 2000 && kinds[ATTR_NONE] > 2000,
		  "random keys exercise every kind: PC %d, PV %d, NONE %d",
		  kinds[ATTR_PC], kinds[ATTR_PV], kinds[ATTR_NONE]);
	attr_scratch_destroy(scratch);
}

static void
count_checks(void *arg)
{
	(*(long *) arg)++;
}

/*
 * A hot key: 100,000 events of one user (alternating impressions,
 * conversions and clicks of one pixel, all within the window).  The pair
 * search would take conversions x impressions x clicks; the sweep's work,
 * counted through its interrupt checks (one per CORE_INTERRUPT_EVERY
 * units), must stay within a small multiple of the events, and it must
 * check for interrupts all along.
 */
static void
test_sweep_hot_key(void)
{
	enum
	{
		N = 100000
	};
	AttrEvent  *events = malloc(sizeof(AttrEvent) * N);
	AttrCredit *out = malloc(sizeof(AttrCredit) * N);
	char	   *ids = malloc((size_t) N * 16);
	char	   *aucs = malloc((size_t) N * 16);
	long		checks = 0;
	CoreInterrupt intr = {count_checks, &checks};
	AttrScratch *scratch = attr_scratch_create(&core_malloc_allocator, &intr);
	AttrSettings s = attr_default_settings();
	int			k;
	int			pc = 0;
	bool		spot_ok = true;

	for (k = 0; k < N; k++)
	{
		FeatEventType type = k % 3 == 0 ? FEAT_IM : k % 3 == 1 ? FEAT_CN : FEAT_CL;

		snprintf(ids + k * 16, 16, "h%07d", k);
		snprintf(aucs + k * 16, 16, "a%07d", k - (k % 3 == 2 ? 2 : 0));
		events[k] = ev(ids + k * 16, type, T0 + (int64_t) k * 10000000, 1,
					   type == FEAT_CN ? NULL : aucs + k * 16, type == FEAT_CL ? 0 : 5);
	}
	attr_credit_key(scratch, events, N, INT64_MIN, &s, out);
	for (k = 1; k < N; k += 3)
		pc += out[k].kind == ATTR_PC;
	/* conversion k (k = 3j+1) follows impression k-1; its click comes after it */
	CHECK(out[1].kind == ATTR_PV && out[1].impression == 0, "first hot conversion: PV of the impression before it");
	CHECK(pc == N / 3 - 1 + (N % 3 > 1), "every later hot conversion is PC (%d)", pc);
	/*
	 * conversion k = 3j + 1 (j >= 1): the latest click before it is k - 2,
	 * on the auction of impression k - 4
	 */
	for (k = 4; k < N && spot_ok; k += 3)
		spot_ok = out[k].kind == ATTR_PC && out[k].impression == k - 4;
	CHECK(spot_ok, "hot key: conversion %d is credited to impression %d, not %d", k - 3,
		  out[k - 3].impression, k - 7);
	CHECK(checks * CORE_INTERRUPT_EVERY < 40L * N && checks > 10,
		  "hot key: %ld interrupt checks, about %ld units of work for %d events", checks,
		  checks * CORE_INTERRUPT_EVERY, N);
	attr_scratch_destroy(scratch);
	free(events);
	free(out);
	free(ids);
	free(aucs);
}

void
test_attribution(void)
{
	test_36_cases();
	test_mediamath();
	test_windows();
	test_candidates();
	test_ties();
	test_order_independence();
	test_sweep_equals_pairs();
	test_sweep_hot_key();
}
