/*
 * user_table.h - open-addressing hash table from a user id (bytes) to a
 * fixed-length vector of feature accumulators, for batch scoring.
 *
 * One slot holds the hash, the key (inline up to UT_INLINE_KEY bytes, else
 * in an arena) and the accumulators, so a lookup usually touches one cache
 * line.  Memory grows with the number of users; ut_memory() reports it so
 * that the caller can bound it.
 */
#ifndef PROPENSITY_USER_TABLE_H
#define PROPENSITY_USER_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "core_alloc.h"

#define UT_INLINE_KEY 16

typedef struct UserTable UserTable;

/* expected_keys sizes the table up front (0: start small and grow) */
extern UserTable *ut_create(int nacc, size_t expected_keys, const CoreAllocator *allocator);
extern void ut_destroy(UserTable *t);

extern uint32_t ut_hash(const char *key, uint32_t len);

/* Accumulators of key, zeroed and inserted when missing. Valid until the next call. */
extern double *ut_lookup(UserTable *t, const char *key, uint32_t len, uint32_t hash);

/* Hint that a lookup of this hash follows soon. */
extern void ut_prefetch(const UserTable *t, uint32_t hash);

extern size_t ut_count(const UserTable *t);
extern size_t ut_memory(const UserTable *t);

/* Iterate: *pos starts at 0; returns 0 when done. */
extern int	ut_next(const UserTable *t, size_t *pos, const char **key, uint32_t *len,
					const double **acc);

#endif
