/*
 * attr_batch.c - batch attribution of attr_batch.h.  Events are appended as
 * fixed-size records to one of 1024 parts by the low bits of their user's
 * hash (sequential writes, no lookup while scanning); strings go to an
 * arena.  The latest conversion of each (user, advertiser) key is kept in a
 * hash table by a 32-bit key, which tells the caller which impressions and
 * clicks can matter at all (ab_needed).  Evaluation takes a part at a time: a table of its users, small
 * enough to stay in cache, links each user's events, and a user with
 * conversions is credited key by key, its events sorted by advertiser.
 */
#include <stdlib.h>
#include <string.h>

#include "attr_batch.h"

#define AB_NONE UINT32_MAX
#define AB_INLINE_KEY 16
#define AB_PART_BITS 10
#define AB_NPARTS (1u << AB_PART_BITS)
#define AB_BLOCK_SHIFT 10
#define AB_BLOCK (1u << AB_BLOCK_SHIFT)
#define AB_ARENA_FIRST (64 * 1024)
#define AB_ARENA_MAX (16 * 1024 * 1024)

/* One event; the user id inline when short. */
typedef struct AbRec
{
	int64_t		time_us;
	int64_t		advertiser_id;
	int64_t		campaign_id;
	int64_t		pixel_id;
	const char *event_id;		/* IM and CN; NULL for CL */
	const char *auction_id;		/* IM and CL; NULL when absent */
	uint32_t	hash;
	uint32_t	user_len;
	union
	{
		char		inline_key[AB_INLINE_KEY];
		const char *ptr;
	}			user;
	uint32_t	next;			/* evaluation: the user's next event in its part */
	uint8_t		type;
	uint8_t		has_campaign;
	uint8_t		has_pixel;
	uint8_t		pad;
} AbRec;

/*
 * The events of the users whose hash has these low bits: a part is small
 * enough for its users' table to stay in cache while it is evaluated.
 */
typedef struct AbPart
{
	AbRec	  **blocks;
	uint32_t	nblocks;
	uint32_t	maxblocks;
	uint32_t	n;
} AbPart;

/* A user of the part being evaluated. */
typedef struct AbSlot
{
	uint32_t	first;			/* a record of the user; AB_NONE when empty */
	uint32_t	head;			/* list of its records through next */
	uint32_t	nconv;
	uint32_t	hash;
} AbSlot;

typedef struct AbTotal
{
	int64_t		advertiser_id;
	int64_t		campaign_id;
	int64_t		impressions;
	int64_t		clicks;
	uint8_t		has_campaign;
	uint8_t		used;
} AbTotal;

/* The latest conversion of a key (ab_key; 0 marks an empty slot). */
typedef struct AbConv
{
	uint32_t	key;
	int64_t		max_time;
} AbConv;

struct AttrBatch
{
	CoreAllocator allocator;
	const CoreInterrupt *interrupt; /* NULL: never interrupted */
	AbPart		parts[AB_NPARTS];
	size_t		nrecs;
	size_t		nusers;			/* known after ab_evaluate */
	size_t		block_ptr_bytes;
	CoreArena	arena;			/* records and strings */
	AbTotal    *totals;
	size_t		ntotal_slots;	/* power of two */
	size_t		ntotals;
	AbConv	   *convs;
	size_t		nconv_slots;	/* power of two */
	size_t		nconvs;
	uint64_t   *bloom;			/* nconv_slots / 16 words: the keys of convs */
};

/*
 * A part's blocks grow: 16, 16, 32, ... 512 records, then AB_BLOCK each, so
 * that a thousand parts of a small input stay small.
 */
static inline AbRec *
part_rec(const AbPart *p, uint32_t i)
{
	int			b;

	if (i < 16)
		return &p->blocks[0][i];
	if (i >= AB_BLOCK)
		return &p->blocks[6 + (i >> AB_BLOCK_SHIFT)][i & (AB_BLOCK - 1)];
	b = 31 - __builtin_clz(i);
	return &p->blocks[b - 3][i - (UINT32_C(1) << b)];
}

