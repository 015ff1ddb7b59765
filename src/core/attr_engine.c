/*
 * attr_engine.c - the incremental attribution engine (see attr_engine.h).
 *
 * Keys live in an open-addressing table of pointers; each key holds its
 * events (AttrEvent, so that attr_credit() reads them directly) and, in a
 * parallel array, the credit last emitted for each conversion.  Strings are
 * copied; a delta's strings go to an arena that the next call resets, so
 * that a retraction can name an impression the engine has since dropped.
 */
#include <string.h>

#include "attr_engine.h"
#include "user_table.h"			/* ut_hash */

typedef struct Cred
{
	bool		known;			/* a credit was emitted (or loaded) */
	AttrStored	s;				/* s.impression_id owned here */
} Cred;

typedef struct Key
{
	char	   *user;			/* NUL-terminated copy */
	uint32_t	user_len;
	uint32_t	hash;
	int64_t		adv;
	AttrEvent  *ev;
	Cred	   *cred;
	int			n;
	int			cap;
	bool		dirty;
	int64_t		dirty_from;
} Key;

struct AttrEngine
{
	CoreAllocator a;
	Key		  **slots;
	size_t		nslots;			/* power of two */
	size_t		nkeys;
	size_t		nevents;
	size_t		memory;
	bool		has_max;
	int64_t		max_time;
	int64_t		future_limit;	/* later events are future */

	CoreInterrupt interrupt;
	AttrScratch *scratch;
	AttrCredit *credits;		/* per event of the key being re-evaluated */
	size_t		credits_cap;
	unsigned	work;

	/* per-call output */
	AttrBatchResult result;
	size_t		late_cap;
	size_t		deltas_cap;
	Key		  **dirty;
	size_t		ndirty;
	size_t		dirty_cap;
	CoreArena	arena;
};

#define ARENA_CHUNK 65536

static void *
e_alloc(AttrEngine *e, size_t size)
{
	e->memory += size;
	return e->a.alloc(e->a.ctx, size);
}

static void
e_free(AttrEngine *e, void *p, size_t size)
{
	if (p == NULL)
		return;
	e->memory -= size;
	e->a.free(e->a.ctx, p);
}

static void *
e_grow(AttrEngine *e, void *p, size_t old_size, size_t new_size)
{
	e->memory += new_size - old_size;
	if (p == NULL)
		return e->a.alloc(e->a.ctx, new_size);
	return e->a.realloc(e->a.ctx, p, new_size);
}

