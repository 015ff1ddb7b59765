/*
 * source_kafka.c - Apache Kafka as a source (source.h), through librdkafka.
 *
 * Offsets are authoritative in PostgreSQL: propensity.kafka_offsets holds,
 * per partition, the offset of the next message to store, written by the
 * commit step in the transaction that stores the batch's events.  The
 * consumer never joins a consumer group: it is assigned its partitions by
 * hand (rd_kafka_assign) at the stored offsets, on its first read, after
 * any failed batch (which read past what was stored), when the offsets
 * were reset or set by hand, and when the topic gained partitions.
 *
 * A partition is consumed by one process at a time, enforced by a lock on
 * (database, source, partition): the worker holds the locks of its share
 * of the partitions (p mod propensity.kafka_workers = its number) as
 * session locks across its batches, consume_kafka() by hand takes the
 * free ones for its transaction, and neither reads a partition whose lock
 * it does not hold.  The commit step checks besides that each partition's
 * stored offset is still the one the batch started from, and the source's
 * offsets_epoch still the one it was positioned at: a batch that lost that
 * race rolls back instead of storing a message twice.
 * A partition without a stored offset starts at the source's start_from
 * (earliest, latest, or the first message at or after a time, by
 * offsets-for-times), resolved once and stored, so that a restart before
 * the first batch cannot move it; a partition that appears later starts at
 * its beginning.
 *
 * librdkafka's callbacks (errors, logs) are served by our own polls in this
 * thread (log.queue, poll_set_consumer) and only copy text into the
 * consumer: nothing is raised from inside librdkafka.  Property values are
 * never printed.
 */
#include "postgres.h"

#include <pthread.h>
#include <librdkafka/rdkafka.h>

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "source.h"
#include "source_kafka.h"
#include "util.h"

#define KAFKA_TEXT_LEN 512
#define MAX_CONSUMERS 64
/* how often a consumer checks the topic's partition count */
#define METADATA_CHECK_MS 30000
/* how often a consumer missing a partition of its share tries to take it */
#define OWNERSHIP_RETRY_MS 1000

/*
 * pg_locks.objsubid of the partition locks (locktype advisory, classid the
 * hashtext() of the source's name, objid the partition); the advisory lock
 * functions use 1 and 2, so no user's advisory lock is one of these.
 */
#define PARTITION_LOCK_KIND 19280

int			propensity_kafka_timeout = 5000;	/* ms */

void
prop_source_kafka_init(void)
{
	DefineCustomIntVariable("propensity.kafka_timeout",
							"How long a Kafka source waits for the brokers' metadata and offsets.",
							"Bounds each request made while positioning a consumer; a source whose brokers do not answer in time records the error and is retried later.",
							&propensity_kafka_timeout, 5000, 100, 60000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
}

typedef struct KafkaConsumer
{
	char	   *source;			/* malloc'd */
	char	   *fingerprint;	/* malloc'd: the settings it was made with */
	char		topic[256];
	rd_kafka_t *rk;
	bool		positioned;
	TimestampTz positioned_at;
	int64		epoch;			/* kafka_sources.offsets_epoch positioned at */
	int			share_index;	/* consumes the partitions p with */
	int			share_count;	/* p % share_count == share_index */
	bool		session_locks;	/* the worker: partition locks outlive transactions */
	bool		incomplete;		/* a partition of its share is locked by another process */
	int			nowned;			/* entries of owned */
	bool	   *owned;			/* malloc'd, per partition: its lock is held here */
	int			nparts;
	int64	   *next;			/* malloc'd, per partition: the next offset to read */
	int64	   *hw_written;		/* high watermark last written */
	bool		commit_group;	/* commit the offsets to the Kafka group (kafka_group) */
	int64	   *group_committed;	/* offsets last committed to it */
	TimestampTz metadata_at;
	pthread_mutex_t lock;		/* error and log may be written by librdkafka's threads */
	char		error[KAFKA_TEXT_LEN];	/* the last error reported, "" none */
	char		log[KAFKA_TEXT_LEN];	/* the last warning logged, "" none */
	TimestampTz log_emitted;
} KafkaConsumer;

static KafkaConsumer *consumers[MAX_CONSUMERS];

/* ---- librdkafka's callbacks: copy text, nothing else ---- */

static void
kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	KafkaConsumer *kc = opaque;

	pthread_mutex_lock(&kc->lock);
	snprintf(kc->error, sizeof(kc->error), "%s: %s",
			 rd_kafka_err2name((rd_kafka_resp_err_t) err), reason);
	pthread_mutex_unlock(&kc->lock);
}

static void
kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	KafkaConsumer *kc = rd_kafka_opaque(rk);

	if (level > 4 || kc == NULL)
		return;					/* notices and debug stay in librdkafka */
	pthread_mutex_lock(&kc->lock);
	snprintf(kc->log, sizeof(kc->log), "%s: %s", fac, buf);
	pthread_mutex_unlock(&kc->lock);
}

/* Take the error noted since the last call, into out ("" none). */
static void
take_error(KafkaConsumer *kc, char *out)
{
	pthread_mutex_lock(&kc->lock);
	strlcpy(out, kc->error, KAFKA_TEXT_LEN);
	kc->error[0] = '\0';
	pthread_mutex_unlock(&kc->lock);
}

