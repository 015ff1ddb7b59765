/*
 * attribution.c - docs/computing.md section 5 for one key: candidate impressions, the
 * post-click pair with the latest click, else the latest post-view
 * impression, else unattributed.
 */
#include <stdlib.h>
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

/* ---- all of a key's conversions in one sweep ----
 *
 * Post-view is a running maximum: sweeping one pixel's events in time
 * order, the best candidate of a conversion at t is the latest impression
 * of that pixel seen before t (ties: smallest id), if within the window.
 *
 * Post-click groups the pixel's impressions by auction.  For a group g,
 * once a click of g's auction has happened at time c, the best pair it
 * offers is (c, latest impression of g at or before c): a later click of
 * the same auction offers a pair at least as good on every key of the
 * order (click time, impression time, smallest id), and expires no
 * sooner.  So each click pushes one pair on a max-heap; a conversion at t
 * drops the pairs whose impression left its window (for good, as t only
 * grows) and takes the top.
 *
 * Events of one time are taken clicks first (a click at t counts for a
 * conversion at t), then conversions, then impressions (an impression at t
 * does not count for a conversion at t, but pairs with a click at t, which
 * is pushed again then).
 */

typedef struct AucRef
{
	const char *auction;
	int64_t		time;
	int			idx;
} AucRef;

typedef struct GrpRef
{
	int64_t		pixel;
	int			auction;		/* ordinal of the auction id */
	int64_t		time;
	int			idx;
} GrpRef;

typedef struct Group
{
	int64_t		pixel;
	int			auction;
	int64_t		first_time;		/* earliest impression of the group */
	int			best;			/* latest impression so far, -1 none */
	bool		clicked;
	int64_t		last_click;
} Group;

enum
{
	PH_CLICK = 0, PH_CONVERSION = 1, PH_IMPRESSION = 2
};

typedef struct Item
{
	int64_t		pixel;
	int64_t		time;
	int			phase;
	int			idx;			/* the event */
	int			group;			/* clicks and impressions with an auction; else -1 */
} Item;

typedef struct Pair
{
	int64_t		click_time;
	int64_t		imp_time;
	int			imp;
} Pair;

typedef struct Buf
{
	void	   *p;
	size_t		cap;			/* elements */
} Buf;

struct AttrScratch
{
	CoreAllocator a;
	const CoreInterrupt *interrupt; /* NULL: never interrupted */
	unsigned	work;
	const AttrEvent *ev;		/* the key being evaluated */
	Buf			aucs;			/* AucRef */
	Buf			aord;			/* int per event: auction ordinal, -1 */
	Buf			grefs;			/* GrpRef */
	Buf			gid;			/* int per event: group, -1 */
	Buf			groups;			/* Group */
	Buf			clicks;			/* int: click events by (auction, time) */
	Buf			auc_start;		/* int per auction ordinal + 1 */
	Buf			items;			/* Item */
	Buf			heap;			/* Pair */
	size_t		memory;
	/* counts of the key being evaluated */
	size_t		naucs;
	size_t		nclicks;
	int			nauctions;
	size_t		ngroups;
	size_t		nitems;
};

static void *
buf_reserve(AttrScratch *s, Buf *b, size_t n, size_t elem)
{
	if (n > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 64;
		void	   *p;

		while (cap < n)
			cap *= 2;
		p = s->a.alloc(s->a.ctx, cap * elem);

		/* no realloc: the batch scan's allocator has none */
		if (b->p != NULL)
		{
			memcpy(p, b->p, b->cap * elem);
			s->a.free(s->a.ctx, b->p);
		}
		s->memory += (cap - b->cap) * elem;
		b->p = p;
		b->cap = cap;
	}
	return b->p;
}

static void
buf_free(AttrScratch *s, Buf *b)
{
	if (b->p != NULL)
		s->a.free(s->a.ctx, b->p);
	b->p = NULL;
	b->cap = 0;
}

AttrScratch *
attr_scratch_create(const CoreAllocator *allocator, const CoreInterrupt *interrupt)
{
	AttrScratch *s = allocator->alloc(allocator->ctx, sizeof(AttrScratch));

	memset(s, 0, sizeof(*s));
	s->a = *allocator;
	s->interrupt = interrupt;
	s->memory = sizeof(AttrScratch);
	return s;
}