static char *
e_strdup(AttrEngine *e, const char *s, size_t len)
{
	char	   *p = e_alloc(e, len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

static void
e_strfree(AttrEngine *e, char *s)
{
	if (s != NULL)
		e_free(e, s, strlen(s) + 1);
}

static char *
arena_strdup(AttrEngine *e, const char *s, size_t len)
{
	if (s == NULL)
		return NULL;
	return core_arena_strdup(&e->arena, s, len);
}

static void
arena_reset(AttrEngine *e)
{
	core_arena_reset(&e->arena);
}

static uint32_t
key_hash(const char *user, uint32_t len, int64_t adv)
{
	uint64_t	h = ut_hash(user, len) ^ ((uint64_t) adv * UINT64_C(0x9E3779B97F4A7C15));

	h ^= h >> 29;
	h *= UINT64_C(0xBF58476D1CE4E5B9);
	h ^= h >> 32;
	return (uint32_t) h;
}

AttrEngine *
ae_create(const CoreAllocator *allocator)
{
	AttrEngine *e = allocator->alloc(allocator->ctx, sizeof(AttrEngine));

	memset(e, 0, sizeof(*e));
	e->a = *allocator;
	core_arena_init(&e->arena, *allocator, ARENA_CHUNK, ARENA_CHUNK);
	e->memory = sizeof(AttrEngine);
	e->nslots = 1024;
	e->slots = e_alloc(e, sizeof(Key *) * e->nslots);
	memset(e->slots, 0, sizeof(Key *) * e->nslots);
	e->scratch = attr_scratch_create(&e->a, &e->interrupt);
	e->future_limit = INT64_MAX;
	return e;
}

void
ae_set_future_limit(AttrEngine *e, int64_t limit_us)
{
	e->future_limit = limit_us;
}

void
ae_set_interrupt(AttrEngine *e, const CoreInterrupt *interrupt)
{
	e->interrupt = *interrupt;
}

/* one unit of work of a loop over keys */
static inline void
e_work(AttrEngine *e)
{
	if (++e->work >= CORE_INTERRUPT_EVERY)
	{
		e->work = 0;
		if (e->interrupt.check != NULL)
			e->interrupt.check(e->interrupt.arg);
	}
}

static void
cred_clear(AttrEngine *e, Cred *c)
{
	if (c->known)
		e_strfree(e, (char *) c->s.impression_id);
	c->known = false;
	c->s.impression_id = NULL;
}

static void
event_free(AttrEngine *e, Key *k, int i)
{
	e_strfree(e, (char *) k->ev[i].event_id);
	e_strfree(e, (char *) k->ev[i].auction_id);
	cred_clear(e, &k->cred[i]);
}

static void
key_free(AttrEngine *e, Key *k)
{
	int			i;

	for (i = 0; i < k->n; i++)
		event_free(e, k, i);
	e_free(e, k->ev, sizeof(AttrEvent) * k->cap);
	e_free(e, k->cred, sizeof(Cred) * k->cap);
	e_free(e, k->user, k->user_len + 1);
	e_free(e, k, sizeof(Key));
}

void
ae_destroy(AttrEngine *e)
{
	size_t		i;
	CoreAllocator a = e->a;

	for (i = 0; i < e->nslots; i++)
		if (e->slots[i] != NULL)
			key_free(e, e->slots[i]);
	e_free(e, e->slots, sizeof(Key *) * e->nslots);
	e_free(e, e->result.late, sizeof(bool) * e->late_cap);
	e_free(e, e->result.future, sizeof(bool) * e->late_cap);
	e_free(e, e->result.deltas, sizeof(AttrDelta) * e->deltas_cap);
	e_free(e, e->dirty, sizeof(Key *) * e->dirty_cap);
	e_free(e, e->credits, sizeof(AttrCredit) * e->credits_cap);
	attr_scratch_destroy(e->scratch);
	arena_reset(e);
	a.free(a.ctx, e);
}

static void
slots_rebuild(AttrEngine *e, size_t nslots)
{
	Key		  **old = e->slots;
	size_t		old_n = e->nslots;
	size_t		i;

	e->slots = e_alloc(e, sizeof(Key *) * nslots);
	memset(e->slots, 0, sizeof(Key *) * nslots);
	e->nslots = nslots;
	for (i = 0; i < old_n; i++)
	{
		Key		   *k = old[i];
		size_t		pos;

		if (k == NULL)
			continue;
		pos = k->hash & (nslots - 1);
		while (e->slots[pos] != NULL)
			pos = (pos + 1) & (nslots - 1);
		e->slots[pos] = k;
	}
	e_free(e, old, sizeof(Key *) * old_n);
}

static Key *
key_find(const AttrEngine *e, const char *user, uint32_t len, int64_t adv, uint32_t hash,
		 size_t *slot)
{
	size_t		pos = hash & (e->nslots - 1);

	for (;;)
	{
		Key		   *k = e->slots[pos];

		if (k == NULL)
		{
			*slot = pos;
			return NULL;
		}
		if (k->hash == hash && k->adv == adv && k->user_len == len &&
			memcmp(k->user, user, len) == 0)
			return k;
		pos = (pos + 1) & (e->nslots - 1);
	}
}

static Key *
key_get(AttrEngine *e, const char *user, uint32_t len, int64_t adv)
{
	uint32_t	hash = key_hash(user, len, adv);
	size_t		slot;
	Key		   *k = key_find(e, user, len, adv, hash, &slot);

	if (k != NULL)
		return k;
	if ((e->nkeys + 1) * 4 > e->nslots * 3)
	{
		slots_rebuild(e, e->nslots * 2);
		(void) key_find(e, user, len, adv, hash, &slot);
	}
	k = e_alloc(e, sizeof(Key));
	memset(k, 0, sizeof(*k));
	k->user = e_strdup(e, user, len);
	k->user_len = len;
	k->hash = hash;
	k->adv = adv;
	e->slots[slot] = k;
	e->nkeys++;
	return k;
}

static int
key_append(AttrEngine *e, Key *k, const AttrInput *in)
{
	AttrEvent  *ev;

	if (k->n == k->cap)
	{
		int			cap = k->cap ? k->cap * 2 : 1;

		k->ev = e_grow(e, k->ev, sizeof(AttrEvent) * k->cap, sizeof(AttrEvent) * cap);
		k->cred = e_grow(e, k->cred, sizeof(Cred) * k->cap, sizeof(Cred) * cap);
		k->cap = cap;
	}
	ev = &k->ev[k->n];
	ev->event_id = e_strdup(e, in->event_id, strlen(in->event_id));
	ev->type = in->type;
	ev->time_us = in->time_us;
	ev->has_campaign = in->has_campaign;
	ev->campaign_id = in->has_campaign ? in->campaign_id : 0;
	ev->auction_id = in->auction_id ? e_strdup(e, in->auction_id, strlen(in->auction_id)) : NULL;
	ev->has_pixel = in->has_pixel;
	ev->pixel_id = in->has_pixel ? in->pixel_id : 0;
	memset(&k->cred[k->n], 0, sizeof(Cred));
	e->nevents++;
	return k->n++;
}

static bool
relevant(const AttrInput *in)
{
	return in->type == FEAT_IM || in->type == FEAT_CL || in->type == FEAT_CN;
}

static void
see_time(AttrEngine *e, int64_t t)
{
	if (!e->has_max || t > e->max_time)
		e->max_time = t;
	e->has_max = true;
}

static void
cred_set(AttrEngine *e, Cred *c, const AttrStored *s)
{
	cred_clear(e, c);
	c->known = true;
	c->s = *s;
	c->s.impression_id = s->impression_id ?
		e_strdup(e, s->impression_id, strlen(s->impression_id)) : NULL;
}

void
ae_load(AttrEngine *e, const AttrInput *in, const AttrStored *credit)
{
	Key		   *k;
	int			i;

	see_time(e, in->time_us);
	if (!relevant(in))
		return;
	k = key_get(e, in->user_id, in->user_len, in->advertiser_id);
	i = key_append(e, k, in);
	if (in->type == FEAT_CN && credit != NULL)
		cred_set(e, &k->cred[i], credit);
}

static bool
stored_equal(const AttrStored *a, const AttrStored *b)
{
	if (a->kind != b->kind || a->has_campaign != b->has_campaign)
		return false;
	if (a->has_campaign && a->campaign_id != b->campaign_id)
		return false;
	if ((a->impression_id == NULL) != (b->impression_id == NULL))
		return false;
	return a->impression_id == NULL || strcmp(a->impression_id, b->impression_id) == 0;
}

static void
emit(AttrEngine *e, const Key *k, const AttrEvent *conv, const AttrStored *s, int sign)
{
	AttrDelta  *d;

	if (e->result.ndeltas == e->deltas_cap)
	{
		size_t		cap = e->deltas_cap ? e->deltas_cap * 2 : 256;

		e->result.deltas = e_grow(e, e->result.deltas, sizeof(AttrDelta) * e->deltas_cap,
								  sizeof(AttrDelta) * cap);
		e->deltas_cap = cap;
	}
	d = &e->result.deltas[e->result.ndeltas++];
	d->user_id = arena_strdup(e, k->user, k->user_len);
	d->user_len = k->user_len;
	d->advertiser_id = k->adv;
	d->conversion_id = arena_strdup(e, conv->event_id, strlen(conv->event_id));
	d->conversion_time_us = conv->time_us;
	d->credit = *s;
	d->credit.impression_id = s->impression_id ?
		arena_strdup(e, s->impression_id, strlen(s->impression_id)) : NULL;
	d->sign = sign;
}

/* Re-evaluate the conversions of k at or after k->dirty_from. */
static void
key_reevaluate(AttrEngine *e, Key *k, const AttrSettings *windows)
{
	int			i;

	if ((size_t) k->n > e->credits_cap)
	{
		size_t		cap = e->credits_cap ? e->credits_cap : 64;

		while (cap < (size_t) k->n)
			cap *= 2;
		e->credits = e_grow(e, e->credits, sizeof(AttrCredit) * e->credits_cap,
							sizeof(AttrCredit) * cap);
		e->credits_cap = cap;
	}
	attr_credit_key(e->scratch, k->ev, k->n, k->dirty_from, windows, e->credits);
	for (i = 0; i < k->n; i++)
	{
		AttrCredit	c;
		AttrStored	s;
		Cred	   *old = &k->cred[i];

		if (k->ev[i].type != FEAT_CN || k->ev[i].time_us < k->dirty_from)
			continue;
		e->result.naffected++;
		c = e->credits[i];
		s.kind = c.kind;
		s.has_campaign = c.has_campaign;
		s.campaign_id = c.has_campaign ? c.campaign_id : 0;
		s.impression_id = c.impression >= 0 ? k->ev[c.impression].event_id : NULL;
		if (old->known && stored_equal(&old->s, &s))
			continue;
		if (old->known)
			emit(e, k, &k->ev[i], &old->s, -1);
		emit(e, k, &k->ev[i], &s, +1);
		cred_set(e, old, &s);
	}
}

const AttrBatchResult *
ae_apply(AttrEngine *e, const AttrInput *events, size_t n, bool use_watermark,
		 AttrSettingsFn settings, void *settings_arg)
{
	bool		had_max = e->has_max;
	int64_t		max_before = e->max_time;
	size_t		i;

	arena_reset(e);
	e->result.ndeltas = 0;
	e->result.naffected = 0;
	e->ndirty = 0;
	if (n > e->late_cap)
	{
		e->result.late = e_grow(e, e->result.late, sizeof(bool) * e->late_cap, sizeof(bool) * n);
		e->result.future = e_grow(e, e->result.future, sizeof(bool) * e->late_cap, sizeof(bool) * n);
		e->late_cap = n;
	}

	for (i = 0; i < n; i++)
	{
		const AttrInput *in = &events[i];
		Key		   *k;

		e_work(e);
		e->result.late[i] = false;
		e->result.future[i] = in->time_us > e->future_limit;
		if (e->result.future[i])
			continue;
		if (use_watermark && had_max)
		{
			AttrAdvSettings s;

			settings(settings_arg, in->advertiser_id, &s);
			if (in->time_us < max_before - s.lateness_us)
			{
				e->result.late[i] = true;
				continue;
			}
		}
		see_time(e, in->time_us);
		if (!relevant(in))
			continue;
		k = key_get(e, in->user_id, in->user_len, in->advertiser_id);
		(void) key_append(e, k, in);
		if (!k->dirty)
		{
			if (e->ndirty == e->dirty_cap)
			{
				size_t		cap = e->dirty_cap ? e->dirty_cap * 2 : 256;

				e->dirty = e_grow(e, e->dirty, sizeof(Key *) * e->dirty_cap, sizeof(Key *) * cap);
				e->dirty_cap = cap;
			}
			e->dirty[e->ndirty++] = k;
			k->dirty = true;
			k->dirty_from = in->time_us;
		}
		else if (in->time_us < k->dirty_from)
			k->dirty_from = in->time_us;
	}

	for (i = 0; i < e->ndirty; i++)
	{
		Key		   *k = e->dirty[i];
		AttrAdvSettings s;

		settings(settings_arg, k->adv, &s);
		key_reevaluate(e, k, &s.windows);
		k->dirty = false;
	}
	return &e->result;
}

size_t
ae_evict(AttrEngine *e, AttrSettingsFn settings, void *settings_arg)
{
	size_t		dropped = 0;
	size_t		i;
	size_t		nslots;

	if (!e->has_max)
		return 0;
	arena_reset(e);
	e->result.ndeltas = 0;
	for (i = 0; i < e->nslots; i++)
	{
		Key		   *k = e->slots[i];
		AttrAdvSettings s;
		int64_t		horizon;
		int			j,
					kept = 0;

		e_work(e);
		if (k == NULL)
			continue;
		settings(settings_arg, k->adv, &s);
		horizon = e->max_time - s.lateness_us - s.windows.rolling_us;
		for (j = 0; j < k->n; j++)
		{
			if (k->ev[j].time_us < horizon)
			{
				event_free(e, k, j);
				dropped++;
				continue;
			}
			if (kept != j)
			{
				k->ev[kept] = k->ev[j];
				k->cred[kept] = k->cred[j];
			}
			kept++;
		}
		k->n = kept;
		if (kept == 0)
		{
			key_free(e, k);
			e->slots[i] = NULL;
			e->nkeys--;
		}
	}
	e->nevents -= dropped;
	/* re-place the survivors: removing from linear probing breaks chains */
	nslots = 1024;
	while (e->nkeys * 4 > nslots * 3 / 2)
		nslots *= 2;
	slots_rebuild(e, nslots);
	return dropped;
}

void
ae_observe_time(AttrEngine *e, int64_t t)
{
	see_time(e, t);
}

bool
ae_max_time(const AttrEngine *e, int64_t *max_time_us)
{
	*max_time_us = e->max_time;
	return e->has_max;
}

size_t
ae_key_count(const AttrEngine *e)
{
	return e->nkeys;
}

size_t
ae_event_count(const AttrEngine *e)
{
	return e->nevents;
}

size_t
ae_memory(const AttrEngine *e)
{
	return e->memory + e->arena.bytes + attr_scratch_memory(e->scratch);
}

bool
ae_lookup_credit(const AttrEngine *e, const char *user_id, uint32_t user_len,
				 int64_t advertiser_id, const char *conversion_id, AttrStored *out)
{
	size_t		slot;
	Key		   *k = key_find(e, user_id, user_len, advertiser_id,
							 key_hash(user_id, user_len, advertiser_id), &slot);
	int			i;

	for (i = 0; k != NULL && i < k->n; i++)
		if (k->ev[i].type == FEAT_CN && strcmp(k->ev[i].event_id, conversion_id) == 0 &&
			k->cred[i].known)
		{
			*out = k->cred[i].s;
			return true;
		}
	return false;
}