/* librdkafka's warnings and errors go to the server log, one per 10 s. */
static void
emit_log(KafkaConsumer *kc)
{
	char		text[KAFKA_TEXT_LEN];
	TimestampTz now = GetCurrentTimestamp();

	pthread_mutex_lock(&kc->lock);
	strlcpy(text, kc->log, sizeof(text));
	kc->log[0] = '\0';
	pthread_mutex_unlock(&kc->lock);
	if (text[0] == '\0' || !TimestampDifferenceExceeds(kc->log_emitted, now, 10000))
		return;
	kc->log_emitted = now;
	ereport(LOG, (errmsg("propensity Kafka source \"%s\": %s", kc->source, text)));
}

/* ---- properties ---- */

/*
 * Properties a source may not set: those the product sets itself (the
 * brokers come from the source, offsets are never committed or stored by
 * librdkafka), and those that would run a command or load a library into
 * the server.
 */
static const char *const reserved_properties[] = {
	"bootstrap.servers", "metadata.broker.list", "group.id", "group.instance.id",
	"enable.auto.commit", "enable.auto.offset.store", "auto.commit.enable",
	"auto.commit.interval.ms", "enable.partition.eof", "log.queue",
	"plugin.library.paths", "ssl.engine.location", "sasl.kerberos.kinit.cmd",
	"interceptors"
};

static bool
reserved(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(reserved_properties); i++)
		if (pg_strcasecmp(name, reserved_properties[i]) == 0)
			return true;
	return false;
}

/* Set one property on conf, or raise an error that does not show its value. */
static void
set_property(rd_kafka_conf_t *conf, const char *name, const char *value, bool user)
{
	char		errstr[KAFKA_TEXT_LEN];
	rd_kafka_conf_res_t r;

	if (user && reserved(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("librdkafka property \"%s\" cannot be set on a Kafka source", name),
				 errdetail("The product sets it itself, or it would run a command or load a library in the server.")));
	r = rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr));
	if (r == RD_KAFKA_CONF_UNKNOWN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown librdkafka property \"%s\"", name),
				 errhint("See librdkafka's CONFIGURATION.md for the consumer properties.")));
	if (r != RD_KAFKA_CONF_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for librdkafka property \"%s\"", name),
				 errdetail("The value is not shown, since it may be a secret.")));
}

/* Set every property of the object props on conf. */
static void
check_all(rd_kafka_conf_t *conf, Jsonb *props)
{
	JsonbIterator *it = JsonbIteratorInit(&props->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *name = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			name = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
		{
			char	   *value;

			if (v.type == jbvString)
				value = pnstrdup(v.val.string.val, v.val.string.len);
			else if (v.type == jbvNumeric)
				value = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
			else if (v.type == jbvBool)
				value = v.val.boolean ? "true" : "false";
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("the value of librdkafka property \"%s\" must be a string, number or boolean", name)));
			set_property(conf, name, value, true);
		}
	}
}

/* kafka_check_properties(jsonb): every key a settable property, every value a scalar */
PG_FUNCTION_INFO_V1(propensity_kafka_check_properties);
Datum
propensity_kafka_check_properties(PG_FUNCTION_ARGS)
{
	Jsonb	   *props;
	rd_kafka_conf_t *conf;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	props = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_OBJECT(props))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("Kafka source properties must be a JSON object of librdkafka property names and values")));
	conf = rd_kafka_conf_new();
	PG_TRY();
	{
		check_all(conf, props);
	}
	PG_FINALLY();
	{
		rd_kafka_conf_destroy(conf);
	}
	PG_END_TRY();
	PG_RETURN_VOID();
}

/* ---- consumers ---- */

static void partition_locktag(LOCKTAG *tag, const char *source, int partition);

/* Give up the locks of the partitions this process consumes (session locks only). */
static void
release_partitions(KafkaConsumer *kc)
{
	int			p;

	for (p = 0; p < kc->nowned; p++)
		if (kc->owned[p])
		{
			LOCKTAG		tag;

			partition_locktag(&tag, kc->source, p);
			if (kc->session_locks)
				LockRelease(&tag, ExclusiveLock, true);
			kc->owned[p] = false;
		}
}

static void
consumer_close(KafkaConsumer *kc)
{
	release_partitions(kc);
	if (kc->rk != NULL)
	{
		(void) rd_kafka_assign(kc->rk, NULL);
		rd_kafka_consumer_close(kc->rk);
		rd_kafka_destroy(kc->rk);
		kc->rk = NULL;
	}
	free(kc->fingerprint);
	kc->fingerprint = NULL;
	free(kc->next);
	kc->next = NULL;
	free(kc->hw_written);
	kc->hw_written = NULL;
	free(kc->group_committed);
	kc->group_committed = NULL;
	kc->positioned = false;
	kc->nparts = 0;
}

static void
consumer_free(KafkaConsumer *kc)
{
	consumer_close(kc);
	free(kc->owned);
	pthread_mutex_destroy(&kc->lock);
	free(kc->source);
	free(kc);
}

/*
 * A consumer of source for share_count processes, this one number
 * share_index among them; session_locks: it holds its partitions across
 * transactions (the worker), else for the caller's transaction only.
 */
static KafkaConsumer *
consumer_new(const char *source, int share_index, int share_count, bool session_locks)
{
	KafkaConsumer *kc = calloc(1, sizeof(KafkaConsumer));

	if (kc == NULL || (kc->source = strdup(source)) == NULL)
	{
		free(kc);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	pthread_mutex_init(&kc->lock, NULL);
	kc->share_index = share_index;
	kc->share_count = share_count;
	kc->session_locks = session_locks;
	return kc;
}

/* ---- which partitions this process consumes ---- */

static void
partition_locktag(LOCKTAG *tag, const char *source, int partition)
{
	/* hashtext(source): create_kafka_source() refuses two sources with one hash */
	uint32		h = hash_bytes((const unsigned char *) source, (int) strlen(source));

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, h, (uint32) partition, PARTITION_LOCK_KIND);
}

