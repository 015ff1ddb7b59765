/*
 * test_core.c - standalone tests of the pure-C core (features, scoring,
 * generator), built with ASan and UBSan by `make test-core`.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/features.h"
#include "core/generator.h"
#include "core/user_table.h"
#include "check.h"

#define US_PER_DAY (INT64_C(86400) * 1000000)

int			passed;
int			failed;

static FeatModel
seed_model(void)
{
	FeatModel	m;

	memset(&m, 0, sizeof(m));
	m.intercept = -2.78;
	m.nterms = 4;
	m.terms[0] = (FeatTerm) {FEAT_WINDOW_COUNT, FEAT_IM, 30 * US_PER_DAY, FEAT_LOG1P, 1.09};
	m.terms[1] = (FeatTerm) {FEAT_WINDOW_COUNT, FEAT_CL, 7 * US_PER_DAY, FEAT_LOG1P, 1.77};
	m.terms[2] = (FeatTerm) {FEAT_WINDOW_COUNT, FEAT_PS, 2 * US_PER_DAY, FEAT_LOG1P, 2.82};
	m.terms[3] = (FeatTerm) {FEAT_WINDOW_COUNT, FEAT_CN, 365 * US_PER_DAY, FEAT_LOG1P, 0.99};
	return m;
}

static void
test_spec_example(void)
{
	FeatModel	m = seed_model();
	double		acc[FEAT_MAX_TERMS] = {0};
	int64_t		t = 1000 * US_PER_DAY;

	/* 3 impressions and 1 click in their windows, nothing else */
	feat_accumulate(&m, acc, FEAT_IM, t - 1 * US_PER_DAY, t);
	feat_accumulate(&m, acc, FEAT_IM, t - 10 * US_PER_DAY, t);
	feat_accumulate(&m, acc, FEAT_IM, t - 29 * US_PER_DAY, t);
	feat_accumulate(&m, acc, FEAT_CL, t - 6 * US_PER_DAY, t);
	/* outside their windows or in the future: no effect */
	feat_accumulate(&m, acc, FEAT_IM, t - 30 * US_PER_DAY, t);
	feat_accumulate(&m, acc, FEAT_CL, t - 7 * US_PER_DAY, t);
	feat_accumulate(&m, acc, FEAT_PS, t + 1, t);
	CHECK(acc[0] == 3 && acc[1] == 1 && acc[2] == 0 && acc[3] == 0,
		  "counts %g %g %g %g", acc[0], acc[1], acc[2], acc[3]);
	/* z = -2.78 + 1.09 ln 4 + 1.77 ln 2, computed independently */
	CHECK(fabs(feat_linear(&m, acc) - (-2.78 + 1.09 * log(4.0) + 1.77 * log(2.0))) < 1e-12,
		  "z = %.9f", feat_linear(&m, acc));
	CHECK(fabs(feat_linear(&m, acc) - (-0.042069)) < 5e-7, "z = %.9f", feat_linear(&m, acc));
	CHECK(fabs(feat_score(&m, acc) - 0.489484) < 5e-7, "score = %.9f", feat_score(&m, acc));
}

static void
test_edges(void)
{
	int64_t		w = 7 * US_PER_DAY;
	int64_t		t = 5000 * US_PER_DAY + 12345;

	CHECK(feat_contribution(FEAT_WINDOW_COUNT, w, t - w, t) == 0.0, "event at t - W must be out");
	CHECK(feat_contribution(FEAT_WINDOW_COUNT, w, t - w + 1, t) == 1.0, "event just after t - W must be in");
	CHECK(feat_contribution(FEAT_WINDOW_COUNT, w, t, t) == 1.0, "event at t must be in");
	CHECK(feat_contribution(FEAT_WINDOW_COUNT, w, t + 1, t) == 0.0, "future event must be out");
	CHECK(feat_contribution(FEAT_DECAYED_COUNT, w, t + 1, t) == 0.0, "future event must not decay in");
	CHECK(feat_contribution(FEAT_DECAYED_COUNT, w, t, t) == 1.0, "decayed weight at age 0 is 1");
	CHECK(fabs(feat_contribution(FEAT_DECAYED_COUNT, w, t - w, t) - 0.5) < 1e-15,
		  "one half-life halves");
	CHECK(fabs(feat_contribution(FEAT_DECAYED_COUNT, w, t - 3 * w, t) - 0.125) < 1e-15,
		  "three half-lives: 1/8");
}

