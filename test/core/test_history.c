/*
 * test_history.c - the history sweep (src/core/history.c) against the
 * definition: each point equals feat_accumulate() over the events up to its
 * time, on hand cases (window edges, equal times, from) and on random
 * streams with every kind of term; and a sweep resumed batch by batch, its
 * events compacted in between, against the sweep of all events at once,
 * bit for bit.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/history.h"
#include "check.h"

#define HOUR_US INT64_C(3600000000)
#define MAX_POINTS 4096

typedef struct Collected
{
	int			n;
	int64_t		t[MAX_POINTS];
	double		f[MAX_POINTS][FEAT_MAX_TERMS];
	int			nterms;
} Collected;

static void
collect(void *arg, int64_t t, const double *features)
{
	Collected  *c = arg;

	if (c->n < MAX_POINTS)
	{
		c->t[c->n] = t;
		memcpy(c->f[c->n], features, sizeof(double) * c->nterms);
	}
	c->n++;
}

static FeatModel
model_of(int nterms, const FeatTerm *terms)
{
	FeatModel	m;

	memset(&m, 0, sizeof(m));
	m.nterms = nterms;
	memcpy(m.terms, terms, sizeof(FeatTerm) * nterms);
	return m;
}

/* the largest relative difference between the sweep and the definition */
static double
worst_difference(const FeatModel *m, const HistEvent *ev, size_t n, const Collected *c)
{
	double		worst = 0;

	for (int k = 0; k < c->n && k < MAX_POINTS; k++)
	{
		double		acc[FEAT_MAX_TERMS] = {0};

		for (size_t i = 0; i < n; i++)
			feat_accumulate(m, acc, ev[i].type, ev[i].time_us, c->t[k]);
		for (int j = 0; j < m->nterms; j++)
		{
			double		d = fabs(acc[j] - c->f[k][j]) / fmax(1.0, fabs(acc[j]));

			if (d > worst)
				worst = d;
		}
	}
	return worst;
}

static int
distinct_times(const HistEvent *ev, size_t n)
{
	int			d = 0;

	for (size_t i = 0; i < n; i++)
		if (i == 0 || ev[i].time_us != ev[i - 1].time_us)
			d++;
	return d;
}

static int
by_time(const void *a, const void *b)
{
	int64_t		x = ((const HistEvent *) a)->time_us;
	int64_t		y = ((const HistEvent *) b)->time_us;

	return (x > y) - (x < y);
}

/*
 * Random streams cut into batches at random distinct times: a sweep that
 * goes on batch by batch, keeping only the events hist_sweep_compact()
 * leaves, emits the points of the one sweep over all events, bit for bit.
 * Returns the number of streams where compaction dropped events.
 */
static int
check_resumed(const FeatModel *m, const char *what, int64_t span_hours)
{
	static HistEvent ev[1500];
	static HistEvent kept[1500];
	static Collected whole;
	static Collected resumed;
	uint64_t	state = 777;
	int			same = 1;
	int			compacted_rounds = 0;

	for (int round = 0; round < 60; round++)
	{
		size_t		n = 1 + (size_t) (round * 53 % 1500);
		size_t		nkept = 0;
		size_t		i = 0;
		int			dropped = 0;
		HistSweep	s;

		for (size_t k = 0; k < n; k++)
		{
			state = state * 6364136223846793005ULL + 1442695040888963407ULL;
			ev[k].time_us = (int64_t) ((state >> 33) % (uint64_t) span_hours) * HOUR_US;
			ev[k].type = (FeatEventType) ((state >> 20) % FEAT_NTYPES);
		}
		qsort(ev, n, sizeof(HistEvent), by_time);
		memset(&whole, 0, sizeof(whole));
		whole.nterms = m->nterms;
		hist_points(m, ev, n, INT64_MIN, collect, &whole);

		memset(&resumed, 0, sizeof(resumed));
		resumed.nterms = m->nterms;
		hist_sweep_init(&s);
		while (i < n)
		{
			size_t		end;
			size_t		drop;

			/* a batch of 1 to 64 events, ending between two distinct times */
			state = state * 6364136223846793005ULL + 1442695040888963407ULL;
			end = i + 1 + (size_t) ((state >> 40) % 64);
			if (end > n)
				end = n;
			while (end < n && ev[end].time_us == ev[end - 1].time_us)
				end++;
			memcpy(kept + nkept, ev + i, sizeof(HistEvent) * (end - i));
			nkept += end - i;
			hist_sweep_run(m, &s, kept, nkept, INT64_MIN, collect, &resumed);
			drop = hist_sweep_compact(m, &s);
			if (drop > 0)
			{
				memmove(kept, kept + drop, sizeof(HistEvent) * (nkept - drop));
				nkept -= drop;
				dropped = 1;
			}
			i = end;
		}
		compacted_rounds += dropped;
		if (resumed.n != whole.n || s.points != (uint64_t) whole.n)
			same = 0;
		for (int k = 0; same && k < whole.n && k < MAX_POINTS; k++)
			if (resumed.t[k] != whole.t[k] ||
				memcmp(resumed.f[k], whole.f[k], sizeof(double) * m->nterms) != 0)
				same = 0;
	}
	CHECK(same, "%s: resumed batch by batch, the points are those of one sweep, bit for bit", what);
	return compacted_rounds;
}