/*
 * Hold the locks of the partitions of this process's share of nparts, and
 * only those: the others are let go (between batches, when nothing read
 * is uncommitted) and a partition locked by another process is left to it
 * for now (kc->incomplete).
 */
static void
own_partitions(KafkaConsumer *kc, int nparts)
{
	int			p;

	if (nparts > kc->nowned)
	{
		bool	   *owned = realloc(kc->owned, sizeof(bool) * nparts);

		if (owned == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		memset(owned + kc->nowned, 0, sizeof(bool) * (nparts - kc->nowned));
		kc->owned = owned;
		kc->nowned = nparts;
	}
	kc->incomplete = false;
	for (p = 0; p < kc->nowned; p++)
	{
		bool		mine = p < nparts && p % kc->share_count == kc->share_index;
		LOCKTAG		tag;

		if (mine == kc->owned[p])
			continue;
		partition_locktag(&tag, kc->source, p);
		if (!mine)
		{
			if (kc->session_locks)
				LockRelease(&tag, ExclusiveLock, true);
			kc->owned[p] = false;
		}
		else if (LockAcquire(&tag, ExclusiveLock, kc->session_locks, true) != LOCKACQUIRE_NOT_AVAIL)
			kc->owned[p] = true;
		else
			kc->incomplete = true;
	}
}

/* The settings of a source as read from its rows (SPI memory). */
typedef struct SourceRow
{
	char	   *bootstrap;
	char	   *topic;
	char	   *start_from;
	char	   *kafka_group;	/* NULL: commit to no Kafka group */
	bool		attribute;
	bool		enabled;
	int64		epoch;
	int			nprops;
	char	  **names;
	char	  **values;
	char	   *fingerprint;
} SourceRow;

/*
 * Lock the source's row against its drop (FOR KEY SHARE; SKIP LOCKED:
 * false while it is being dropped) and read it with its properties.
 * Processes consuming other partitions of the source read it alongside.
 */
static bool
read_source(const char *source, SourceRow *row)
{
	Oid			type = TEXTOID;
	Datum		arg = CStringGetTextDatum(source);
	bool		isnull;
	StringInfoData fp;
	uint64		i;

	if (SPI_execute_with_args("SELECT bootstrap_servers, topic, start_from, attribute, enabled, offsets_epoch,"
							  "       kafka_group"
							  "  FROM propensity.kafka_sources WHERE source = $1"
							  " FOR KEY SHARE SKIP LOCKED", 1, &type, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "Kafka source lookup failed");
	if (SPI_processed == 0)
	{
		SPI_execute_with_args("SELECT 1 FROM propensity.kafka_sources WHERE source = $1",
							  1, &type, &arg, NULL, true, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("Kafka source \"%s\" does not exist", source),
					 errhint("Declare it with propensity.create_kafka_source().")));
		return false;
	}
	row->bootstrap = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	row->topic = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	row->start_from = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	row->attribute = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	row->enabled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	row->epoch = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));
	row->kafka_group = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7);
	if (SPI_execute_with_args("SELECT name, value FROM propensity.kafka_source_properties"
							  " WHERE source = $1 ORDER BY name", 1, &type, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "Kafka source properties lookup failed");
	row->nprops = (int) SPI_processed;
	row->names = palloc(sizeof(char *) * Max(row->nprops, 1));
	row->values = palloc(sizeof(char *) * Max(row->nprops, 1));
	initStringInfo(&fp);
	appendStringInfo(&fp, "%s\n%s\n%s\n", row->bootstrap, row->topic,
					 row->kafka_group != NULL ? row->kafka_group : "");
	for (i = 0; i < SPI_processed; i++)
	{
		row->names[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		row->values[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		appendStringInfo(&fp, "%s=%s\n", row->names[i], row->values[i]);
	}
	row->fingerprint = fp.data;
	return true;
}

/* Make kc's librdkafka consumer from row. */
static void
consumer_open(KafkaConsumer *kc, const SourceRow *row)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[KAFKA_TEXT_LEN];
	int			i;

	PG_TRY();
	{
		/* defaults a source may change */
		set_property(conf, "client.id", "propensity", false);
		/*
		 * a stored offset Kafka no longer holds (retention) is an error in
		 * status, not a silent jump over the lost messages
		 */
		set_property(conf, "auto.offset.reset", "error", false);
		set_property(conf, "queued.max.messages.kbytes", "65536", false);
		set_property(conf, "fetch.wait.max.ms", "100", false);
		for (i = 0; i < row->nprops; i++)
			set_property(conf, row->names[i], row->values[i], true);
		/* what the product needs */
		set_property(conf, "bootstrap.servers", row->bootstrap, false);
		set_property(conf, "group.id",
					 row->kafka_group != NULL ? row->kafka_group : psprintf("propensity.%s", kc->source),
					 false);
		set_property(conf, "enable.auto.commit", "false", false);
		set_property(conf, "enable.auto.offset.store", "false", false);
		set_property(conf, "enable.partition.eof", "false", false);
		set_property(conf, "log.queue", "true", false);
	}
	PG_CATCH();
	{
		rd_kafka_conf_destroy(conf);
		PG_RE_THROW();
	}
	PG_END_TRY();
	rd_kafka_conf_set_opaque(conf, kc);
	rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	kc->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (kc->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("cannot make a Kafka consumer for source \"%s\": %s", kc->source, errstr)));
	}
	rd_kafka_poll_set_consumer(kc->rk);
	(void) rd_kafka_set_log_queue(kc->rk, NULL);
	kc->fingerprint = strdup(row->fingerprint);
	kc->commit_group = row->kafka_group != NULL;
	strlcpy(kc->topic, row->topic, sizeof(kc->topic));
	kc->positioned = false;
	if (kc->fingerprint == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
}

