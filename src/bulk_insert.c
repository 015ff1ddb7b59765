/*
 * bulk_insert.c - decoded events into propensity.events through COPY's
 * own machinery (binary format from memory, partition routing and
 * multi-insert), the worker's fast path.  The caller falls back to INSERT
 * ... ON CONFLICT when a row was already stored.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "libpq/pqformat.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "decode.h"

/* the COPY data source: CopyFrom's callback has no argument of its own */
static StringInfoData copy_data;
static int	copy_pos;

static int
copy_source(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, copy_data.len - copy_pos);

	memcpy(outbuf, copy_data.data + copy_pos, n);
	copy_pos += n;
	return n;
}

static void
send_text(StringInfo buf, Datum d)
{
	text	   *t = DatumGetTextPP(d);

	pq_sendint32(buf, VARSIZE_ANY_EXHDR(t));
	pq_sendbytes(buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* binary COPY format: header, then per row the field count and each field */
static void
build_copy_data(StringInfo buf, const EventRow *rows, int n)
{
	static const char signature[11] = "PGCOPY\n\377\r\n\0";
	int			i;
	int			k;

	appendBinaryStringInfo(buf, signature, 11);
	pq_sendint32(buf, 0);		/* flags */
	pq_sendint32(buf, 0);		/* header extension */
	for (i = 0; i < n; i++)
	{
		const EventRow *r = &rows[i];

		pq_sendint16(buf, EVENT_NATTS);
		for (k = 0; k < EVENT_NATTS; k++)
		{
			if (r->nulls[k])
			{
				pq_sendint32(buf, -1);
				continue;
			}
			switch (k)
			{
				case EV_TIME:
				case EV_ADVERTISER:
				case EV_CAMPAIGN:
				case EV_PIXEL:
					pq_sendint32(buf, 8);
					pq_sendint64(buf, DatumGetInt64(r->values[k]));
					break;
				case EV_QUANTITY:
					pq_sendint32(buf, 4);
					pq_sendint32(buf, DatumGetInt32(r->values[k]));
					break;
				case EV_REVENUE:
					pq_sendint32(buf, 8);
					pq_sendfloat8(buf, DatumGetFloat8(r->values[k]));
					break;
				default:
					send_text(buf, r->values[k]);
					break;
			}
		}
	}
	pq_sendint16(buf, -1);		/* trailer */
}

uint64
prop_copy_events(const EventRow *rows, int n)
{
	Oid			relid = get_relname_relid("events", get_namespace_oid("propensity", false));
	Relation	rel;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	CopyFromState cstate;
	uint64		stored;
	int			k;

	if (!OidIsValid(relid))
		elog(ERROR, "table propensity.events does not exist");
	initStringInfo(&copy_data);
	build_copy_data(&copy_data, rows, n);
	copy_pos = 0;

	rel = table_open(relid, RowExclusiveLock);
	pstate = make_parsestate(NULL);
	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	nsitem->p_rte->requiredPerms = ACL_INSERT;
	for (k = 1; k <= EVENT_NATTS; k++)
		nsitem->p_rte->insertedCols = bms_add_member(nsitem->p_rte->insertedCols,
													 k - FirstLowInvalidHeapAttributeNumber);
	ExecCheckRTPerms(pstate->p_rtable, true);
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_source, NIL,
						   list_make1(makeDefElem("format", (Node *) makeString("binary"), -1)));
	stored = CopyFrom(cstate);
	EndCopyFrom(cstate);
	table_close(rel, NoLock);
	free_parsestate(pstate);
	pfree(copy_data.data);
	copy_data.data = NULL;
	return stored;
}
