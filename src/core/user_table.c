/*
 * user_table.c - the batch-scoring hash table of user_table.h: linear
 * probing over a power-of-two array of slots that carry their accumulators.
 */
#include <string.h>

#include "user_table.h"

#define UT_EMPTY UINT32_MAX
#define UT_ARENA_BLOCK (64 * 1024)
#define UT_MIN_SLOTS 1024

typedef struct UtSlot
{
	uint32_t	hash;
	uint32_t	len;			/* UT_EMPTY for an empty slot */
	union
	{
		char		inline_key[UT_INLINE_KEY];
		const char *ptr;
	}			k;
	double		acc[];			/* nacc accumulators */
} UtSlot;

struct UserTable
{
	CoreAllocator allocator;
	int			nacc;
	size_t		stride;			/* bytes per slot */
	size_t		nslots;			/* power of two */
	size_t		count;
	char	   *slots;
	CoreArena	keys;			/* keys too long to inline */
};

#define SLOT_AT(t, i) ((UtSlot *) ((t)->slots + (i) * (t)->stride))

static char *
alloc_slots(UserTable *t, size_t nslots)
{
	char	   *s = t->allocator.alloc(t->allocator.ctx, nslots * t->stride);
	size_t		i;

	for (i = 0; i < nslots; i++)
		((UtSlot *) (s + i * t->stride))->len = UT_EMPTY;
	return s;
}

UserTable *
ut_create(int nacc, size_t expected_keys, const CoreAllocator *allocator)
{
	UserTable  *t = allocator->alloc(allocator->ctx, sizeof(UserTable));

	memset(t, 0, sizeof(*t));
	t->allocator = *allocator;
	core_arena_init(&t->keys, *allocator, UT_ARENA_BLOCK, UT_ARENA_BLOCK);
	t->nacc = nacc;
	t->stride = sizeof(UtSlot) + (size_t) nacc * sizeof(double);
	t->nslots = UT_MIN_SLOTS;
	while (t->nslots * 3 < expected_keys * 4 + 4)
		t->nslots *= 2;
	t->slots = alloc_slots(t, t->nslots);
	return t;
}

void
ut_destroy(UserTable *t)
{
	if (t == NULL)
		return;
	core_arena_reset(&t->keys);
	t->allocator.free(t->allocator.ctx, t->slots);
	t->allocator.free(t->allocator.ctx, t);
}

/* 64-bit multiply-xorshift over 8-byte words; keys are short ids */
uint32_t
ut_hash(const char *key, uint32_t len)
{
	uint64_t	h = UINT64_C(0x9E3779B97F4A7C15) ^ len;
	uint32_t	i = 0;

	for (; i + 8 <= len; i += 8)
	{
		uint64_t	w;

		memcpy(&w, key + i, 8);
		h = (h ^ w) * UINT64_C(0xBF58476D1CE4E5B9);
		h ^= h >> 31;
	}
	if (i < len)
	{
		uint64_t	w = 0;

		memcpy(&w, key + i, len - i);
		h = (h ^ w) * UINT64_C(0x94D049BB133111EB);
		h ^= h >> 29;
	}
	h *= UINT64_C(0xD6E8FEB86659FD93);
	return (uint32_t) (h >> 32);
}

static const char *
slot_key(const UtSlot *s)
{
	return s->len <= UT_INLINE_KEY ? s->k.inline_key : s->k.ptr;
}

static const char *
arena_copy(UserTable *t, const char *key, uint32_t len)
{
	char	   *p = core_arena_alloc(&t->keys, len, 1);

	memcpy(p, key, len);
	return p;
}

static void
grow(UserTable *t)
{
	size_t		old_n = t->nslots;
	char	   *old = t->slots;
	size_t		mask;
	size_t		i;

	t->nslots = old_n * 2;
	t->slots = alloc_slots(t, t->nslots);
	mask = t->nslots - 1;
	for (i = 0; i < old_n; i++)
	{
		UtSlot	   *s = (UtSlot *) (old + i * t->stride);
		size_t		j;

		if (s->len == UT_EMPTY)
			continue;
		j = s->hash & mask;
		while (SLOT_AT(t, j)->len != UT_EMPTY)
			j = (j + 1) & mask;
		memcpy(SLOT_AT(t, j), s, t->stride);
	}
	t->allocator.free(t->allocator.ctx, old);
}

void
ut_prefetch(const UserTable *t, uint32_t hash)
{
#if defined(__GNUC__)
	__builtin_prefetch(t->slots + (hash & (t->nslots - 1)) * t->stride, 1);
#else
	(void) t;
	(void) hash;
#endif
}

/*
 * Short keys (the common case) are kept zero-padded in the slot and
 * compared as two 64-bit words together with (hash, length), which keeps
 * the probe free of calls and nearly free of branches.
 */
double *
ut_lookup(UserTable *t, const char *key, uint32_t len, uint32_t hash)
{
	size_t		mask = t->nslots - 1;
	size_t		j = hash & mask;
	UtSlot	   *s;

	if (len <= UT_INLINE_KEY)
	{
		char		padded[UT_INLINE_KEY] = {0};
		uint64_t	k0;
		uint64_t	k1;

		memcpy(padded, key, len);
		memcpy(&k0, padded, 8);
		memcpy(&k1, padded + 8, 8);
		for (;;)
		{
			uint64_t	s0;
			uint64_t	s1;

			s = SLOT_AT(t, j);
			if (s->len == UT_EMPTY)
				break;
			memcpy(&s0, s->k.inline_key, 8);
			memcpy(&s1, s->k.inline_key + 8, 8);
			if (((s->hash ^ hash) | (s->len ^ len) | (s0 ^ k0) | (s1 ^ k1)) == 0)
				return s->acc;
			j = (j + 1) & mask;
		}
	}
	else
	{
		for (;;)
		{
			s = SLOT_AT(t, j);
			if (s->len == UT_EMPTY)
				break;
			if (s->hash == hash && s->len == len && memcmp(s->k.ptr, key, len) == 0)
				return s->acc;
			j = (j + 1) & mask;
		}
	}

	/* insert; keep the load factor at most 3/4 */
	if ((t->count + 1) * 4 > t->nslots * 3)
	{
		grow(t);
		return ut_lookup(t, key, len, hash);
	}
	s->hash = hash;
	s->len = len;
	if (len <= UT_INLINE_KEY)
	{
		memset(s->k.inline_key, 0, UT_INLINE_KEY);
		memcpy(s->k.inline_key, key, len);
	}
	else
		s->k.ptr = arena_copy(t, key, len);
	memset(s->acc, 0, (size_t) t->nacc * sizeof(double));
	t->count++;
	return s->acc;
}

size_t
ut_count(const UserTable *t)
{
	return t->count;
}

size_t
ut_memory(const UserTable *t)
{
	return sizeof(UserTable) + t->nslots * t->stride + t->keys.bytes;
}

int
ut_next(const UserTable *t, size_t *pos, const char **key, uint32_t *len, const double **acc)
{
	while (*pos < t->nslots)
	{
		const UtSlot *s = SLOT_AT(t, *pos);

		(*pos)++;
		if (s->len != UT_EMPTY)
		{
			*key = slot_key(s);
			*len = s->len;
			*acc = s->acc;
			return 1;
		}
	}
	return 0;
}