/* The topic's partition count, from the brokers' metadata. */
static int
topic_partitions(KafkaConsumer *kc)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(kc->rk, kc->topic, NULL);
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err;
	int			n;

	if (rkt == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("Kafka topic \"%s\" of source \"%s\" cannot be used", kc->topic, kc->source)));
	err = rd_kafka_metadata(kc->rk, 0, rkt, &md, propensity_kafka_timeout);
	rd_kafka_topic_destroy(rkt);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("cannot read the metadata of Kafka topic \"%s\" (source \"%s\"): %s",
						kc->topic, kc->source, rd_kafka_err2str(err)),
				 errhint("Check that the brokers in bootstrap_servers are reachable; the source is retried.")));
	if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rd_kafka_resp_err_t terr = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;

		rd_kafka_metadata_destroy(md);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("Kafka topic \"%s\" of source \"%s\" is not available: %s",
						kc->topic, kc->source, rd_kafka_err2str(terr)),
				 errhint("Create the topic, or fix the source with propensity.drop_kafka_source() and create_kafka_source().")));
	}
	n = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	kc->metadata_at = GetCurrentTimestamp();
	if (n < 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("Kafka topic \"%s\" of source \"%s\" has no partitions", kc->topic, kc->source)));
	return n;
}

/* Microseconds since the Unix epoch of a start_from time, in milliseconds. */
static int64
start_time_ms(const char *start_from)
{
	TimestampTz t = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(start_from),
															ObjectIdGetDatum(InvalidOid),
															Int32GetDatum(-1)));

	return (t / 1000) + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
}

/* A partition's first and next offsets, asked of its leader. */
static void
watermarks(KafkaConsumer *kc, int32 partition, int64_t *lo, int64_t *hi)
{
	rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(kc->rk, kc->topic, partition, lo, hi,
															   propensity_kafka_timeout);

	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("cannot read the offsets of Kafka topic \"%s\" partition %d: %s",
						kc->topic, partition, rd_kafka_err2str(err)),
				 errhint("Check that the brokers in bootstrap_servers are reachable; the source is retried.")));
}

/*
 * The start offsets of the partitions of list (every one without a stored
 * offset), by start_from; fresh: no partition of the source has one (else
 * the partitions are new, and start at their beginning).
 */
static void
resolve_starts(KafkaConsumer *kc, rd_kafka_topic_partition_list_t *list, const char *start_from,
			   bool fresh)
{
	rd_kafka_resp_err_t err;
	int			i;

	if (fresh && strcmp(start_from, "earliest") != 0 && strcmp(start_from, "latest") != 0)
	{
		int64		ms = start_time_ms(start_from);

		for (i = 0; i < list->cnt; i++)
			list->elems[i].offset = ms;
		err = rd_kafka_offsets_for_times(kc->rk, list, propensity_kafka_timeout);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("cannot look up the offsets of time %s in Kafka topic \"%s\": %s",
							start_from, kc->topic, rd_kafka_err2str(err))));
		/* no message at or after the time: the partition's end */
		for (i = 0; i < list->cnt; i++)
			if (list->elems[i].offset >= 0)
				continue;
			else
			{
				int64_t		lo;
				int64_t		hi;

				watermarks(kc, list->elems[i].partition, &lo, &hi);
				list->elems[i].offset = hi;
			}
		return;
	}
	for (i = 0; i < list->cnt; i++)
	{
		int64_t		lo;
		int64_t		hi;

		watermarks(kc, list->elems[i].partition, &lo, &hi);
		list->elems[i].offset = (fresh && strcmp(start_from, "latest") == 0) ? hi : lo;
	}
}

/* The stored offsets of the source's partitions into stored[nparts] (-1: none); false if none has one. */
static bool
stored_offsets(KafkaConsumer *kc, int nparts, int64 *stored)
{
	Oid			type = TEXTOID;
	Datum		arg = CStringGetTextDatum(kc->source);
	bool		any;
	uint64		i;
	int			p;

	for (p = 0; p < nparts; p++)
		stored[p] = -1;
	if (SPI_execute_with_args("SELECT partition, next_offset FROM propensity.kafka_offsets WHERE source = $1",
							  1, &type, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "Kafka offsets lookup failed");
	any = SPI_processed > 0;
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int			part = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		if (part >= 0 && part < nparts)
			stored[part] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}
	return any;
}

/*
 * Store the start offsets of the partitions without one (every partition
 * of the topic, whoever consumes it, so that start_from applies to all of
 * them once), then read the stored offsets again into stored: another
 * process may have stored its own first.
 */
