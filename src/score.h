/*
 * score.h - score_all(), the propensity of every user in one pass over the
 * events (score.c).
 */
#ifndef PROPENSITY_SCORE_H
#define PROPENSITY_SCORE_H

/* parallel workers besides the leader; -1: one per spare CPU */
extern int	propensity_batch_workers;

/* Defines the GUCs of this room (from _PG_init). */
extern void prop_score_init(void);

#endif
