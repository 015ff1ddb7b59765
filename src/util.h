/*
 * util.h - what every room of the glue uses (util.c): argument readers
 * that raise the documented errors, search_path pinning, the core's
 * allocator and interrupt check, subtransactions, arrays and prepared SPI
 * plans.  It depends on no other room.
 */
#ifndef PROPENSITY_UTIL_H
#define PROPENSITY_UTIL_H

#include "postgres.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/timestamp.h"

#include "core/core_alloc.h"
#include "core/features.h"

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
 * A plan prepared once per session and kept in *slot (SPI connected):
 * prop_plan() prepares it on first use, prop_plan_run() runs it and raises
 * an error unless SPI returns expect, prop_plan_forget() frees it so that
 * the next use prepares it again (the types it was prepared for changed).
 */
extern SPIPlanPtr prop_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types);
extern void prop_plan_run(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types,
						  Datum *values, const char *nulls, int expect);
extern void prop_plan_forget(SPIPlanPtr *slot);

#endif