void
test_history(void)
{
	static Collected c;
	const FeatTerm two[2] = {
		{FEAT_WINDOW_COUNT, FEAT_CL, 2 * HOUR_US, FEAT_LOG1P, 1.0},
		{FEAT_DECAYED_COUNT, FEAT_IM, 1 * HOUR_US, FEAT_IDENTITY, 1.0},
	};
	FeatModel	m = model_of(2, two);

	/*
	 * Hand case: CL at 0, IM at 0, CL at 1 h, IM and CL at 2 h (same time).
	 * Points at 0, 1 h, 2 h.  Clicks in (t - 2 h, t]: 1, 2, 2 (the click at
	 * 0 is 2 h old at 2 h: out).  Decayed IM, half-life 1 h: 1, 0.5, 0.25 + 1.
	 */
	{
		HistEvent	ev[5] = {{0, FEAT_CL}, {0, FEAT_IM}, {HOUR_US, FEAT_CL},
		{2 * HOUR_US, FEAT_IM}, {2 * HOUR_US, FEAT_CL}};

		memset(&c, 0, sizeof(c));
		c.nterms = 2;
		hist_points(&m, ev, 5, INT64_MIN, collect, &c);
		CHECK(c.n == 3 && c.t[0] == 0 && c.t[1] == HOUR_US && c.t[2] == 2 * HOUR_US,
			  "one point per distinct event time, in order");
		CHECK(c.f[0][0] == 1 && c.f[1][0] == 2 && c.f[2][0] == 2,
			  "window count: the event exactly W old has left the window");
		CHECK(c.f[0][1] == 1 && c.f[1][1] == 0.5 && c.f[2][1] == 1.25,
			  "decayed count: halves per half-life, events at t count 1");

		memset(&c, 0, sizeof(c));
		c.nterms = 2;
		hist_points(&m, ev, 5, HOUR_US, collect, &c);
		CHECK(c.n == 2 && c.t[0] == HOUR_US && c.f[0][0] == 2 && c.f[1][1] == 1.25,
			  "from: earlier points are not emitted, later ones unchanged");

		memset(&c, 0, sizeof(c));
		hist_points(&m, ev, 0, INT64_MIN, collect, &c);
		CHECK(c.n == 0, "no events, no points");
	}

	/* Random streams: every point equals the definition. */
	{
		const FeatTerm all[6] = {
			{FEAT_WINDOW_COUNT, FEAT_IM, 30 * 24 * HOUR_US, FEAT_LOG1P, 1.0},
			{FEAT_WINDOW_COUNT, FEAT_CL, 7 * 24 * HOUR_US, FEAT_LOG1P, 1.0},
			{FEAT_WINDOW_COUNT, FEAT_PS, 2 * HOUR_US, FEAT_IDENTITY, 1.0},
			{FEAT_WINDOW_COUNT, FEAT_CN, 365 * 24 * HOUR_US, FEAT_LOG1P, 1.0},
			{FEAT_DECAYED_COUNT, FEAT_CL, 24 * HOUR_US, FEAT_IDENTITY, 1.0},
			{FEAT_DECAYED_COUNT, FEAT_IM, 3 * HOUR_US, FEAT_IDENTITY, 1.0},
		};
		FeatModel	big = model_of(6, all);
		static HistEvent ev[1500];
		double		worst = 0;
		int			points_ok = 1;
		uint64_t	state = 12345;

		for (int round = 0; round < 40; round++)
		{
			size_t		n = 1 + (size_t) (round * 37 % 1500);

			for (size_t i = 0; i < n; i++)
			{
				state = state * 6364136223846793005ULL + 1442695040888963407ULL;
				/* over 60 days, on a coarse grid so that equal times occur */
				ev[i].time_us = (int64_t) ((state >> 33) % 1440) * HOUR_US;
				ev[i].type = (FeatEventType) ((state >> 20) % FEAT_NTYPES);
			}
			qsort(ev, n, sizeof(HistEvent), by_time);
			memset(&c, 0, sizeof(c));
			c.nterms = 6;
			hist_points(&big, ev, n, INT64_MIN, collect, &c);
			if (c.n != distinct_times(ev, n))
				points_ok = 0;
			worst = fmax(worst, worst_difference(&big, ev, n, &c));
		}
		CHECK(points_ok, "random streams: one point per distinct time");
		CHECK(worst < 1e-12, "random streams: every point equals the definition to 1e-12 (worst %g)", worst);
	}

	/* Resumed sweeps: every kind of term; short windows, where compaction drops events; decays only. */
	{
		const FeatTerm all[6] = {
			{FEAT_WINDOW_COUNT, FEAT_IM, 30 * 24 * HOUR_US, FEAT_LOG1P, 1.0},
			{FEAT_WINDOW_COUNT, FEAT_CL, 7 * 24 * HOUR_US, FEAT_LOG1P, 1.0},
			{FEAT_WINDOW_COUNT, FEAT_PS, 2 * HOUR_US, FEAT_IDENTITY, 1.0},
			{FEAT_WINDOW_COUNT, FEAT_CN, 365 * 24 * HOUR_US, FEAT_LOG1P, 1.0},
			{FEAT_DECAYED_COUNT, FEAT_CL, 24 * HOUR_US, FEAT_IDENTITY, 1.0},
			{FEAT_DECAYED_COUNT, FEAT_IM, 3 * HOUR_US, FEAT_IDENTITY, 1.0},
		};
		const FeatTerm short_windows[3] = {
			{FEAT_WINDOW_COUNT, FEAT_PS, 2 * HOUR_US, FEAT_IDENTITY, 1.0},
			{FEAT_WINDOW_COUNT, FEAT_CL, 24 * HOUR_US, FEAT_LOG1P, 1.0},
			{FEAT_DECAYED_COUNT, FEAT_IM, 3 * HOUR_US, FEAT_IDENTITY, 1.0},
		};
		const FeatTerm decays_only[2] = {
			{FEAT_DECAYED_COUNT, FEAT_CL, 24 * HOUR_US, FEAT_IDENTITY, 1.0},
			{FEAT_DECAYED_COUNT, FEAT_IM, 3 * HOUR_US, FEAT_IDENTITY, 1.0},
		};
		FeatModel	big = model_of(6, all);
		FeatModel	shortw = model_of(3, short_windows);
		FeatModel	decays = model_of(2, decays_only);
		int			dropped;

		(void) check_resumed(&big, "six terms over 60 days", 1440);
		dropped = check_resumed(&shortw, "windows of 2 h and 1 day over 60 days", 1440);
		CHECK(dropped >= 50, "with short windows the kept events are compacted (in %d of 60 streams)", dropped);
		dropped = check_resumed(&decays, "decayed counts only", 1440);
		CHECK(dropped >= 55, "with decayed counts only the swept events are dropped (in %d of 60 streams)", dropped);
	}
}