static void
store_starts(KafkaConsumer *kc, const SourceRow *row, int nparts, int64 *stored, bool fresh)
{
	rd_kafka_topic_partition_list_t *missing = rd_kafka_topic_partition_list_new(nparts);
	int			p;

	for (p = 0; p < nparts; p++)
		if (stored[p] < 0)
			rd_kafka_topic_partition_list_add(missing, kc->topic, p);
	PG_TRY();
	{
		if (missing->cnt > 0)
		{
			Datum	   *pd = palloc(sizeof(Datum) * missing->cnt);
			Datum	   *od = palloc(sizeof(Datum) * missing->cnt);
			Oid			types[3] = {TEXTOID, INT4ARRAYOID, INT8ARRAYOID};
			Datum		args[3];

			resolve_starts(kc, missing, row->start_from, fresh);
			for (p = 0; p < missing->cnt; p++)
			{
				pd[p] = Int32GetDatum(missing->elems[p].partition);
				od[p] = Int64GetDatum(missing->elems[p].offset);
			}
			args[0] = CStringGetTextDatum(kc->source);
			args[1] = prop_array_datum(pd, NULL, missing->cnt, INT4OID);
			args[2] = prop_array_datum(od, NULL, missing->cnt, INT8OID);
			if (SPI_execute_with_args("INSERT INTO propensity.kafka_offsets (source, partition, next_offset)"
									  " SELECT $1, u.p, u.o FROM unnest($2, $3) AS u(p, o)"
									  " ON CONFLICT (source, partition) DO NOTHING",
									  3, types, args, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "Kafka start offsets could not be stored");
			(void) stored_offsets(kc, nparts, stored);
		}
	}
	PG_FINALLY();
	{
		rd_kafka_topic_partition_list_destroy(missing);
	}
	PG_END_TRY();
}

/*
 * Assign the partitions of this process's share whose locks it holds, at
 * their stored offsets, storing the start offsets of those without one
 * first (SPI connected).
 */
static void
position(KafkaConsumer *kc, const SourceRow *row)
{
	int			nparts = topic_partitions(kc);
	int64	   *stored = palloc(sizeof(int64) * nparts);
	rd_kafka_topic_partition_list_t *assign;
	rd_kafka_resp_err_t err;
	bool		fresh;
	int			p;

	own_partitions(kc, nparts);
	fresh = !stored_offsets(kc, nparts, stored);
	store_starts(kc, row, nparts, stored, fresh);
	for (p = 0; p < nparts; p++)
		if (kc->owned[p] && stored[p] < 0)
			elog(ERROR, "the start offset of Kafka topic \"%s\" partition %d was not stored", kc->topic, p);

	assign = rd_kafka_topic_partition_list_new(nparts);
	for (p = 0; p < nparts; p++)
		if (kc->owned[p])
			rd_kafka_topic_partition_list_add(assign, kc->topic, p)->offset = stored[p];
	(void) rd_kafka_assign(kc->rk, NULL);
	err = rd_kafka_assign(kc->rk, assign);
	rd_kafka_topic_partition_list_destroy(assign);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("cannot assign the partitions of Kafka topic \"%s\": %s", kc->topic, rd_kafka_err2str(err))));
	free(kc->next);
	free(kc->hw_written);
	free(kc->group_committed);
	kc->next = malloc(sizeof(int64) * nparts);
	kc->hw_written = malloc(sizeof(int64) * nparts);
	kc->group_committed = malloc(sizeof(int64) * nparts);
	if (kc->next == NULL || kc->hw_written == NULL || kc->group_committed == NULL)
		ereport(FATAL, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	for (p = 0; p < nparts; p++)
	{
		kc->next[p] = stored[p];
		kc->hw_written[p] = -1;
		kc->group_committed[p] = -1;
	}
	kc->nparts = nparts;
	kc->epoch = row->epoch;
	kc->positioned = true;
	kc->positioned_at = GetCurrentTimestamp();
}

/* ---- the Source ---- */

/* Where a read of a Kafka source ended, for its commit. */
typedef struct KafkaPosition
{
	KafkaConsumer *kc;
	int64		epoch;			/* the source's offsets_epoch the consumer was positioned at */
	int64	   *start;			/* per partition: the stored offset the read started from */
	int64	   *last;			/* per partition: the last offset read, -1 none */
	int64	   *count;
	char		error[KAFKA_TEXT_LEN];	/* an error seen during the read */
} KafkaPosition;

typedef struct KafkaRead
{
	KafkaConsumer *kc;
	int			wait_ms;
	bool		fill;			/* read until the limit or wait_ms, not only what is there */
} KafkaRead;

/* One message into m, copied (the caller destroys rkm); false when out of memory. */
static bool
copy_message(const rd_kafka_message_t *rkm, SourceMessage *m)
{
	bytea	   *v = palloc_extended(VARHDRSZ + rkm->len, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	bool		key_ok;

	if (v == NULL)
		return false;
	SET_VARSIZE(v, VARHDRSZ + rkm->len);
	if (rkm->len > 0)
		memcpy(VARDATA(v), rkm->payload, rkm->len);
	m->partition = rkm->partition;
	m->offset = rkm->offset;
	m->value = PointerGetDatum(v);
	/* the key is kept only as text: one that is not valid in the encoding is dropped */
	key_ok = rkm->key != NULL && rkm->key_len < MaxAllocSize - VARHDRSZ &&
		memchr(rkm->key, '\0', rkm->key_len) == NULL &&
		pg_verifymbstr((const char *) rkm->key, (int) rkm->key_len, true);
	m->key_null = true;
	m->key = (Datum) 0;
	if (key_ok)
	{
		text	   *k = palloc_extended(VARHDRSZ + rkm->key_len, MCXT_ALLOC_NO_OOM);

		if (k == NULL)
			return false;
		SET_VARSIZE(k, VARHDRSZ + rkm->key_len);
		memcpy(VARDATA(k), rkm->key, rkm->key_len);
		m->key = PointerGetDatum(k);
		m->key_null = false;
	}
	return true;
}

/*
 * Add one polled message to the read (or note its error), and destroy it;
 * returns the bytes added.  A message from before the position (a stale
 * fetch after a new assignment) is skipped.  Nothing here raises an error
 * before rkm is destroyed (the caller made room in read->msgs).
 */
static int64
take_message(KafkaConsumer *kc, KafkaPosition *pos, SourceRead *read, rd_kafka_message_t *rkm)
{
	int64		bytes = 0;
	bool		ok = true;

	if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		if (rkm->partition >= 0)
			snprintf(pos->error, sizeof(pos->error), "partition %d at offset %lld: %s", (int) rkm->partition,
					 (long long) rkm->offset, rd_kafka_message_errstr(rkm));
		else
			snprintf(pos->error, sizeof(pos->error), "%s", rd_kafka_message_errstr(rkm));
	}
	else if (rkm->partition >= 0 && rkm->partition < kc->nparts &&
			 kc->owned[rkm->partition] && rkm->offset >= kc->next[rkm->partition])
	{
		int			p = rkm->partition;

		ok = copy_message(rkm, &read->msgs[read->n]);
		if (ok)
		{
			read->n++;
			bytes = rkm->len + rkm->key_len;
			kc->next[p] = rkm->offset + 1;
			pos->last[p] = rkm->offset;
			pos->count[p]++;
		}
	}
	rd_kafka_message_destroy(rkm);
	if (!ok)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return bytes;
}