static void
test_sigmoid_and_validate(void)
{
	FeatModel	m = seed_model();
	int			bad;

	CHECK(feat_sigmoid(0) == 0.5, "sigmoid(0)");
	CHECK(feat_sigmoid(-1000) == 0.0 && feat_sigmoid(1000) == 1.0, "sigmoid saturates without NaN");
	CHECK(fabs(feat_sigmoid(-3) + feat_sigmoid(3) - 1.0) < 1e-15, "sigmoid symmetry");
	CHECK(feat_validate(&m, &bad) == NULL, "seed model is valid");
	m.terms[2].coef = NAN;
	CHECK(feat_validate(&m, &bad) != NULL && bad == 2, "NaN coefficient rejected at term 2");
	m = seed_model();
	m.intercept = INFINITY;
	CHECK(feat_validate(&m, &bad) != NULL && bad == -1, "infinite intercept rejected");
	m = seed_model();
	m.terms[0].span_us = 0;
	CHECK(feat_validate(&m, &bad) != NULL && bad == 0, "zero window rejected");
	CHECK(feat_parse_type("IM", 2) == FEAT_IM && feat_parse_type("CN", 2) == FEAT_CN &&
		  feat_parse_type("cl", 2) == -1 && feat_parse_type("IMP", 3) == -1 &&
		  feat_parse_type("", 0) == -1, "event type parsing");
}

static GenConfig
gen_config(uint64_t seed, int64_t n, double late)
{
	GenConfig	c;

	memset(&c, 0, sizeof(c));
	c.seed = seed;
	c.n_events = n;
	c.n_users = 500;
	c.n_advertisers = 5;
	c.campaigns_per_advertiser = 3;
	c.start_us = 9000 * US_PER_DAY;
	c.duration_us = 30 * US_PER_DAY;
	c.out_of_order = late;
	c.max_delay_us = US_PER_DAY;
	return c;
}

#define N_GEN 50000

