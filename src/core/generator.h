/*
 * generator.h - deterministic synthetic marketing event stream.
 *
 * Stories of events: an impression (IM) that may be clicked (CL, same
 * auction) and may lead to a conversion (CN) firing the impression's pixel,
 * paid searches (PS), and a few organic conversions.  Events come out in
 * arrival order: event-time order except for a chosen fraction that is
 * delivered late by up to max_delay.  The same config gives the same stream.
 */
#ifndef PROPENSITY_GENERATOR_H
#define PROPENSITY_GENERATOR_H

#include <stdbool.h>
#include <stdint.h>

#include "core_alloc.h"
#include "features.h"

typedef struct GenConfig
{
	uint64_t	seed;
	int64_t		n_events;		/* exactly this many events come out */
	int32_t		n_users;
	int32_t		n_advertisers;
	int32_t		campaigns_per_advertiser;
	int64_t		start_us;		/* stream covers about [start, start + duration) */
	int64_t		duration_us;
	double		out_of_order;	/* fraction of events delivered late, 0..1 */
	int64_t		max_delay_us;	/* a late event arrives up to this much later */
} GenConfig;

typedef struct GenEvent
{
	int64_t		seq;			/* creation order; unique within a stream */
	int64_t		arrival_us;		/* when it is delivered (>= time_us) */
	int64_t		time_us;		/* event time, millisecond precision */
	FeatEventType type;
	int32_t		user;			/* 0 .. n_users - 1 */
	int32_t		advertiser_id;	/* 0 = NULL */
	int32_t		campaign_id;	/* 0 = NULL */
	int32_t		pixel_id;		/* 0 = NULL */
	int64_t		auction;		/* -1 = NULL */
	int16_t		publisher;		/* -1 = NULL, likewise below */
	int16_t		creative;
	int16_t		placement;
	int16_t		product;
	int32_t		quantity;		/* 0 = NULL */
	double		revenue;		/* < 0 = NULL */
	bool		late;			/* delivered out of order on purpose */
} GenEvent;

typedef struct GenState GenState;

/* Returns NULL and sets *err when the config is invalid. */
extern GenState *gen_create(const GenConfig *config, const CoreAllocator *allocator,
							const char **err);
/* Next event in arrival order; false when n_events have come out. */
extern bool gen_next(GenState *state, GenEvent *out);
extern void gen_destroy(GenState *state);

/* Text forms of the identifiers; buffers of at least GEN_ID_BUFSIZE bytes. */
#define GEN_ID_BUFSIZE 48

extern void gen_format_event_id(const GenConfig *config, const GenEvent *ev, char *buf);
extern void gen_format_user_id(int32_t user, char *buf);
extern void gen_format_auction_id(const GenConfig *config, int64_t auction, char *buf);

#endif