static ConsumeStatus
kafka_read(void *arg, const char *source, const char *topic, int limit, int64 max_bytes,
		   SourceRead *read)
{
	KafkaRead  *kr = arg;
	KafkaConsumer *kc = kr->kc;
	SourceRow	row;
	KafkaPosition *pos;
	TimestampTz deadline;
	int64		bytes = 0;
	int			cap;

	if (!read_source(source, &row))
		return CONSUME_BUSY;
	if (!row.enabled)
		return CONSUME_PAUSED;
	if (kc->rk != NULL && strcmp(kc->fingerprint, row.fingerprint) != 0)
		consumer_close(kc);		/* the settings changed */
	if (kc->rk == NULL)
		consumer_open(kc, &row);
	if (kc->positioned &&
		(kc->epoch != row.epoch ||
		 TimestampDifferenceExceeds(kc->metadata_at, GetCurrentTimestamp(), METADATA_CHECK_MS)))
	{
		/* offsets set by hand, or partitions maybe added */
		if (kc->epoch != row.epoch || topic_partitions(kc) != kc->nparts)
			kc->positioned = false;
	}
	/* a partition of its share was locked by another process: try again */
	if (kc->positioned && kc->incomplete &&
		TimestampDifferenceExceeds(kc->positioned_at, GetCurrentTimestamp(), OWNERSHIP_RETRY_MS))
		kc->positioned = false;
	if (!kc->positioned)
		position(kc, &row);
	read->attribute = row.attribute;
	read->topic = row.topic;

	pos = palloc0(sizeof(KafkaPosition));
	pos->kc = kc;
	pos->epoch = kc->epoch;
	pos->start = palloc(sizeof(int64) * kc->nparts);
	pos->last = palloc(sizeof(int64) * kc->nparts);
	pos->count = palloc0(sizeof(int64) * kc->nparts);
	for (int p = 0; p < kc->nparts; p++)
	{
		pos->start[p] = kc->next[p];
		pos->last[p] = -1;
	}
	read->position = pos;
	cap = Min(limit, 1024);
	read->msgs = palloc(sizeof(SourceMessage) * Max(cap, 1));
	read->n = 0;
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kr->wait_ms);
	while (read->n < limit && bytes < max_bytes)
	{
		rd_kafka_message_t *rkm;
		long		left = 0;

		if (read->n == cap)
		{
			cap = Min(cap * 2, limit);
			read->msgs = repalloc(read->msgs, sizeof(SourceMessage) * cap);
		}
		if (read->n == 0 || kr->fill)
		{
			left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
			left = Min(left, 100);
		}
		rkm = rd_kafka_consumer_poll(kc->rk, (int) left);
		if (rkm == NULL)
		{
			if ((read->n > 0 && !kr->fill) || GetCurrentTimestamp() >= deadline)
				break;
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		bytes += take_message(kc, pos, read, rkm);
	}
	if (pos->error[0] == '\0')
		take_error(kc, pos->error);
	emit_log(kc);
	return CONSUME_OK;
}

/*
 * The counters of the source, and the check that its offsets were neither
 * reset nor set since the consumer was positioned (the row is locked
 * first, as reset_kafka_offsets() and set_kafka_offsets() lock it).
 */
static void
commit_counters(const char *source, const SourceRead *read, const KafkaPosition *pos,
				const ConsumeResult *res)
{
	Oid			types[5] = {TEXTOID, INT8OID, INT8OID, TEXTOID, INT8OID};
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', pos->error[0] ? ' ' : 'n', ' '};

	args[0] = CStringGetTextDatum(source);
	args[1] = Int64GetDatum((int64) read->n);
	args[2] = Int64GetDatum(res->dead_letters);
	args[3] = pos->error[0] ? CStringGetTextDatum(pos->error) : (Datum) 0;
	args[4] = Int64GetDatum(pos->epoch);
	if (SPI_execute_with_args("UPDATE propensity.kafka_sources SET"
							  "  messages = messages + $2, dead_letters = dead_letters + $3,"
							  "  batches = batches + CASE WHEN $2 > 0 THEN 1 ELSE 0 END,"
							  "  last_error = CASE WHEN $4 IS NOT NULL THEN $4"
							  "                    WHEN $2 > 0 THEN NULL ELSE last_error END,"
							  "  last_error_at = CASE WHEN $4 IS NOT NULL THEN clock_timestamp() ELSE last_error_at END,"
							  "  rate = CASE WHEN $2 = 0 THEN rate WHEN last_batch_at IS NULL THEN NULL"
							  "              ELSE 0.7 * coalesce(rate, $2 / greatest(extract(epoch FROM clock_timestamp() - last_batch_at)::float8, 0.001))"
							  "                 + 0.3 * ($2 / greatest(extract(epoch FROM clock_timestamp() - last_batch_at)::float8, 0.001)) END,"
							  "  last_batch_at = CASE WHEN $2 > 0 THEN clock_timestamp() ELSE last_batch_at END"
							  " WHERE source = $1 AND offsets_epoch = $5", 5, types, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "Kafka source update failed");
	if (SPI_processed != 1 && read->n > 0)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("the offsets of Kafka source \"%s\" were reset or set during a batch", source),
				 errdetail("The batch read from the offsets stored before."),
				 errhint("The batch is rolled back; the source goes on from the new offsets.")));
}