static void
test_generator(void)
{
	GenConfig	c = gen_config(42, N_GEN, 0.0);
	const char *err;
	GenState   *a = gen_create(&c, &core_malloc_allocator, &err);
	GenState   *b = gen_create(&c, &core_malloc_allocator, &err);
	GenEvent   *evs = calloc(N_GEN, sizeof(GenEvent));
	GenEvent	e2;
	int64_t		n = 0;
	int64_t		by_type[FEAT_NTYPES] = {0};
	bool		same = true;
	bool		ordered = true;
	bool		clicks_ok = true;
	bool		conversions_ok = true;
	int64_t		attributable = 0;
	int64_t		i;

	while (gen_next(a, &evs[n]))
	{
		if (!gen_next(b, &e2) || memcmp(&evs[n], &e2, sizeof(e2)) != 0)
			same = false;
		if (n > 0 && evs[n].time_us < evs[n - 1].time_us)
			ordered = false;
		by_type[evs[n].type]++;
		n++;
	}
	CHECK(n == N_GEN, "exactly n events: %lld", (long long) n);
	CHECK(same && !gen_next(b, &e2), "same seed, same stream");
	CHECK(ordered, "in order when out_of_order = 0");
	CHECK(by_type[FEAT_IM] > 0.65 * n && by_type[FEAT_IM] < 0.78 * n, "IM share %lld", (long long) by_type[FEAT_IM]);
	CHECK(by_type[FEAT_CL] > 0.07 * n && by_type[FEAT_CL] < 0.15 * n, "CL share %lld", (long long) by_type[FEAT_CL]);
	CHECK(by_type[FEAT_PS] > 0.08 * n && by_type[FEAT_PS] < 0.16 * n, "PS share %lld", (long long) by_type[FEAT_PS]);
	CHECK(by_type[FEAT_CN] > 0.03 * n && by_type[FEAT_CN] < 0.08 * n, "CN share %lld", (long long) by_type[FEAT_CN]);
	CHECK(evs[0].time_us >= c.start_us && evs[n - 1].time_us < c.start_us + 2 * c.duration_us,
		  "times within the stream's span");

	/* every click follows an earlier impression of the same user and auction */
	for (i = 0; i < n; i++)
	{
		int64_t		j;
		bool		found = false;

		if (evs[i].type != FEAT_CL && evs[i].type != FEAT_CN)
			continue;
		for (j = i - 1; j >= 0 && !found; j--)
		{
			if (evs[j].type != FEAT_IM || evs[j].user != evs[i].user)
				continue;
			if (evs[i].type == FEAT_CL)
				found = evs[j].auction == evs[i].auction && evs[j].time_us <= evs[i].time_us &&
					evs[j].campaign_id == evs[i].campaign_id;
			else
				found = evs[j].pixel_id == evs[i].pixel_id && evs[j].advertiser_id == evs[i].advertiser_id &&
					evs[j].time_us < evs[i].time_us;
		}
		if (evs[i].type == FEAT_CL && !found)
			clicks_ok = false;
		if (evs[i].type == FEAT_CN)
		{
			attributable += found;
			if (evs[i].campaign_id != 0 || evs[i].pixel_id == 0 || evs[i].quantity < 1 || evs[i].revenue < 5)
				conversions_ok = false;
		}
	}
	CHECK(clicks_ok, "every click has its impression");
	CHECK(conversions_ok, "conversions carry pixel, quantity and revenue, and no campaign");
	CHECK(attributable > 0.75 * by_type[FEAT_CN], "most conversions fire an earlier impression's pixel: %lld of %lld",
		  (long long) attributable, (long long) by_type[FEAT_CN]);
	gen_destroy(a);
	gen_destroy(b);

	/* a different seed gives a different stream */
	c = gen_config(43, 10, 0.0);
	a = gen_create(&c, &core_malloc_allocator, &err);
	gen_next(a, &e2);
	CHECK(e2.user != evs[0].user || e2.time_us != evs[0].time_us, "seed changes the stream");
	gen_destroy(a);
	free(evs);
}