void
attr_scratch_destroy(AttrScratch *s)
{
	CoreAllocator a;

	if (s == NULL)
		return;
	a = s->a;
	buf_free(s, &s->aucs);
	buf_free(s, &s->aord);
	buf_free(s, &s->grefs);
	buf_free(s, &s->gid);
	buf_free(s, &s->groups);
	buf_free(s, &s->clicks);
	buf_free(s, &s->auc_start);
	buf_free(s, &s->items);
	buf_free(s, &s->heap);
	a.free(a.ctx, s);
}

size_t
attr_scratch_memory(const AttrScratch *s)
{
	return s->memory;
}

static inline void
work(AttrScratch *s, unsigned units)
{
	s->work += units;
	if (s->work >= CORE_INTERRUPT_EVERY)
	{
		s->work = 0;
		if (s->interrupt != NULL && s->interrupt->check != NULL)
			s->interrupt->check(s->interrupt->arg);
	}
}

static int
cmp_i64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int
cmp_aucref(const void *pa, const void *pb)
{
	const AucRef *a = pa;
	const AucRef *b = pb;
	int			c = strcmp(a->auction, b->auction);

	if (c != 0)
		return c;
	if (a->time != b->time)
		return cmp_i64(a->time, b->time);
	return a->idx - b->idx;
}

static int
cmp_grpref(const void *pa, const void *pb)
{
	const GrpRef *a = pa;
	const GrpRef *b = pb;

	if (a->pixel != b->pixel)
		return cmp_i64(a->pixel, b->pixel);
	if (a->auction != b->auction)
		return a->auction - b->auction;
	if (a->time != b->time)
		return cmp_i64(a->time, b->time);
	return a->idx - b->idx;
}

static int
cmp_item(const void *pa, const void *pb)
{
	const Item *a = pa;
	const Item *b = pb;

	if (a->pixel != b->pixel)
		return cmp_i64(a->pixel, b->pixel);
	if (a->time != b->time)
		return cmp_i64(a->time, b->time);
	if (a->phase != b->phase)
		return a->phase - b->phase;
	return a->idx - b->idx;
}

/* impression a beats b as the latest one: later, or as late with a smaller id */
static bool
imp_better(const AttrEvent *ev, int a, int b)
{
	return b < 0 || later_or_smaller_id(ev[a].time_us, ev[a].event_id, ev[b].time_us, ev[b].event_id);
}

/* pair a above pair b in the heap: later click, later impression, smaller id */
static bool
pair_above(const AttrEvent *ev, const Pair *a, const Pair *b)
{
	if (a->click_time != b->click_time)
		return a->click_time > b->click_time;
	if (a->imp_time != b->imp_time)
		return a->imp_time > b->imp_time;
	return strcmp(ev[a->imp].event_id, ev[b->imp].event_id) < 0;
}

