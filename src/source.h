/*
 * source.h - the seam between a source of messages and the pipeline
 * (source.c).  A source (the embedded queue, source_queue.c; later Apache
 * Kafka) implements two steps, both in the caller's transaction: read a
 * batch of messages from a consumer group's position, and commit the
 * position after that batch (source_queue.c, source_kafka.c).  Between them prop_source_consume() does what
 * every source shares: decode each message, store the events through the
 * ingest pipeline, dead-letter what cannot be decoded or stored.  Rows,
 * dead letters and position commit together or not at all, so a message is
 * consumed exactly once.
 */
#ifndef PROPENSITY_SOURCE_H
#define PROPENSITY_SOURCE_H

#include "postgres.h"

/* GUCs of every source's batches */
extern int	propensity_batch_size;	/* messages per batch */
extern int	propensity_batch_bytes; /* message bytes per batch, kB */

/* Defines the GUCs of this room (from _PG_init). */
extern void prop_source_init(void);

typedef enum ConsumeStatus
{
	CONSUME_OK,					/* a batch ran (it may have been empty) */
	CONSUME_BUSY,				/* another session holds the subscription */
	CONSUME_PAUSED				/* the subscription is disabled */
} ConsumeStatus;

typedef struct ConsumeResult
{
	int64		messages;		/* read from the source */
	int64		events;			/* new events stored */
	int64		duplicates;		/* events already stored (redelivered) */
	int64		dead_letters;
	int64		deltas;			/* attribution changelog rows */
} ConsumeResult;

/* One message as a source hands it over. */
typedef struct SourceMessage
{
	int32		partition;
	int64		offset;
	Datum		key;			/* text */
	bool		key_null;
	Datum		value;			/* bytea, as stored (it may be toasted) */
} SourceMessage;

/* What a source's read gave: the messages, in order, and its own position. */
typedef struct SourceRead
{
	SourceMessage *msgs;
	int			n;
	bool		attribute;		/* the subscription runs attribution */
	const char *topic;			/* the topic read, when the caller named none */
	void	   *position;		/* the source's: where the read ended */
} SourceRead;

typedef struct Source
{
	const char *name;

	/*
	 * Lock group's subscription to topic and read up to limit messages (and
	 * about max_bytes of them, at least one) after its position, with SPI
	 * connected; CONSUME_BUSY or CONSUME_PAUSED without reading.
	 */
	ConsumeStatus (*read) (void *arg, const char *group, const char *topic, int limit,
						   int64 max_bytes, SourceRead *read);

	/* Move the position past what read gave (n may be 0), with res's counts. */
	void		(*commit) (void *arg, const char *group, const char *topic, const SourceRead *read,
						   const ConsumeResult *res);

	void	   *arg;			/* the source's own state, passed to both */
} Source;

/*
 * One batch of src for group and topic in the current transaction: read,
 * decode and store, commit.  topic may be NULL when the read names it
 * (a Kafka source: group is the source, its row names the topic).  With isolate, a failure to store the batch's
 * events dead-letters them instead of raising the error (the worker).
 */
extern ConsumeStatus prop_source_consume(const Source *src, const char *group, const char *topic,
										 int limit, int64 max_bytes, bool isolate,
										 ConsumeResult *res);

#endif
