/*
 * history.c - one user's event-time score history in one sweep (see
 * history.h).  A window count keeps the index of the oldest event still in
 * its window and how many of its type have left; a decayed count carries
 * its sum from point to point, decayed by the gap between them.  The sweep
 * keeps all of that in a HistSweep, so that it can stop after any point
 * and go on later with the events that came after.
 */
#include <math.h>
#include <string.h>

#include "history.h"

void
hist_sweep_init(HistSweep *s)
{
	memset(s, 0, sizeof(*s));
}

void
hist_sweep_run(const FeatModel *model, HistSweep *s, const HistEvent *events, size_t n,
			   int64_t from_us, HistEmit emit, void *arg)
{
	int			nterms = model->nterms;
	size_t		i = s->next;

	while (i < n)
	{
		int64_t		t = events[i].time_us;
		double		at_t[FEAT_NTYPES] = {0};

		/* every event at t counts at t */
		for (; i < n && events[i].time_us == t; i++)
		{
			at_t[events[i].type] += 1;
			s->seen[events[i].type] += 1;
		}
		for (int j = 0; j < nterms; j++)
		{
			const FeatTerm *term = &model->terms[j];

			if (term->kind == FEAT_WINDOW_COUNT)
			{
				/* (t - W, t]: drop the events whose age reached W */
				while (s->left[j] < i && t - events[s->left[j]].time_us >= term->span_us)
				{
					if (events[s->left[j]].type == term->type)
						s->left_count[j] += 1;
					s->left[j]++;
				}
				s->acc[j] = s->seen[term->type] - s->left_count[j];
			}
			else
			{
				double		decayed = s->acc[j] == 0 ? 0 :
					s->acc[j] * exp2(-(double) (t - s->prev_t) / (double) term->span_us);

				s->acc[j] = decayed + at_t[term->type];
			}
		}
		s->prev_t = t;
		s->next = i;
		s->points++;
		if (t >= from_us)
			emit(arg, t, s->acc);
	}
}

size_t
hist_sweep_compact(const FeatModel *model, HistSweep *s)
{
	size_t		keep_from = s->next;

	for (int j = 0; j < model->nterms; j++)
		if (model->terms[j].kind == FEAT_WINDOW_COUNT && s->left[j] < keep_from)
			keep_from = s->left[j];
	for (int j = 0; j < model->nterms; j++)
		if (model->terms[j].kind == FEAT_WINDOW_COUNT)
			s->left[j] -= keep_from;
	s->next -= keep_from;
	return keep_from;
}

void
hist_points(const FeatModel *model, const HistEvent *events, size_t n,
			int64_t from_us, HistEmit emit, void *arg)
{
	HistSweep	s;

	hist_sweep_init(&s);
	hist_sweep_run(model, &s, events, n, from_us, emit, arg);
}