#define PART_REC(p, i) part_rec((p), (i))

uint32_t
ab_hash(const char *key, uint32_t len)
{
	/* FNV-1a, then a final mix so that every bit depends on every byte */
	uint32_t	h = 2166136261u;
	uint32_t	i;

	for (i = 0; i < len; i++)
	{
		h ^= (unsigned char) key[i];
		h *= 16777619u;
	}
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

AttrBatch *
ab_create(const CoreAllocator *allocator)
{
	AttrBatch  *ab = allocator->alloc(allocator->ctx, sizeof(AttrBatch));

	memset(ab, 0, sizeof(*ab));
	ab->allocator = *allocator;
	core_arena_init(&ab->arena, *allocator, AB_ARENA_FIRST, AB_ARENA_MAX);
	ab->ntotal_slots = 64;
	ab->totals = allocator->alloc(allocator->ctx, ab->ntotal_slots * sizeof(AbTotal));
	memset(ab->totals, 0, ab->ntotal_slots * sizeof(AbTotal));
	ab->nconv_slots = 1024;
	ab->convs = allocator->alloc(allocator->ctx, ab->nconv_slots * sizeof(AbConv));
	memset(ab->convs, 0, ab->nconv_slots * sizeof(AbConv));
	ab->bloom = allocator->alloc(allocator->ctx, ab->nconv_slots / 16 * sizeof(uint64_t));
	memset(ab->bloom, 0, ab->nconv_slots / 16 * sizeof(uint64_t));
	return ab;
}

void
ab_destroy(AttrBatch *ab)
{
	size_t		i;

	if (ab == NULL)
		return;
	core_arena_reset(&ab->arena);
	for (i = 0; i < AB_NPARTS; i++)
		if (ab->parts[i].blocks != NULL)
			ab->allocator.free(ab->allocator.ctx, ab->parts[i].blocks);
	ab->allocator.free(ab->allocator.ctx, ab->totals);
	ab->allocator.free(ab->allocator.ctx, ab->convs);
	ab->allocator.free(ab->allocator.ctx, ab->bloom);
	ab->allocator.free(ab->allocator.ctx, ab);
}

/*
 * Records and strings come from one bump arena whose blocks double from
 * 64 kB to 16 MB: few, large allocations (the server maps them on huge
 * pages), and a small input stays small.
 */
static void *
arena_alloc(AttrBatch *ab, size_t len, size_t align)
{
	return core_arena_alloc(&ab->arena, len, align);
}

static char *
arena_copy(AttrBatch *ab, const char *s, size_t len)
{
	return core_arena_strdup(&ab->arena, s, len);
}

static const char *
rec_user(const AbRec *r)
{
	return r->user_len <= AB_INLINE_KEY ? r->user.inline_key : r->user.ptr;
}

void
ab_count(AttrBatch *ab, const AttrInput *e)
{
	size_t		mask;
	size_t		i;
	AbTotal    *t;
	int64_t		campaign = e->has_campaign ? e->campaign_id : 0;

	if (e->type != FEAT_IM && e->type != FEAT_CL)
		return;
	if ((ab->ntotals + 1) * 2 > ab->ntotal_slots)
	{
		size_t		n = ab->ntotal_slots * 2;
		AbTotal    *nt = ab->allocator.alloc(ab->allocator.ctx, n * sizeof(AbTotal));

		memset(nt, 0, n * sizeof(AbTotal));
		for (i = 0; i < ab->ntotal_slots; i++)
		{
			AbTotal    *o = &ab->totals[i];
			size_t		j;

			if (!o->used)
				continue;
			for (j = ((uint64_t) o->advertiser_id * 31 + (uint64_t) o->campaign_id) & (n - 1);
				 nt[j].used; j = (j + 1) & (n - 1))
				;
			nt[j] = *o;
		}
		ab->allocator.free(ab->allocator.ctx, ab->totals);
		ab->totals = nt;
		ab->ntotal_slots = n;
	}
	mask = ab->ntotal_slots - 1;
	for (i = ((uint64_t) e->advertiser_id * 31 + (uint64_t) campaign) & mask;; i = (i + 1) & mask)
	{
		t = &ab->totals[i];
		if (!t->used)
		{
			t->used = 1;
			t->advertiser_id = e->advertiser_id;
			t->has_campaign = e->has_campaign;
			t->campaign_id = campaign;
			ab->ntotals++;
			break;
		}
		if (t->advertiser_id == e->advertiser_id && t->has_campaign == e->has_campaign &&
			t->campaign_id == campaign)
			break;
	}
	if (e->type == FEAT_IM)
		t->impressions++;
	else
		t->clicks++;
}

uint32_t
ab_key(uint32_t user_hash, int64_t advertiser_id)
{
	uint64_t	k = ((uint64_t) user_hash << 32 | user_hash) ^
		((uint64_t) advertiser_id * UINT64_C(0x9e3779b97f4a7c15));

	k ^= k >> 33;
	k *= UINT64_C(0xff51afd7ed558ccd);
	k ^= k >> 33;
	return (uint32_t) k == 0 ? 1 : (uint32_t) k;
}

/*
 * A blocked Bloom filter over the keys of convs, 8 bits per slot (16 or
 * more per key): one word per key, four bits in it.  Most impressions and
 * clicks have no conversion, and are answered from a table small enough
 * for the cache instead of a probe of convs.
 */
static inline uint64_t
bloom_bits(uint32_t key)
{
	uint32_t	h = key * 0x9e3779b1u;

	return (UINT64_C(1) << (h & 63)) | (UINT64_C(1) << ((h >> 6) & 63)) |
		(UINT64_C(1) << ((h >> 12) & 63)) | (UINT64_C(1) << ((h >> 18) & 63));
}

static inline size_t
bloom_word(uint32_t key, size_t nslots)
{
	/* the high bits: convs is probed by the low ones */
	return (size_t) (((uint64_t) key * (nslots / 16)) >> 32);
}

static AbConv *
conv_slot(AbConv *convs, size_t nslots, uint32_t key)
{
	size_t		mask = nslots - 1;
	size_t		i;

	for (i = key & mask; convs[i].key != 0 && convs[i].key != key; i = (i + 1) & mask)
		;
	return &convs[i];
}

/* Note a conversion of key at time_us for ab_needed(). */
static void
note_conversion(AttrBatch *ab, uint32_t key, int64_t time_us)
{
	AbConv	   *c;

	if ((ab->nconvs + 1) * 2 > ab->nconv_slots)
	{
		size_t		n = ab->nconv_slots * 2;
		AbConv	   *nc = ab->allocator.alloc(ab->allocator.ctx, n * sizeof(AbConv));
		size_t		i;

		memset(nc, 0, n * sizeof(AbConv));
		for (i = 0; i < ab->nconv_slots; i++)
			if (ab->convs[i].key != 0)
				*conv_slot(nc, n, ab->convs[i].key) = ab->convs[i];
		ab->allocator.free(ab->allocator.ctx, ab->convs);
		ab->allocator.free(ab->allocator.ctx, ab->bloom);
		ab->convs = nc;
		ab->nconv_slots = n;
		ab->bloom = ab->allocator.alloc(ab->allocator.ctx, n / 16 * sizeof(uint64_t));
		memset(ab->bloom, 0, n / 16 * sizeof(uint64_t));
		for (i = 0; i < n; i++)
			if (nc[i].key != 0)
				ab->bloom[bloom_word(nc[i].key, n)] |= bloom_bits(nc[i].key);
	}
	c = conv_slot(ab->convs, ab->nconv_slots, key);
	if (c->key == 0)
	{
		ab->bloom[bloom_word(key, ab->nconv_slots)] |= bloom_bits(key);
		c->key = key;
		c->max_time = time_us;
		ab->nconvs++;
	}
	else if (time_us > c->max_time)
		c->max_time = time_us;
}

bool
ab_needed(const AttrBatch *ab, uint32_t key, int64_t time_us)
{
	uint64_t	bits = bloom_bits(key);
	const AbConv *c;

	if ((ab->bloom[bloom_word(key, ab->nconv_slots)] & bits) != bits)
		return false;
	c = conv_slot(ab->convs, ab->nconv_slots, key);
	return c->key != 0 && c->max_time >= time_us;
}

static AbRec *
part_append(AttrBatch *ab, AbPart *p)
{
	uint32_t	n = p->n;

	if (n == 0 || (n < AB_BLOCK ? n >= 16 && (n & (n - 1)) == 0 : (n & (AB_BLOCK - 1)) == 0))
	{
		uint32_t	size = n < 16 ? 16 : n < AB_BLOCK ? n : AB_BLOCK;

		if (p->nblocks == p->maxblocks)
		{
			uint32_t	n = p->maxblocks == 0 ? 4 : p->maxblocks * 2;
			AbRec	  **b = ab->allocator.alloc(ab->allocator.ctx, n * sizeof(AbRec *));

			if (p->nblocks > 0)
				memcpy(b, p->blocks, p->nblocks * sizeof(AbRec *));
			if (p->blocks != NULL)
				ab->allocator.free(ab->allocator.ctx, p->blocks);
			ab->block_ptr_bytes += (n - p->maxblocks) * sizeof(AbRec *);
			p->blocks = b;
			p->maxblocks = n;
		}
		p->blocks[p->nblocks++] = arena_alloc(ab, size * sizeof(AbRec), sizeof(int64_t));
	}
	return PART_REC(p, p->n++);
}

void
ab_add(AttrBatch *ab, const AttrInput *e, uint32_t hash, uint32_t id_len, uint32_t auction_len)
{
	AbRec	   *r;

	if (e->type != FEAT_IM && e->type != FEAT_CL && e->type != FEAT_CN)
		return;
	if (e->type == FEAT_CN)
		note_conversion(ab, ab_key(hash, e->advertiser_id), e->time_us);
	r = part_append(ab, &ab->parts[hash & (AB_NPARTS - 1)]);
	ab->nrecs++;
	r->time_us = e->time_us;
	r->advertiser_id = e->advertiser_id;
	r->type = (uint8_t) e->type;
	r->has_campaign = e->has_campaign;
	r->campaign_id = e->has_campaign ? e->campaign_id : 0;
	r->has_pixel = e->has_pixel;
	r->pixel_id = e->has_pixel ? e->pixel_id : 0;
	r->event_id = e->type == FEAT_CL ? NULL : arena_copy(ab, e->event_id, id_len);
	r->auction_id = e->type == FEAT_CN || e->auction_id == NULL ? NULL :
		arena_copy(ab, e->auction_id, auction_len);
	r->hash = hash;
	r->user_len = e->user_len;
	if (e->user_len <= AB_INLINE_KEY)
		memcpy(r->user.inline_key, e->user_id, e->user_len);
	else
		r->user.ptr = arena_copy(ab, e->user_id, e->user_len);
}

static int
by_advertiser(const void *a, const void *b)
{
	const AbRec *x = *(const AbRec *const *) a;
	const AbRec *y = *(const AbRec *const *) b;

	return x->advertiser_id < y->advertiser_id ? -1 : x->advertiser_id > y->advertiser_id;
}

/* Credit the conversions among run[0..n), the events of one key. */
static void
evaluate_key(AbRec **run, int n, AttrEvent *scratch, AttrCredit *credits, AttrScratch *sweep,
			 AttrSettingsFn settings, void *settings_arg, AttrBatchEmit emit, void *emit_arg)
{
	AttrAdvSettings adv;
	AttrBatchCredit out;
	int			i;
	bool		any = false;

	for (i = 0; i < n && !any; i++)
		any = run[i]->type == FEAT_CN;
	if (!any)
		return;
	for (i = 0; i < n; i++)
	{
		const AbRec *r = run[i];
		AttrEvent  *e = &scratch[i];

		e->event_id = r->event_id;
		e->type = (FeatEventType) r->type;
		e->time_us = r->time_us;
		e->has_campaign = r->has_campaign;
		e->campaign_id = r->campaign_id;
		e->auction_id = r->auction_id;
		e->has_pixel = r->has_pixel;
		e->pixel_id = r->pixel_id;
	}
	settings(settings_arg, run[0]->advertiser_id, &adv);
	out.user_id = rec_user(run[0]);
	out.user_len = run[0]->user_len;
	out.advertiser_id = run[0]->advertiser_id;
	attr_credit_key(sweep, scratch, n, INT64_MIN, &adv.windows, credits);
	for (i = 0; i < n; i++)
	{
		AttrCredit	c;

		if (scratch[i].type != FEAT_CN)
			continue;
		c = credits[i];
		out.conversion_id = scratch[i].event_id;
		out.conversion_time_us = scratch[i].time_us;
		out.credit.kind = c.kind;
		out.credit.has_campaign = c.has_campaign;
		out.credit.campaign_id = c.campaign_id;
		out.credit.impression_id = c.impression >= 0 ? scratch[c.impression].event_id : NULL;
		emit(emit_arg, &out);
	}
}

typedef struct Scratch
{
	AttrBatch  *ab;
	AbRec	  **run;
	AttrEvent  *events;
	AttrCredit *credits;
	size_t		cap;
	AttrScratch *sweep;
} Scratch;

/* Room for n events; the run collected so far is kept. */
static void
scratch_reserve(Scratch *s, size_t n)
{
	const CoreAllocator *a = &s->ab->allocator;
	size_t		old = s->cap;
	AbRec	  **run;

	if (n <= s->cap)
		return;
	while (s->cap < n)
		s->cap *= 2;
	run = a->alloc(a->ctx, s->cap * sizeof(AbRec *));
	memcpy(run, s->run, old * sizeof(AbRec *));
	a->free(a->ctx, s->run);
	a->free(a->ctx, s->events);
	a->free(a->ctx, s->credits);
	s->run = run;
	s->events = a->alloc(a->ctx, s->cap * sizeof(AttrEvent));
	s->credits = a->alloc(a->ctx, s->cap * sizeof(AttrCredit));
}

/* Group one part's events by user and credit its users' conversions. */
static void
evaluate_part(AttrBatch *ab, AbPart *p, AbSlot *slots, size_t nslots, Scratch *sc,
			  AttrSettingsFn settings, void *settings_arg, AttrBatchEmit emit, void *emit_arg)
{
	size_t		mask = nslots - 1;
	uint32_t	i;
	size_t		k;

	for (k = 0; k < nslots; k++)
		slots[k].first = AB_NONE;
	for (i = 0; i < p->n; i++)
	{
		AbRec	   *r = PART_REC(p, i);
		const char *key = rec_user(r);
		AbSlot	   *s;

		for (k = (r->hash >> AB_PART_BITS) & mask;; k = (k + 1) & mask)
		{
			const AbRec *f;

			s = &slots[k];
			if (s->first == AB_NONE)
			{
				s->first = i;
				s->head = AB_NONE;
				s->nconv = 0;
				s->hash = r->hash;
				ab->nusers++;
				break;
			}
			if (s->hash != r->hash)
				continue;
			f = PART_REC(p, s->first);
			if (f->user_len == r->user_len && memcmp(rec_user(f), key, r->user_len) == 0)
				break;
		}
		r->next = s->head;
		s->head = i;
		s->nconv += r->type == FEAT_CN;
	}
	for (k = 0; k < nslots; k++)
	{
		AbSlot	   *s = &slots[k];
		size_t		n = 0;
		size_t		start;
		size_t		j;
		uint32_t	idx;

		if (s->first == AB_NONE || s->nconv == 0)
			continue;
		for (idx = s->head; idx != AB_NONE; idx = PART_REC(p, idx)->next)
		{
			scratch_reserve(sc, n + 1);
			sc->run[n++] = PART_REC(p, idx);
		}
		if (n > 1)
			qsort(sc->run, n, sizeof(AbRec *), by_advertiser);
		for (start = 0; start < n; start = j)
		{
			for (j = start + 1; j < n && sc->run[j]->advertiser_id == sc->run[start]->advertiser_id; j++)
				;
			evaluate_key(sc->run + start, (int) (j - start), sc->events, sc->credits, sc->sweep,
						 settings, settings_arg, emit, emit_arg);
		}
	}
}

void
ab_evaluate(AttrBatch *ab, AttrSettingsFn settings, void *settings_arg,
			AttrBatchEmit emit, void *emit_arg)
{
	const CoreAllocator *a = &ab->allocator;
	Scratch		sc;
	uint32_t	largest = 0;
	size_t		nslots = 16;
	AbSlot	   *slots;
	uint32_t	i;

	for (i = 0; i < AB_NPARTS; i++)
		if (ab->parts[i].n > largest)
			largest = ab->parts[i].n;
	while (nslots < (size_t) largest * 2)
		nslots *= 2;
	slots = a->alloc(a->ctx, nslots * sizeof(AbSlot));
	sc.ab = ab;
	sc.cap = 64;
	sc.run = a->alloc(a->ctx, sc.cap * sizeof(AbRec *));
	sc.events = a->alloc(a->ctx, sc.cap * sizeof(AttrEvent));
	sc.credits = a->alloc(a->ctx, sc.cap * sizeof(AttrCredit));
	sc.sweep = attr_scratch_create(a, ab->interrupt);
	ab->nusers = 0;
	for (i = 0; i < AB_NPARTS; i++)
	{
		AbPart	   *p = &ab->parts[i];
		size_t		n = 16;

		if (p->n == 0)
			continue;
		while (n < (size_t) p->n * 2)
			n *= 2;
		evaluate_part(ab, p, slots, n, &sc, settings, settings_arg, emit, emit_arg);
	}
	attr_scratch_destroy(sc.sweep);
	a->free(a->ctx, sc.run);
	a->free(a->ctx, sc.events);
	a->free(a->ctx, sc.credits);
	a->free(a->ctx, slots);
}

void
ab_set_interrupt(AttrBatch *ab, const CoreInterrupt *interrupt)
{
	ab->interrupt = interrupt;
}

bool
ab_next_total(const AttrBatch *ab, size_t *pos, AttrBatchTotal *out)
{
	while (*pos < ab->ntotal_slots)
	{
		const AbTotal *t = &ab->totals[(*pos)++];

		if (!t->used)
			continue;
		out->advertiser_id = t->advertiser_id;
		out->has_campaign = t->has_campaign;
		out->campaign_id = t->campaign_id;
		out->impressions = t->impressions;
		out->clicks = t->clicks;
		return true;
	}
	return false;
}

size_t
ab_event_count(const AttrBatch *ab)
{
	return ab->nrecs;
}

size_t
ab_user_count(const AttrBatch *ab)
{
	return ab->nusers;
}

size_t
ab_memory(const AttrBatch *ab)
{
	return sizeof(AttrBatch) +
		ab->block_ptr_bytes + ab->arena.bytes + ab->ntotal_slots * sizeof(AbTotal) +
		ab->nconv_slots * (sizeof(AbConv) + sizeof(uint64_t) / 16);
}
