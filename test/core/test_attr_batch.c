/*
 * test_attr_batch.c - batch attribution against the streaming engine and
 * against attr_credit() over each key's full event set, on random streams:
 * every conversion's kind, campaign and impression must agree, and the
 * impression and click totals must equal a direct count.  Users with long
 * ids, keys of many events, ties in time, and events without pixel or
 * auction are all in the streams.
 */
#include <stdlib.h>
#include <string.h>

#include "core/attr_batch.h"
#include "check.h"

#define DAY (INT64_C(86400) * 1000000)
#define T0 (INT64_C(9000) * DAY)
#define N_EVENTS 6000
#define ID_LEN 48

static uint64_t rng;

static uint32_t
rnd(uint32_t n)
{
	rng = rng * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
	return (uint32_t) ((rng >> 33) % n);
}

static AttrAdvSettings settings_by_adv[4];

static void
settings_fn(void *arg, int64_t adv, AttrAdvSettings *out)
{
	(void) arg;
	*out = settings_by_adv[adv];
}

typedef struct Ev
{
	char		user[ID_LEN];
	char		id[16];
	char		auction[16];
	AttrInput	in;
	/* engine's final credit */
	bool		engine_known;
	AttrStored	engine;
	char		engine_imp[16];
	/* batch credit */
	int			batch_seen;
	AttrStored	batch;
	char		batch_imp[16];
	uint32_t	batch_user_len;
	int64_t		batch_adv;
	int64_t		batch_time;
} Ev;

static Ev evs[N_EVENTS];

static void
emit(void *arg, const AttrBatchCredit *c)
{
	int			i = atoi(c->conversion_id + 1);
	Ev		   *e = &evs[i];

	(void) arg;
	e->batch_seen++;
	e->batch = c->credit;
	e->batch.impression_id = NULL;
	e->batch_imp[0] = '\0';
	if (c->credit.impression_id != NULL)
		snprintf(e->batch_imp, sizeof(e->batch_imp), "%s", c->credit.impression_id);
	e->batch_user_len = c->user_len;
	e->batch_adv = c->advertiser_id;
	e->batch_time = c->conversion_time_us;
	/* the user id handed back is the conversion's */
	if (c->user_len != strlen(e->user) || memcmp(c->user_id, e->user, c->user_len) != 0)
		e->batch_seen += 100;
}

static bool
same_credit(const AttrStored *a, const char *aimp, const AttrStored *b, const char *bimp)
{
	return a->kind == b->kind && a->has_campaign == b->has_campaign &&
		(!a->has_campaign || a->campaign_id == b->campaign_id) && strcmp(aimp, bimp) == 0;
}

/*
 * The batch's credits against the engine's (in evs) and attr_credit over
 * each key's full event set, and its totals against a direct count.
 */
