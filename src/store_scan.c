/*
 * store_scan.c - what the bulk reads of the event partitions share
 * (store_scan.h): score_all's scan (score_scan.c) and the attribution scan
 * (attribution_scan.c) each decode their own columns, and both go through
 * here for the checks, the partitions, the columns, the fast path and the
 * classes of users.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "store.h"
#include "store_scan.h"

#define MAX_HASH_CLASSES (1 << 16)

int			propensity_batch_memory = 256 * 1024;
bool		propensity_batch_fast_scan = true;

void
prop_store_scan_init(void)
{
	DefineCustomIntVariable("propensity.batch_memory",
							"Memory score_all may use for its table of users.",
							"Past this, users are split by hash into classes scored in separate passes.",
							&propensity_batch_memory,
							256 * 1024,
							64, MAX_KILOBYTES,
							PGC_USERSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("propensity.batch_fast_scan",
							 "Lets score_all read heap pages directly instead of through tuple slots.",
							 "Off forces the generic path, for comparison and testing; results are the same.",
							 &propensity_batch_fast_scan,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
}

Relation
prop_events_scan_begin(const char *who, const char *hint)
{
	Oid			parent = prop_events_relid();

	if (pg_class_aclcheck(parent, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, "events");
	if (check_enable_rls(parent, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s does not support row-level security on propensity.events", who),
				 errhint("%s", hint)));
	return table_open(parent, AccessShareLock);
}

Relation
prop_event_partition_open(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("partition \"%s\" of propensity.events is not a plain table",
						RelationGetRelationName(rel))));
	return rel;
}

void
prop_event_columns(Relation rel, const char *const *names, const Oid *types, int n,
				   AttrNumber *attnums)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			c;

	for (c = 0; c < n; c++)
	{
		int			i;

		attnums[c] = InvalidAttrNumber;
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), names[c]) == 0 &&
				(types == NULL || att->atttypid == types[c]))
				attnums[c] = att->attnum;
		}
		if (attnums[c] == InvalidAttrNumber)
			elog(ERROR, "partition \"%s\" has no column \"%s\"%s", RelationGetRelationName(rel),
				 names[c], types == NULL ? "" : " of the expected type");
	}
}

bool
prop_heap_in_place(Relation rel, int natts)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	if (!propensity_batch_fast_scan || rel->rd_tableam != GetHeapamTableAmRoutine() ||
		desc->natts < natts)
		return false;
	for (i = 0; i < natts; i++)
		if (TupleDescAttr(desc, i)->atthasmissing)
			return false;
	return true;
}

void
prop_event_read_begin(EventRead *r, Relation rel, int natts)
{
	r->rel = rel;
	r->in_place = prop_heap_in_place(rel, natts);
	r->rows = 0;
	r->page = NULL;
	r->slot = NULL;
	r->nblocks = 0;
	if (r->in_place)
	{
		r->scan = table_beginscan_strat(rel, GetActiveSnapshot(), 0, NULL, true, false);
		r->nblocks = ((HeapScanDesc) r->scan)->rs_nblocks;
	}
	else
	{
		r->slot = table_slot_create(rel, NULL);
		r->scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	}
}

void
prop_event_read_end(EventRead *r)
{
	table_endscan(r->scan);
	if (r->slot != NULL)
		ExecDropSingleTupleTableSlot(r->slot);
	r->scan = NULL;
	r->slot = NULL;
}

void
prop_unknown_event_type(Relation rel, const char *type, uint32 len)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown event type \"%.*s\" in \"%s\"", (int) len, type,
					RelationGetRelationName(rel))));
}

void
prop_hash_class_passes(HashClassPass pass, void *arg, const char *what)
{
	HashClass  *work = palloc(sizeof(HashClass) * (MAX_HASH_CLASSES + 1));
	int			nwork = 0;

	work[nwork++] = (HashClass) {1, 0};
	while (nwork > 0)
	{
		HashClass	cls = work[--nwork];

		if (pass(cls, arg))
			continue;
		if (cls.modulus >= MAX_HASH_CLASSES || nwork + 2 > MAX_HASH_CLASSES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("propensity.batch_memory (%d kB) is too small to %s",
							propensity_batch_memory, what),
					 errhint("Raise propensity.batch_memory.")));
		work[nwork++] = (HashClass) {cls.modulus * 2, cls.residue * 2 + 1};
		work[nwork++] = (HashClass) {cls.modulus * 2, cls.residue * 2};
	}
	pfree(work);
}