static void
test_generator_late(void)
{
	GenConfig	c = gen_config(7, N_GEN, 0.1);
	const char *err;
	GenState   *s = gen_create(&c, &core_malloc_allocator, &err);
	GenEvent	ev;
	int64_t		prev_arrival = INT64_MIN;
	int64_t		max_time = INT64_MIN;
	int64_t		late = 0;
	int64_t		inversions = 0;
	int64_t		n = 0;
	int64_t		i;
	bool		arrival_ordered = true;
	bool		delays_ok = true;

	while (gen_next(s, &ev))
	{
		if (ev.arrival_us < prev_arrival)
			arrival_ordered = false;
		if (ev.arrival_us < ev.time_us || ev.arrival_us - ev.time_us > c.max_delay_us + 1000)
			delays_ok = false;
		if (ev.time_us < max_time)
			inversions++;
		if (ev.time_us > max_time)
			max_time = ev.time_us;
		prev_arrival = ev.arrival_us;
		late += ev.late;
		n++;
	}
	CHECK(n == N_GEN, "exactly n events with late delivery");
	CHECK(arrival_ordered, "output is in arrival order");
	CHECK(delays_ok, "delays within max_delay");
	CHECK(late > 0.08 * n && late < 0.12 * n, "about 10%% late: %lld", (long long) late);
	CHECK(inversions > 0.05 * n, "late events really arrive out of event-time order: %lld", (long long) inversions);
	gen_destroy(s);

	/* lateness reorders the same events: compare with the in-order stream */
	{
		GenConfig	c0 = gen_config(7, N_GEN, 0.0);
		GenState   *s0 = gen_create(&c0, &core_malloc_allocator, &err);
		GenState   *s1 = gen_create(&c, &core_malloc_allocator, &err);
		int64_t    *seq0 = calloc(N_GEN, sizeof(int64_t));
		int64_t    *seq1 = calloc(N_GEN, sizeof(int64_t));
		int64_t		k = 0;
		bool		same = true;

		while (gen_next(s0, &ev))
			seq0[ev.seq % N_GEN] += ev.time_us ^ ev.user;
		while (gen_next(s1, &ev))
		{
			seq1[ev.seq % N_GEN] += ev.time_us ^ ev.user;
			k++;
		}
		for (i = 0; i < N_GEN; i++)
			same = same && seq0[i] == seq1[i];
		CHECK(k == N_GEN && same, "late delivery changes the order, not the events");
		free(seq0);
		free(seq1);
		gen_destroy(s0);
		gen_destroy(s1);
	}

	c.n_users = 0;
	CHECK(gen_create(&c, &core_malloc_allocator, &err) == NULL && err != NULL, "zero users rejected");
	c = gen_config(7, 10, 1.5);
	CHECK(gen_create(&c, &core_malloc_allocator, &err) == NULL && err != NULL, "fraction > 1 rejected");
	c = gen_config(7, 10, NAN);
	CHECK(gen_create(&c, &core_malloc_allocator, &err) == NULL && err != NULL, "NaN fraction rejected");
	c = gen_config(7, 0, 0);
	s = gen_create(&c, &core_malloc_allocator, &err);
	CHECK(s != NULL && !gen_next(s, &ev), "zero events: empty stream");
	gen_destroy(s);
}

static void
test_user_table(void)
{
	UserTable  *t = ut_create(3, 0, &core_malloc_allocator);
	UserTable  *presized = ut_create(3, 100000, &core_malloc_allocator);
	char		key[64];
	int			i;
	size_t		pos = 0;
	const char *k;
	uint32_t	len;
	const double *acc;
	size_t		seen = 0;
	bool		sums_ok = true;

	/* short keys inline, long keys in the arena; each key gets i % 7 + 1 adds */
	for (i = 0; i < 50000; i++)
	{
		int			n = snprintf(key, sizeof(key), i % 3 ? "u%07d" : "a-rather-long-user-identifier-%d", i);
		int			j;

		for (j = 0; j <= i % 7; j++)
		{
			double	   *a = ut_lookup(t, key, (uint32_t) n, ut_hash(key, (uint32_t) n));

			a[0] += 1;
			a[2] += i;
			ut_lookup(presized, key, (uint32_t) n, ut_hash(key, (uint32_t) n))[1] += 1;
		}
	}
	CHECK(ut_count(t) == 50000 && ut_count(presized) == 50000, "one entry per key");
	while (ut_next(t, &pos, &k, &len, &acc))
	{
		char		buf[64];
		int			id;

		memcpy(buf, k, len);	/* keys are not NUL-terminated */
		buf[len] = '\0';
		id = atoi(buf[0] == 'u' ? buf + 1 : buf + 30);
		seen++;
		if (acc[0] != id % 7 + 1 || acc[1] != 0 || acc[2] != (double) id * (id % 7 + 1))
			sums_ok = false;
	}
	CHECK(seen == 50000 && sums_ok, "iteration sees every key once with its sums");
	CHECK(ut_memory(presized) < ut_memory(t) * 2, "presized table is not oversized");
	CHECK(ut_hash("u0000001", 8) != ut_hash("u0000002", 8) && ut_hash("", 0) == ut_hash("", 0),
		  "hash distinguishes keys and is deterministic");
	ut_destroy(t);
	ut_destroy(presized);
}

int
main(void)
{
	test_user_table();
	test_spec_example();
	test_edges();
	test_sigmoid_and_validate();
	test_generator();
	test_generator_late();
	test_attribution();
	test_attr_engine();
	test_attr_batch();
	test_logistic();
	test_history();
	printf("core: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