static void
check_batch(AttrBatch *ab, uint64_t seed, int n, int nusers, bool all_kinds, int filtered)
{
	static AttrEvent key[N_EVENTS];
	int			i,
				nconv = 0,
				vs_engine = 0,
				vs_direct = 0,
				bad_emit = 0,
				kinds[3] = {0, 0, 0},
				bad_totals = 0,
				ntotals = 0;
	size_t		pos = 0;
	AttrBatchTotal t;

	ab_evaluate(ab, settings_fn, NULL, emit, NULL);
	for (i = 0; i < n; i++)
	{
		Ev		   *e = &evs[i];
		int			m = 0,
					self = -1,
					j;
		AttrCredit	c;
		AttrStored	direct;
		const char *direct_imp;

		if (e->in.type != FEAT_CN)
		{
			bad_emit += e->batch_seen != 0;
			continue;
		}
		nconv++;
		if (e->batch_seen != 1 || e->batch_adv != e->in.advertiser_id ||
			e->batch_time != e->in.time_us)
			bad_emit++;
		for (j = 0; j < n; j++)
		{
			if (strcmp(evs[j].user, e->user) != 0 || evs[j].in.advertiser_id != e->in.advertiser_id ||
				evs[j].in.type == FEAT_PS)
				continue;
			if (j == i)
				self = m;
			memset(&key[m], 0, sizeof(AttrEvent));
			key[m].event_id = evs[j].id;
			key[m].type = evs[j].in.type;
			key[m].time_us = evs[j].in.time_us;
			key[m].has_campaign = evs[j].in.has_campaign;
			key[m].campaign_id = evs[j].in.campaign_id;
			key[m].auction_id = evs[j].in.auction_id;
			key[m].has_pixel = evs[j].in.has_pixel;
			key[m].pixel_id = evs[j].in.pixel_id;
			m++;
		}
		c = attr_credit(key, m, self, &settings_by_adv[e->in.advertiser_id].windows);
		kinds[c.kind]++;
		direct.kind = c.kind;
		direct.has_campaign = c.has_campaign;
		direct.campaign_id = c.campaign_id;
		direct_imp = c.impression >= 0 ? key[c.impression].event_id : "";
		if (!e->engine_known || !same_credit(&e->batch, e->batch_imp, &e->engine, e->engine_imp))
			vs_engine++;
		if (!same_credit(&e->batch, e->batch_imp, &direct, direct_imp))
			vs_direct++;
	}

	/* totals: impressions and clicks per (advertiser, campaign), counted directly */
	while (ab_next_total(ab, &pos, &t))
	{
		int64_t		im = 0,
					cl = 0;

		ntotals++;
		for (i = 0; i < n; i++)
		{
			const AttrInput *e = &evs[i].in;

			if (e->advertiser_id != t.advertiser_id || e->has_campaign != t.has_campaign ||
				(e->has_campaign && e->campaign_id != t.campaign_id))
				continue;
			im += e->type == FEAT_IM;
			cl += e->type == FEAT_CL;
		}
		if (im != t.impressions || cl != t.clicks || im + cl == 0)
			bad_totals++;
	}

	CHECK(bad_emit == 0, "seed %llu%s: each conversion is emitted once, with its key and time (%d wrong)",
		  (unsigned long long) seed, filtered ? " filtered" : "", bad_emit);
	CHECK(vs_engine == 0, "seed %llu%s: batch credits equal the streaming engine's (%d of %d differ)",
		  (unsigned long long) seed, filtered ? " filtered" : "", vs_engine, nconv);
	CHECK(vs_direct == 0, "seed %llu%s: batch credits equal attr_credit over the key (%d of %d differ)",
		  (unsigned long long) seed, filtered ? " filtered" : "", vs_direct, nconv);
	if (all_kinds)
		CHECK(kinds[ATTR_NONE] > 20 && kinds[ATTR_PC] > 20 && kinds[ATTR_PV] > 20,
			  "the stream exercises every kind (%d/%d/%d)", kinds[0], kinds[1], kinds[2]);
	/* 3 advertisers x (4 campaigns + none) */
	CHECK(bad_totals == 0 && ntotals == 15, "totals equal a direct count (%d wrong of %d)",
		  bad_totals, ntotals);
	if (!filtered)
		CHECK(ab_user_count(ab) <= (size_t) nusers && ab_user_count(ab) > (size_t) nusers / 2,
			  "one entry per user (%zu)", ab_user_count(ab));
	else
	{
		/* the users added are the users with a conversion */
		int			converting = 0;

		for (i = 0; i < n; i++)
		{
			int			j;
			bool		first = evs[i].in.type == FEAT_CN;

			for (j = 0; j < i && first; j++)
				first = !(evs[j].in.type == FEAT_CN && strcmp(evs[j].user, evs[i].user) == 0);
			converting += first;
		}
		CHECK(ab_user_count(ab) == (size_t) converting,
			  "filtered: one entry per user with a conversion (%zu, %d)", ab_user_count(ab), converting);
	}
}

