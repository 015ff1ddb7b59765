/*
 * generator.c - the deterministic synthetic event stream of generator.h.
 *
 * Stories start at random gaps along the timeline; their follow-up events
 * (clicks, conversions) wait in a heap ordered by event time, and created
 * events wait in a second heap ordered by arrival time.  An event leaves
 * once no event still to be created can arrive before it, so the output is
 * in arrival order while memory stays proportional to the events in flight,
 * not to the length of the stream.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "generator.h"

/* Story mix, tuned so that about 72% IM, 11% CL, 12% PS, 5% CN come out. */
#define P_IMPRESSION_STORY	0.85
#define P_PAID_SEARCH_STORY 0.14	/* the rest are organic conversions */
#define P_CLICK				0.15
#define P_CONVERT_CLICKED	0.20
#define P_CONVERT_VIEWED	0.04
#define EVENTS_PER_STORY	1.1819
#define CLICK_DELAY_MEAN_US (5 * 60 * INT64_C(1000000))
#define CONV_DELAY_MEAN_US	(2 * 86400 * INT64_C(1000000))
#define CONV_DELAY_MAX_US	(29 * 86400 * INT64_C(1000000))
#define N_PUBLISHERS 20
#define N_CREATIVES 50
#define N_PLACEMENTS 10
#define N_PRODUCTS 30
#define PIXELS_PER_ADVERTISER 2

typedef struct GenHeap
{
	GenEvent   *items;
	int64_t		n;
	int64_t		cap;
	bool		by_arrival;		/* key: arrival_us, else time_us; then seq */
} GenHeap;

struct GenState
{
	GenConfig	config;
	CoreAllocator allocator;
	uint64_t	rng;			/* story content */
	uint64_t	delivery_rng;	/* lateness only, so it cannot change the events */
	double		story_gap_mean_us;
	double		next_story_us;
	int64_t		next_story;
	int64_t		next_seq;
	int64_t		delivered;		/* events handed to the arrival heap */
	int64_t		emitted;
	GenHeap		pending;		/* created later, ordered by event time */
	GenHeap		arriving;		/* created, ordered by arrival time */
};