static void
kafka_commit(void *arg, const char *source, const char *topic, const SourceRead *read,
			 const ConsumeResult *res)
{
	KafkaPosition *pos = read->position;
	KafkaConsumer *kc = pos->kc;
	Datum	   *pd = palloc(sizeof(Datum) * kc->nparts);
	Datum	   *sd = palloc(sizeof(Datum) * kc->nparts);
	Datum	   *od = palloc(sizeof(Datum) * kc->nparts);
	Datum	   *cd = palloc(sizeof(Datum) * kc->nparts);
	Datum	   *hd = palloc(sizeof(Datum) * kc->nparts);
	bool	   *hnull = palloc(sizeof(bool) * kc->nparts);
	int64	   *hw = palloc(sizeof(int64) * kc->nparts);
	int			np = 0;
	int			p;

	if (read->n > 0 || pos->error[0] != '\0')
		commit_counters(source, read, pos, res);
	for (p = 0; p < kc->nparts; p++)
	{
		int64_t		lo = -1;
		int64_t		hi = -1;

		hw[p] = -1;
		if (!kc->owned[p])
			continue;
		if (rd_kafka_get_watermark_offsets(kc->rk, kc->topic, p, &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR)
			hi = -1;
		hw[p] = hi;
		if (pos->count[p] == 0 && (hi < 0 || hi == kc->hw_written[p]))
			continue;
		pd[np] = Int32GetDatum(p);
		sd[np] = Int64GetDatum(pos->start[p]);
		od[np] = Int64GetDatum(pos->count[p] > 0 ? pos->last[p] + 1 : kc->next[p]);
		cd[np] = Int64GetDatum(pos->count[p]);
		hd[np] = Int64GetDatum(hi);
		hnull[np] = hi < 0;
		np++;
	}
	if (np > 0)
	{
		Oid			types[6] = {TEXTOID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
		Datum		args[6];
		int64		moved = 0;

		args[0] = CStringGetTextDatum(source);
		args[1] = prop_array_datum(pd, NULL, np, INT4OID);
		args[2] = prop_array_datum(sd, NULL, np, INT8OID);
		args[3] = prop_array_datum(od, NULL, np, INT8OID);
		args[4] = prop_array_datum(cd, NULL, np, INT8OID);
		args[5] = prop_array_datum(hd, hnull, np, INT8OID);
		/*
		 * A partition that read messages moves on only from the offset the
		 * read started at: one whose stored offset moved meanwhile was
		 * committed by another process, and the batch must not store its
		 * messages again.
		 */
		if (SPI_execute_with_args("UPDATE propensity.kafka_offsets AS o SET"
								  "   next_offset = CASE WHEN u.n > 0 THEN u.o ELSE o.next_offset END,"
								  "   messages = o.messages + u.n,"
								  "   committed_at = CASE WHEN u.n > 0 THEN clock_timestamp() ELSE o.committed_at END,"
								  "   high_watermark = coalesce(u.h, o.high_watermark)"
								  "  FROM unnest($2, $3, $4, $5, $6) AS u(p, s, o, n, h)"
								  " WHERE o.source = $1 AND o.partition = u.p"
								  "   AND (u.n = 0 OR o.next_offset = u.s)"
								  " RETURNING u.n",
								  6, types, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "Kafka offset commit failed");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)) > 0)
				moved++;
		}
		for (p = 0; p < kc->nparts; p++)
			if (pos->count[p] > 0)
				moved--;
		if (moved != 0)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("a partition of Kafka source \"%s\" was committed by another session during a batch", source),
					 errdetail("Its stored offset is no longer the one the batch started from."),
					 errhint("The batch is rolled back; each partition is consumed by the one process holding its lock (see propensity.kafka_status).")));
	}
	/* noted only once the transaction is known to commit: see prop_kafka_invalidate */
	for (p = 0; p < kc->nparts; p++)
		if (hw[p] >= 0)
			kc->hw_written[p] = hw[p];
}

static ConsumeStatus
consume_with(KafkaConsumer *kc, const char *source, int limit, int wait_ms, bool fill,
			 bool isolate, ConsumeResult *res)
{
	KafkaRead	kr = {kc, wait_ms, fill};
	Source		src = {"kafka", kafka_read, kafka_commit, &kr};

	/* the topic comes from the source's row, read under its lock */
	return prop_source_consume(&src, source, NULL, limit,
							   (int64) propensity_batch_bytes * 1024, isolate, res);
}

static KafkaConsumer **
find_consumer(const char *source)
{
	int			i;

	for (i = 0; i < MAX_CONSUMERS; i++)
		if (consumers[i] != NULL && strcmp(consumers[i]->source, source) == 0)
			return &consumers[i];
	return NULL;
}