static void
test_random(uint64_t seed, int nusers, bool all_kinds)
{
	static int	order[N_EVENTS];
	static AttrInput batch[N_EVENTS];
	AttrEngine *engine = ae_create(&core_malloc_allocator);
	int			n = N_EVENTS,
				i,
				filtered;

	memset(evs, 0, sizeof(evs));
	rng = seed;
	for (i = 1; i <= 3; i++)
	{
		settings_by_adv[i].windows.pc_window_us = (int64_t) (1 + i) * DAY;
		settings_by_adv[i].windows.pv_window_us = (int64_t) (2 + i) * DAY;
		settings_by_adv[i].windows.rolling_us = 4 * DAY;
		settings_by_adv[i].lateness_us = 60 * DAY;
	}
	for (i = 0; i < n; i++)
	{
		Ev		   *e = &evs[i];
		uint32_t	r = rnd(20);
		FeatEventType type = r < 9 ? FEAT_IM : r < 14 ? FEAT_CL : r < 18 ? FEAT_CN : FEAT_PS;
		int			user = (int) rnd(nusers);

		/* every third user has an id too long to be held inline */
		if (user % 3 == 0)
			snprintf(e->user, sizeof(e->user), "user-with-a-long-identifier-%d", user);
		else
			snprintf(e->user, sizeof(e->user), "u%d", user);
		snprintf(e->id, sizeof(e->id), "x%d", i);
		snprintf(e->auction, sizeof(e->auction), "a%d", (int) rnd(6));
		memset(&e->in, 0, sizeof(e->in));
		e->in.user_id = e->user;
		e->in.user_len = strlen(e->user);
		e->in.advertiser_id = 1 + rnd(3);
		e->in.event_id = e->id;
		e->in.type = type;
		/* hours over 12 days: ties in time are common */
		e->in.time_us = T0 + (int64_t) rnd(12 * 24) * (DAY / 24);
		e->in.has_campaign = type != FEAT_CN && rnd(10) > 0;
		e->in.campaign_id = e->in.has_campaign ? 1 + rnd(4) : 0;
		e->in.auction_id = type == FEAT_CN || rnd(10) == 0 ? NULL : e->auction;
		e->in.has_pixel = type != FEAT_CL && rnd(10) > 0;
		e->in.pixel_id = e->in.has_pixel ? 1 + rnd(2) : 0;
		order[i] = i;
	}
	for (i = n - 1; i > 0; i--)
	{
		int			j = rnd(i + 1),
					tmp = order[i];

		order[i] = order[j];
		order[j] = tmp;
	}

	/* streaming: random batches in the shuffled order */
	for (i = 0; i < n;)
	{
		int			len = 1 + rnd(300),
					j;
		const AttrBatchResult *r;
		size_t		d;

		if (len > n - i)
			len = n - i;
		for (j = 0; j < len; j++)
			batch[j] = evs[order[i + j]].in;
		r = ae_apply(engine, batch, len, true, settings_fn, NULL);
		for (d = 0; d < r->ndeltas; d++)
		{
			Ev		   *e = &evs[atoi(r->deltas[d].conversion_id + 1)];

			if (r->deltas[d].sign < 0)
				continue;
			e->engine_known = true;
			e->engine = r->deltas[d].credit;
			e->engine.impression_id = NULL;
			e->engine_imp[0] = '\0';
			if (r->deltas[d].credit.impression_id != NULL)
				snprintf(e->engine_imp, sizeof(e->engine_imp), "%s", r->deltas[d].credit.impression_id);
		}
		i += len;
	}

	/* batch: the same events in another order, every one added, then filtered */
	for (filtered = 0; filtered <= 1; filtered++)
	{
		AttrBatch  *ab = ab_create(&core_malloc_allocator);

		for (i = 0; i < n; i++)
		{
			evs[i].batch_seen = 0;
			evs[i].batch_imp[0] = '\0';
		}
		if (!filtered)
		{
			for (i = n - 1; i >= 0; i--)
			{
				const AttrInput *e = &evs[order[i]].in;

				ab_count(ab, e);
				ab_add(ab, e, ab_hash(e->user_id, e->user_len), strlen(e->event_id),
					   e->auction_id == NULL ? 0 : strlen(e->auction_id));
			}
		}
		else
		{
			int			left_out = 0,
						wrongly = 0;

			/* conversions first; then the impressions and clicks that can matter */
			for (i = n - 1; i >= 0; i--)
			{
				const AttrInput *e = &evs[order[i]].in;

				if (e->type == FEAT_CN)
					ab_add(ab, e, ab_hash(e->user_id, e->user_len), strlen(e->event_id), 0);
			}
			for (i = n - 1; i >= 0; i--)
			{
				const AttrInput *e = &evs[order[i]].in;
				uint32_t	h = ab_hash(e->user_id, e->user_len);
				bool		can_matter = false;
				int			j;

				if (e->type != FEAT_IM && e->type != FEAT_CL)
					continue;
				ab_count(ab, e);
				for (j = 0; j < n && !can_matter; j++)
					can_matter = evs[j].in.type == FEAT_CN &&
						evs[j].in.advertiser_id == e->advertiser_id &&
						evs[j].in.time_us >= e->time_us && strcmp(evs[j].user, e->user_id) == 0;
				if (!ab_needed(ab, ab_key(h, e->advertiser_id), e->time_us))
				{
					left_out++;
					wrongly += can_matter;
					continue;
				}
				ab_add(ab, e, h, strlen(e->event_id),
					   e->auction_id == NULL ? 0 : strlen(e->auction_id));
			}
			CHECK(wrongly == 0 && left_out > n / 20,
				  "seed %llu: the filter leaves out %d impressions and clicks, none that can matter (%d)",
				  (unsigned long long) seed, left_out, wrongly);
		}
		check_batch(ab, seed, n, nusers, all_kinds, filtered);
		ab_destroy(ab);
	}
	ae_destroy(engine);
}

void
test_attr_batch(void)
{
	/* few users: long keys of many events (past the scratch arrays' first size) */
	test_random(11, 40, true);
	test_random(14, 120, true);
	/* many users: most parts hold a few, some several (mostly NONE and PV) */
	test_random(12, 3000, false);
	test_random(13, 3000, false);
}