static void
heap_push(AttrScratch *s, size_t *n, Pair p)
{
	Pair	   *h = buf_reserve(s, &s->heap, *n + 1, sizeof(Pair));
	size_t		i = (*n)++;

	while (i > 0 && pair_above(s->ev, &p, &h[(i - 1) / 2]))
	{
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = p;
}

static void
heap_pop(AttrScratch *s, size_t *n)
{
	Pair	   *h = s->heap.p;
	Pair		last = h[--(*n)];
	size_t		i = 0;

	for (;;)
	{
		size_t		c = 2 * i + 1;

		if (c >= *n)
			break;
		if (c + 1 < *n && pair_above(s->ev, &h[c + 1], &h[c]))
			c++;
		if (!pair_above(s->ev, &h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n > 0)
		h[i] = last;
}

static int64_t
sat_sub(int64_t a, int64_t b)
{
	return (b > 0 && a < INT64_MIN + b) ? INT64_MIN : a - b;
}

/* auction ids of the impressions and clicks that can matter, as ordinals */
static void
index_auctions(AttrScratch *s, int n, int64_t lo)
{
	const AttrEvent *ev = s->ev;
	AucRef	   *aucs;
	int		   *aord;
	int		   *gid;
	int		   *clicks;
	int		   *auc_start;
	size_t		i;

	aord = buf_reserve(s, &s->aord, (size_t) n, sizeof(int));
	gid = buf_reserve(s, &s->gid, (size_t) n, sizeof(int));
	aucs = buf_reserve(s, &s->aucs, (size_t) n, sizeof(AucRef));
	s->naucs = 0;
	for (i = 0; i < (size_t) n; i++)
	{
		const AttrEvent *e = &ev[i];

		aord[i] = -1;
		gid[i] = -1;
		if (e->time_us < lo || e->auction_id == NULL ||
			!(e->type == FEAT_CL || (e->type == FEAT_IM && e->has_pixel)))
			continue;
		aucs[s->naucs].auction = e->auction_id;
		aucs[s->naucs].time = e->time_us;
		aucs[s->naucs].idx = (int) i;
		s->naucs++;
	}
	work(s, (unsigned) n);
	if (s->naucs > 1)
		qsort(aucs, s->naucs, sizeof(AucRef), cmp_aucref);
	clicks = buf_reserve(s, &s->clicks, s->naucs, sizeof(int));
	auc_start = buf_reserve(s, &s->auc_start, s->naucs + 1, sizeof(int));
	s->nclicks = 0;
	s->nauctions = 0;
	for (i = 0; i < s->naucs; i++)
	{
		if (i == 0 || strcmp(aucs[i].auction, aucs[i - 1].auction) != 0)
			auc_start[s->nauctions++] = (int) s->nclicks;
		aord[aucs[i].idx] = s->nauctions - 1;
		if (ev[aucs[i].idx].type == FEAT_CL)
			clicks[s->nclicks++] = aucs[i].idx;	/* by (auction, time) */
	}
	auc_start[s->nauctions] = (int) s->nclicks;
	work(s, (unsigned) s->naucs);
}

/* groups: a pixel's impressions of one auction */
static void
build_groups(AttrScratch *s)
{
	const AttrEvent *ev = s->ev;
	const AucRef *aucs = s->aucs.p;
	const int  *aord = s->aord.p;
	int		   *gid = s->gid.p;
	GrpRef	   *grefs = buf_reserve(s, &s->grefs, s->naucs, sizeof(GrpRef));
	Group	   *groups;
	size_t		ngrefs = 0;
	size_t		i;

	for (i = 0; i < s->naucs; i++)
	{
		const AttrEvent *e = &ev[aucs[i].idx];

		if (e->type != FEAT_IM)
			continue;
		grefs[ngrefs].pixel = e->pixel_id;
		grefs[ngrefs].auction = aord[aucs[i].idx];
		grefs[ngrefs].time = e->time_us;
		grefs[ngrefs].idx = aucs[i].idx;
		ngrefs++;
	}
	if (ngrefs > 1)
		qsort(grefs, ngrefs, sizeof(GrpRef), cmp_grpref);
	groups = buf_reserve(s, &s->groups, ngrefs, sizeof(Group));
	s->ngroups = 0;
	for (i = 0; i < ngrefs; i++)
	{
		if (i == 0 || grefs[i].pixel != grefs[i - 1].pixel || grefs[i].auction != grefs[i - 1].auction)
		{
			Group	   *g = &groups[s->ngroups++];

			g->pixel = grefs[i].pixel;
			g->auction = grefs[i].auction;
			g->first_time = grefs[i].time;
			g->best = -1;
			g->clicked = false;
			g->last_click = 0;
		}
		gid[grefs[i].idx] = (int) s->ngroups - 1;
	}
	work(s, (unsigned) ngrefs);
}

static void
add_item(AttrScratch *s, int64_t pixel, int64_t time, int phase, int idx, int group)
{
	Item	   *items = buf_reserve(s, &s->items, s->nitems + 1, sizeof(Item));
	Item	   *it = &items[s->nitems++];

	it->pixel = pixel;
	it->time = time;
	it->phase = phase;
	it->idx = idx;
	it->group = group;
}

/*
 * The sweep's items, sorted: impressions and conversions by pixel, clicks
 * by group.  Clears out[] for the conversions from from_us on.
 */
static void
build_items(AttrScratch *s, int n, int64_t from_us, int64_t lo, AttrCredit *out)
{
	const AttrEvent *ev = s->ev;
	const int  *gid = s->gid.p;
	const int  *clicks = s->clicks.p;
	const int  *auc_start = s->auc_start.p;
	const Group *groups = s->groups.p;
	size_t		i;

	s->nitems = 0;
	for (i = 0; i < (size_t) n; i++)
	{
		const AttrEvent *e = &ev[i];
		int			phase;

		if (e->type == FEAT_CN && e->time_us >= from_us)
		{
			out[i].kind = ATTR_NONE;
			out[i].impression = -1;
			out[i].has_campaign = false;
			out[i].campaign_id = 0;
			if (!e->has_pixel)
				continue;
			phase = PH_CONVERSION;
		}
		else if (e->type == FEAT_IM && e->has_pixel && e->time_us >= lo)
			phase = PH_IMPRESSION;
		else
			continue;
		add_item(s, e->pixel_id, e->time_us, phase, (int) i, gid[i]);
	}
	for (i = 0; i < s->ngroups; i++)
	{
		const Group *g = &groups[i];
		int			a = auc_start[g->auction];
		int			b = auc_start[g->auction + 1];

		/* the group's auction's clicks from its first impression on */
		while (a < b)
		{
			int			mid = a + (b - a) / 2;

			if (ev[clicks[mid]].time_us < g->first_time)
				a = mid + 1;
			else
				b = mid;
		}
		for (b = auc_start[g->auction + 1]; a < b; a++)
		{
			add_item(s, g->pixel, ev[clicks[a]].time_us, PH_CLICK, clicks[a], (int) i);
			work(s, 1);
		}
	}
	if (s->nitems > 1)
		qsort(s->items.p, s->nitems, sizeof(Item), cmp_item);
	work(s, (unsigned) s->nitems);
}

/* a conversion at t: the best live pair, else the pixel's best impression */
static void
credit_conversion(AttrScratch *s, int64_t t, size_t *nheap, int pv_best,
				  int64_t pc_window, int64_t pv_window, AttrCredit *c)
{
	const AttrEvent *ev = s->ev;

	while (*nheap > 0 && t - ((Pair *) s->heap.p)[0].imp_time > pc_window)
		heap_pop(s, nheap);
	if (*nheap > 0)
	{
		c->kind = ATTR_PC;
		c->impression = ((Pair *) s->heap.p)[0].imp;
	}
	else if (pv_best >= 0 && t - ev[pv_best].time_us <= pv_window)
	{
		c->kind = ATTR_PV;
		c->impression = pv_best;
	}
	if (c->impression >= 0)
	{
		c->has_campaign = ev[c->impression].has_campaign;
		c->campaign_id = ev[c->impression].campaign_id;
	}
}

/* the sweep over the items, pixel by pixel in time order */
static void
sweep(AttrScratch *s, int64_t pc_window, int64_t pv_window, AttrCredit *out)
{
	const AttrEvent *ev = s->ev;
	const Item *items = s->items.p;
	Group	   *groups = s->groups.p;
	size_t		nheap = 0;
	int64_t		pixel = 0;
	int			pv_best = -1;
	bool		have_pixel = false;
	size_t		j;

	for (j = 0; j < s->nitems; j++)
	{
		const Item *it = &items[j];
		Group	   *g = it->group >= 0 ? &groups[it->group] : NULL;

		work(s, 1);
		if (!have_pixel || it->pixel != pixel)
		{
			have_pixel = true;
			pixel = it->pixel;
			pv_best = -1;
			nheap = 0;
		}
		switch (it->phase)
		{
			case PH_CLICK:
				g->clicked = true;
				g->last_click = it->time;
				if (g->best >= 0)
					heap_push(s, &nheap, (Pair) {it->time, ev[g->best].time_us, g->best});
				break;
			case PH_IMPRESSION:
				if (imp_better(ev, it->idx, pv_best))
					pv_best = it->idx;
				if (g != NULL && imp_better(ev, it->idx, g->best))
				{
					g->best = it->idx;
					if (g->clicked && g->last_click == it->time)
						heap_push(s, &nheap, (Pair) {it->time, it->time, it->idx});
				}
				break;
			case PH_CONVERSION:
				credit_conversion(s, it->time, &nheap, pv_best, pc_window, pv_window,
								  &out[it->idx]);
				break;
		}
	}
}

void
attr_credit_key(AttrScratch *s, const AttrEvent *ev, int n, int64_t from_us,
				const AttrSettings *settings, AttrCredit *out)
{
	int64_t		pc_window = effective(settings->pc_window_us, settings->rolling_us);
	int64_t		pv_window = effective(settings->pv_window_us, settings->rolling_us);
	int64_t		lo = sat_sub(from_us, pc_window > pv_window ? pc_window : pv_window);

	s->ev = ev;
	index_auctions(s, n, lo);
	build_groups(s);
	build_items(s, n, from_us, lo, out);
	sweep(s, pc_window, pv_window, out);
}
