/*
 * propensity.h - what the PostgreSQL glue files share: GUC variables,
 * argument checks that raise the documented errors, and model lookup.
 */
#ifndef PROPENSITY_H
#define PROPENSITY_H

#include "postgres.h"
#include "fmgr.h"
#include "utils/timestamp.h"

#include "core/core_alloc.h"
#include "core/features.h"

/* GUCs, defined in propensity.c */
extern char *propensity_default_model;
extern int	propensity_partition_interval;
extern int	propensity_partition_max_past;	/* minutes, -1 = no limit */
extern int	propensity_partition_max_future;	/* minutes, -1 = no limit */
extern int	propensity_batch_memory;	/* kB */
extern bool propensity_batch_fast_scan;
extern int	propensity_batch_workers;	/* -1: one per spare CPU */

typedef enum PartitionInterval
{
	PARTITION_HOUR,
	PARTITION_DAY,
	PARTITION_WEEK,
	PARTITION_MONTH
} PartitionInterval;

/* Argument readers: each raises a user-facing error on NULL or bad input. */
extern FeatEventType prop_arg_event_type(FunctionCallInfo fcinfo, int argno);
extern int64 prop_arg_time(FunctionCallInfo fcinfo, int argno, const char *what);
extern int64 prop_arg_span(FunctionCallInfo fcinfo, int argno, const char *what);
extern int64 prop_interval_to_us(const Interval *span, const char *what);

/*
 * Pin search_path to pg_catalog around SPI queries (as a function's SET
 * clause does), so that no operator or function of another schema can stand
 * in for a built-in.  An error restores it with the transaction.
 */
extern int	prop_pin_search_path(void);
extern void prop_restore_search_path(int nest_level);

/* A model as loaded from propensity.models. */
typedef struct LoadedModel
{
	int32		model_id;
	int32		version;
	char		name[NAMEDATALEN];
	FeatModel	model;
} LoadedModel;

/*
 * Load the latest version of a model by name (NULL: propensity.default_model)
 * or a model by id.  Raise an error when it does not exist or is invalid.
 */
extern void prop_load_model_by_name(const char *name, LoadedModel *out);
extern void prop_load_model_by_id(int32 model_id, LoadedModel *out);

/*
 * The core's allocator over a memory context (huge allocations allowed;
 * an allocation failure raises the usual out-of-memory error), and its
 * interrupt check, CHECK_FOR_INTERRUPTS().
 */
extern CoreAllocator prop_context_allocator(MemoryContext cxt);
extern const CoreInterrupt prop_core_interrupt;

/*
 * Run fn(arg) in a subtransaction of the current transaction.  true when it
 * returned; false when it raised an error, which is rolled back and, if
 * error is not NULL, copied into *error (in the caller's memory context)
 * for the caller to record, re-throw or free.
 */
struct ErrorData;
extern bool prop_subxact_try(void (*fn) (void *arg), void *arg, struct ErrorData **error);

/* A one-dimensional array Datum of n values (nulls may be NULL). */
extern Datum prop_array_datum(Datum *values, bool *nulls, int n, Oid elemtype);

/*
 * Store a batch of events (an events[] array of type array_type) and, with
 * attribute, run the attribution engine on the new ones, in the caller's
 * transaction.  out[5]: inserted, duplicates, late, conversions evaluated,
 * deltas.  Defined in attribution_engine.c.
 */
struct ArrayType;
extern void prop_ingest(struct ArrayType *batch, Oid array_type, bool attribute, int64 *out);

#endif