ConsumeStatus
prop_kafka_consume_batch(const char *source, int share_index, int share_count, int limit,
						 int wait_ms, bool isolate, ConsumeResult *res)
{
	KafkaConsumer **slot = find_consumer(source);

	if (slot != NULL && ((*slot)->share_index != share_index || (*slot)->share_count != share_count))
	{
		/* propensity.kafka_workers changed: take the new share at the next read */
		(*slot)->share_index = share_index;
		(*slot)->share_count = share_count;
		(*slot)->positioned = false;
	}

	if (slot == NULL)
	{
		int			i;

		for (i = 0; i < MAX_CONSUMERS && consumers[i] != NULL; i++)
			;
		if (i == MAX_CONSUMERS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the ingest worker consumes at most %d Kafka sources", MAX_CONSUMERS)));
		consumers[i] = consumer_new(source, share_index, share_count, true);
		slot = &consumers[i];
	}
	return consume_with(*slot, source, limit, wait_ms, false, isolate, res);
}

void
prop_kafka_commit_group(const char *source)
{
	KafkaConsumer **slot = find_consumer(source);
	KafkaConsumer *kc;
	rd_kafka_topic_partition_list_t *list;
	int			p;

	if (slot == NULL || !(kc = *slot)->commit_group || !kc->positioned)
		return;
	list = rd_kafka_topic_partition_list_new(kc->nparts);
	for (p = 0; p < kc->nparts; p++)
		if (kc->owned[p] && kc->next[p] != kc->group_committed[p])
			rd_kafka_topic_partition_list_add(list, kc->topic, p)->offset = kc->next[p];
	/* asynchronous: its outcome matters to Kafka's lag tools only */
	if (list->cnt > 0 && rd_kafka_commit(kc->rk, list, 1) == RD_KAFKA_RESP_ERR_NO_ERROR)
		for (p = 0; p < list->cnt; p++)
			kc->group_committed[list->elems[p].partition] = list->elems[p].offset;
	rd_kafka_topic_partition_list_destroy(list);
}

bool
prop_kafka_needs_position(const char *source)
{
	KafkaConsumer **slot = find_consumer(source);

	return slot == NULL || !(*slot)->positioned;
}

void
prop_kafka_invalidate(const char *source)
{
	KafkaConsumer **slot = find_consumer(source);
	int			p;

	if (slot == NULL)
		return;
	(*slot)->positioned = false;
	if ((*slot)->hw_written != NULL)
		for (p = 0; p < (*slot)->nparts; p++)
			(*slot)->hw_written[p] = -1;
}

void
prop_kafka_close_others(char **names, int n)
{
	int			i;
	int			j;

	for (i = 0; i < MAX_CONSUMERS; i++)
	{
		bool		keep = false;

		if (consumers[i] == NULL)
			continue;
		for (j = 0; j < n && !keep; j++)
			keep = strcmp(consumers[i]->source, names[j]) == 0;
		if (!keep)
		{
			consumer_free(consumers[i]);
			consumers[i] = NULL;
		}
	}
}

void
prop_kafka_record_error(const char *source, const char *message)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	int			nest = prop_pin_search_path();

	SPI_connect();
	args[0] = CStringGetTextDatum(source);
	args[1] = CStringGetTextDatum(message);
	SPI_execute_with_args("UPDATE propensity.kafka_sources SET last_error = $2, last_error_at = now()"
						  " WHERE source = $1", 2, types, args, NULL, false, 0);
	SPI_finish();
	prop_restore_search_path(nest);
}

/* consume_kafka(source, max_messages, wait) -> (messages, events, dead_letters) */
PG_FUNCTION_INFO_V1(propensity_consume_kafka);
Datum
propensity_consume_kafka(PG_FUNCTION_ARGS)
{
	char	   *source;
	volatile int limit = propensity_batch_size;
	volatile int wait_ms = 1000;
	KafkaConsumer *volatile kc;
	ConsumeResult res;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("source must not be null")));
	source = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!PG_ARGISNULL(1))
	{
		limit = PG_GETARG_INT32(1);
		if (limit < 1)
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("max_messages must be at least 1, not %d", limit)));
	}
	if (!PG_ARGISNULL(2))
	{
		Interval   *iv = PG_GETARG_INTERVAL_P(2);
		int64		us = iv->time + (int64) iv->day * USECS_PER_DAY;

		if (iv->month != 0 || us < 0 || us > 3600 * USECS_PER_SEC)
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("wait must be between 0 and 1 hour")));
		wait_ms = (int) (us / 1000);
	}
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "consume_kafka() must return a record");
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("consuming a Kafka source needs READ COMMITTED isolation"),
				 errdetail("A transaction snapshot older than the stored offsets could consume a message twice.")));
	/*
	 * A consumer of this call only: it takes the partitions no other process
	 * holds, for this transaction, positioned from the stored offsets, and
	 * is closed at the end.
	 */
	kc = consumer_new(source, 0, 1, false);
	PG_TRY();
	{
		consume_with(kc, source, limit, wait_ms, true, false, &res);
		if (kc->incomplete)
		{
			int			held = 0;

			for (int p = 0; p < kc->nowned; p++)
				held += kc->owned[p] ? 0 : 1;
			ereport(NOTICE,
					(errmsg("%d of the %d partitions of Kafka source \"%s\" are consumed by another process",
							held, kc->nowned, source),
					 errdetail("This call consumed the others."),
					 errhint("propensity.kafka_status shows the process consuming each partition (worker_pid).")));
		}
	}
	PG_FINALLY();
	{
		consumer_free(kc);
	}
	PG_END_TRY();
	values[0] = Int64GetDatum(res.messages);
	values[1] = Int64GetDatum(res.events);
	values[2] = Int64GetDatum(res.dead_letters);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