/* splitmix64: small, fast, and good enough for synthetic data */
static uint64_t
splitmix64(uint64_t *state)
{
	uint64_t	z = (*state += UINT64_C(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static double
unit_from(uint64_t x)
{
	return (double) (x >> 11) * (1.0 / 9007199254740992.0);
}

/* uniform in [0, 1) */
static double
rng_unit(GenState *s)
{
	return unit_from(splitmix64(&s->rng));
}

/* uniform integer in [0, n), n > 0 */
static int64_t
rng_below(GenState *s, int64_t n)
{
	return (int64_t) (rng_unit(s) * (double) n);
}

static int64_t
to_millis(int64_t us)
{
	return us - (((us % 1000) + 1000) % 1000);
}

static bool
heap_less(const GenHeap *h, const GenEvent *a, const GenEvent *b)
{
	int64_t		ka = h->by_arrival ? a->arrival_us : a->time_us;
	int64_t		kb = h->by_arrival ? b->arrival_us : b->time_us;

	return ka < kb || (ka == kb && a->seq < b->seq);
}

static void
heap_push(GenState *s, GenHeap *h, const GenEvent *ev)
{
	int64_t		i;

	if (h->n == h->cap)
	{
		h->cap = h->cap ? h->cap * 2 : 1024;
		h->items = s->allocator.realloc(s->allocator.ctx, h->items,
										(size_t) h->cap * sizeof(GenEvent));
	}
	i = h->n++;
	while (i > 0)
	{
		int64_t		parent = (i - 1) / 2;

		if (!heap_less(h, ev, &h->items[parent]))
			break;
		h->items[i] = h->items[parent];
		i = parent;
	}
	h->items[i] = *ev;
}

static void
heap_pop(GenHeap *h, GenEvent *out)
{
	GenEvent	last;
	int64_t		i = 0;

	*out = h->items[0];
	last = h->items[--h->n];
	for (;;)
	{
		int64_t		child = 2 * i + 1;

		if (child >= h->n)
			break;
		if (child + 1 < h->n && heap_less(h, &h->items[child + 1], &h->items[child]))
			child++;
		if (!heap_less(h, &h->items[child], &last))
			break;
		h->items[i] = h->items[child];
		i = child;
	}
	if (h->n > 0)
		h->items[i] = last;
}

static void
init_event(GenState *s, GenEvent *ev, FeatEventType type, int64_t time_us, int32_t user)
{
	memset(ev, 0, sizeof(*ev));
	ev->seq = s->next_seq++;
	ev->type = type;
	ev->time_us = to_millis(time_us);
	ev->user = user;
	ev->auction = -1;
	ev->publisher = ev->creative = ev->placement = ev->product = -1;
	ev->revenue = -1.0;
}

/*
 * Decide the event's arrival and queue it for delivery.  Called in event-time
 * order; the first n_events calls make the stream, whatever their lateness.
 */
static void
deliver(GenState *s, GenEvent *ev)
{
	if (s->delivered >= s->config.n_events)
		return;
	s->delivered++;
	ev->arrival_us = ev->time_us;
	if (s->config.out_of_order > 0 &&
		unit_from(splitmix64(&s->delivery_rng)) < s->config.out_of_order)
	{
		uint64_t	r = splitmix64(&s->delivery_rng);

		ev->late = true;
		ev->arrival_us += to_millis(1000 + (int64_t) (unit_from(r) * (double) s->config.max_delay_us));
	}
	heap_push(s, &s->arriving, ev);
}

static void
make_conversion(GenState *s, GenEvent *cn, int64_t time_us, int32_t user,
				int32_t advertiser, int32_t pixel)
{
	init_event(s, cn, FEAT_CN, time_us, user);
	cn->advertiser_id = advertiser;
	cn->pixel_id = pixel;
	cn->product = (int16_t) rng_below(s, N_PRODUCTS);
	cn->quantity = 1 + (int32_t) rng_below(s, 3);
	cn->revenue = (double) (500 + rng_below(s, 19501)) / 100.0;
}

static void
make_story(GenState *s)
{
	const GenConfig *c = &s->config;
	int64_t		t = (int64_t) s->next_story_us;
	int32_t		user = (int32_t) rng_below(s, c->n_users);
	int32_t		advertiser = 1 + (int32_t) rng_below(s, c->n_advertisers);
	double		u = rng_unit(s);
	GenEvent	ev;

	if (u < P_IMPRESSION_STORY)
	{
		GenEvent	im;
		int64_t		convert_from = t;
		bool		clicked;

		init_event(s, &im, FEAT_IM, t, user);
		im.advertiser_id = advertiser;
		im.campaign_id = advertiser * 1000 + 1 + (int32_t) rng_below(s, c->campaigns_per_advertiser);
		im.pixel_id = advertiser * 10 + 1 + (int32_t) rng_below(s, PIXELS_PER_ADVERTISER);
		im.auction = s->next_story;
		im.publisher = (int16_t) rng_below(s, N_PUBLISHERS);
		im.creative = (int16_t) rng_below(s, N_CREATIVES);
		im.placement = (int16_t) rng_below(s, N_PLACEMENTS);
		deliver(s, &im);

		clicked = rng_unit(s) < P_CLICK;
		if (clicked)
		{
			int64_t		delay = 1000 + (int64_t) (-CLICK_DELAY_MEAN_US * log(1.0 - rng_unit(s)));

			ev = im;
			ev.seq = s->next_seq++;
			ev.type = FEAT_CL;
			ev.time_us = to_millis(im.time_us + delay);
			ev.pixel_id = 0;
			heap_push(s, &s->pending, &ev);
			convert_from = ev.time_us;
		}
		if (rng_unit(s) < (clicked ? P_CONVERT_CLICKED : P_CONVERT_VIEWED))
		{
			int64_t		delay = 1000 + (int64_t) (-CONV_DELAY_MEAN_US * log(1.0 - rng_unit(s)));

			if (delay > CONV_DELAY_MAX_US)
				delay = CONV_DELAY_MAX_US;
			make_conversion(s, &ev, convert_from + delay, user, advertiser, im.pixel_id);
			heap_push(s, &s->pending, &ev);
		}
	}
	else if (u < P_IMPRESSION_STORY + P_PAID_SEARCH_STORY)
	{
		init_event(s, &ev, FEAT_PS, t, user);
		ev.advertiser_id = advertiser;
		ev.campaign_id = advertiser * 1000 + 1 + (int32_t) rng_below(s, c->campaigns_per_advertiser);
		ev.publisher = (int16_t) rng_below(s, N_PUBLISHERS);
		deliver(s, &ev);
	}
	else
	{
		make_conversion(s, &ev, t, user, advertiser,
						advertiser * 10 + 1 + (int32_t) rng_below(s, PIXELS_PER_ADVERTISER));
		deliver(s, &ev);
	}

	s->next_story++;
	s->next_story_us += 2.0 * s->story_gap_mean_us * rng_unit(s);
}

GenState *
gen_create(const GenConfig *config, const CoreAllocator *allocator, const char **err)
{
	GenState   *s;

	*err = NULL;
	if (config->n_events < 0)
		*err = "number of events must not be negative";
	else if (config->n_users < 1)
		*err = "number of users must be at least 1";
	else if (config->n_advertisers < 1 || config->n_advertisers > 1000000)
		*err = "number of advertisers must be between 1 and 1000000";
	else if (config->campaigns_per_advertiser < 1 || config->campaigns_per_advertiser > 999)
		*err = "campaigns per advertiser must be between 1 and 999";
	else if (config->duration_us <= 0)
		*err = "duration must be positive";
	else if (!(config->out_of_order >= 0.0 && config->out_of_order <= 1.0))
		*err = "out-of-order fraction must be between 0 and 1";
	else if (config->out_of_order > 0 && config->max_delay_us < 1000)
		*err = "maximum delay must be at least one millisecond";
	if (*err)
		return NULL;

	s = allocator->alloc(allocator->ctx, sizeof(GenState));
	memset(s, 0, sizeof(*s));
	s->config = *config;
	s->allocator = *allocator;
	s->rng = config->seed ^ UINT64_C(0x5DEECE66D2545F49);
	s->delivery_rng = config->seed ^ UINT64_C(0xA0761D6478BD642F);
	s->story_gap_mean_us = (double) config->duration_us * EVENTS_PER_STORY /
		(double) (config->n_events > 0 ? config->n_events : 1);
	s->next_story_us = (double) config->start_us;
	s->arriving.by_arrival = true;
	return s;
}

bool
gen_next(GenState *s, GenEvent *out)
{
	if (s->emitted >= s->config.n_events)
		return false;
	for (;;)
	{
		/* no event still to be created has an event time before this */
		int64_t		frontier = (int64_t) s->next_story_us;

		if (s->pending.n > 0 && s->pending.items[0].time_us < frontier)
			frontier = s->pending.items[0].time_us;
		if (s->delivered >= s->config.n_events)
			frontier = INT64_MAX;	/* nothing more will be created */

		if (s->arriving.n > 0 && s->arriving.items[0].arrival_us <= frontier)
		{
			heap_pop(&s->arriving, out);
			s->emitted++;
			return true;
		}
		if (s->pending.n > 0 && s->pending.items[0].time_us <= (int64_t) s->next_story_us)
		{
			GenEvent	ev;

			heap_pop(&s->pending, &ev);
			deliver(s, &ev);
		}
		else
			make_story(s);
	}
}

void
gen_destroy(GenState *s)
{
	if (s == NULL)
		return;
	if (s->pending.items)
		s->allocator.free(s->allocator.ctx, s->pending.items);
	if (s->arriving.items)
		s->allocator.free(s->allocator.ctx, s->arriving.items);
	s->allocator.free(s->allocator.ctx, s);
}

void
gen_format_event_id(const GenConfig *config, const GenEvent *ev, char *buf)
{
	snprintf(buf, GEN_ID_BUFSIZE, "e%llu-%lld",
			 (unsigned long long) config->seed, (long long) ev->seq);
}

void
gen_format_user_id(int32_t user, char *buf)
{
	snprintf(buf, GEN_ID_BUFSIZE, "u%07d", (int) user);
}

void
gen_format_auction_id(const GenConfig *config, int64_t auction, char *buf)
{
	snprintf(buf, GEN_ID_BUFSIZE, "a%llu-%lld",
			 (unsigned long long) config->seed, (long long) auction);
}
