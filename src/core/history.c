/*
 * history.c - one user's event-time score history in one sweep (see
 * history.h).  A window count keeps the index of the oldest event still in
 * its window and how many of its type have left; a decayed count carries
 * its sum from point to point, decayed by the gap between them.
 */
#include <math.h>

#include "history.h"

void
hist_points(const FeatModel *model, const HistEvent *events, size_t n,
			int64_t from_us, HistEmit emit, void *arg)
{
	size_t		left[FEAT_MAX_TERMS];	/* window terms: first event still inside */
	double		left_count[FEAT_MAX_TERMS]; /* ... and events of the type before it */
	double		seen[FEAT_NTYPES] = {0};	/* events of each type up to t */
	double		acc[FEAT_MAX_TERMS];
	int64_t		prev_t = 0;
	int			nterms = model->nterms;
	size_t		i = 0;

	for (int j = 0; j < nterms; j++)
	{
		left[j] = 0;
		left_count[j] = 0;
		acc[j] = 0;
	}
	while (i < n)
	{
		int64_t		t = events[i].time_us;
		double		at_t[FEAT_NTYPES] = {0};

		/* every event at t counts at t */
		for (; i < n && events[i].time_us == t; i++)
		{
			at_t[events[i].type] += 1;
			seen[events[i].type] += 1;
		}
		for (int j = 0; j < nterms; j++)
		{
			const FeatTerm *term = &model->terms[j];

			if (term->kind == FEAT_WINDOW_COUNT)
			{
				/* (t - W, t]: drop the events whose age reached W */
				while (left[j] < i && t - events[left[j]].time_us >= term->span_us)
				{
					if (events[left[j]].type == term->type)
						left_count[j] += 1;
					left[j]++;
				}
				acc[j] = seen[term->type] - left_count[j];
			}
			else
			{
				double		decayed = acc[j] == 0 ? 0 :
					acc[j] * exp2(-(double) (t - prev_t) / (double) term->span_us);

				acc[j] = decayed + at_t[term->type];
			}
		}
		prev_t = t;
		if (t >= from_us)
			emit(arg, t, acc);
	}
}
