/*
 * worker.c - the ingest worker: a background worker per database that
 * consumes every enabled subscription of the embedded queue and every
 * enabled Kafka source in batches (one transaction each, see source.c) and
 * runs queue maintenance.  The worker of propensity.database starts with
 * the server; worker_start() starts one for the current database.  With
 * propensity.kafka_workers = n > 1 it starts n - 1 more, numbered 1 to
 * n - 1, that consume Kafka sources only: worker k takes the partitions p
 * with p mod n = k, each under a lock (source_kafka.c).  Shared memory
 * holds each worker's pid and latch, so producers can wake the first at
 * commit and worker_stop() can find them all.
 *
 * The worker connects as propensity.worker_role (propensity_worker, which
 * the extension creates with just the rights the pipeline needs) and
 * refuses to run as a superuser.  SIGTERM between batches ends the loop;
 * during a batch it interrupts the batch at its next interrupt check (the
 * transaction rolls back, nothing is lost).  A stop asked by worker_stop()
 * outlives that exit, so the restarted process leaves at once.
 */
#include "postgres.h"

#include <malloc.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "crash_guard.h"
#include "source_kafka.h"
#include "source_queue.h"
#include "util.h"
#include "worker.h"

#define MAX_WORKERS 64
#define MAX_KAFKA_WORKERS 16
#define DEFAULT_WORKER_ROLE "propensity_worker"

char	   *propensity_database = NULL;
char	   *propensity_worker_role = NULL;
int			propensity_poll_interval = 200; /* ms */
int			propensity_maintenance_interval = 60;	/* s */
int			propensity_restart_interval = 5;	/* s */
int			propensity_kafka_workers = 1;

/*
 * A worker of a database: index 0 is the database's worker, 1 to
 * propensity.kafka_workers - 1 the Kafka workers it started.  pid 0 with
 * stop_requested set is a stop that outlived the process (it was
 * interrupted in a batch and exits 1, so the postmaster starts it again):
 * the next process of that database exits.
 */
typedef struct WorkerSlot
{
	Oid			dboid;
	int			index;
	pid_t		pid;
	Latch	   *latch;
	bool		stop_requested; /* by worker_stop(): exit for good */
} WorkerSlot;

typedef struct WorkerShared
{
	slock_t		mutex;
	WorkerSlot	slots[MAX_WORKERS];
} WorkerShared;

static WorkerShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_at_commit = false;
static bool wake_callback_registered = false;
static volatile sig_atomic_t in_transaction = false;
static int	worker_index = 0;	/* this process's number among its database's workers */

PGDLLEXPORT void propensity_worker_main(Datum main_arg);

static void
worker_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WorkerShared)));
}

static void
worker_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("propensity workers", sizeof(WorkerShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(WorkerShared));
		SpinLockInit(&shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
fill_worker(BackgroundWorker *w, Oid dboid, Oid roleoid, int index)
{
	memset(w, 0, sizeof(*w));
	w->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w->bgw_start_time = BgWorkerStart_RecoveryFinished;
	w->bgw_restart_time = propensity_restart_interval;
	strlcpy(w->bgw_library_name, "propensity", BGW_MAXLEN);
	strlcpy(w->bgw_function_name, "propensity_worker_main", BGW_MAXLEN);
	if (index == 0)
		strlcpy(w->bgw_name, "propensity ingest worker", BGW_MAXLEN);
	else
		snprintf(w->bgw_name, BGW_MAXLEN, "propensity ingest worker %d", index);
	strlcpy(w->bgw_type, "propensity ingest worker", BGW_MAXLEN);
	w->bgw_main_arg = ObjectIdGetDatum(dboid);
	memcpy(w->bgw_extra, &roleoid, sizeof(Oid));
	memcpy(w->bgw_extra + sizeof(Oid), &index, sizeof(int));
}

void
prop_worker_init(void)
{
	DefineCustomStringVariable("propensity.database",
							   "Database whose ingest worker starts with the server.",
							   "Empty: none starts by itself; propensity.worker_start() starts one in the current database.",
							   &propensity_database, "", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("propensity.worker_role",
							   "Role the ingest workers connect as.",
							   "It needs LOGIN and must not be a superuser; the extension creates propensity_worker with the rights the pipeline needs.",
							   &propensity_worker_role, DEFAULT_WORKER_ROLE, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("propensity.poll_interval",
							"How long the ingest worker sleeps when the queue is empty.",
							"Producers also wake it when they commit.",
							&propensity_poll_interval, 200, 1, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("propensity.maintenance_interval",
							"How often the ingest worker rotates and truncates topic storage.",
							NULL, &propensity_maintenance_interval, 60, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("propensity.restart_interval",
							"How long the postmaster waits before restarting an ingest worker that failed.",
							NULL, &propensity_restart_interval, 5, 1, 3600,
							PGC_POSTMASTER, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("propensity.kafka_workers",
							"How many ingest workers of a database consume its Kafka sources.",
							"Worker k of n consumes the partitions p with p mod n = k, each partition by one process at a time; the first also consumes the embedded queue.",
							&propensity_kafka_workers, 1, 1, MAX_KAFKA_WORKERS,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = worker_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = worker_shmem_startup;

	if (propensity_database[0] != '\0')
	{
		BackgroundWorker w;

		fill_worker(&w, InvalidOid, InvalidOid, 0);
		RegisterBackgroundWorker(&w);
	}
}

/* ---- the slots of this database ---- */

static int
find_slot(Oid dboid, int index)
{
	int			i;

	for (i = 0; i < MAX_WORKERS; i++)
		if (shared->slots[i].pid != 0 && shared->slots[i].dboid == dboid &&
			shared->slots[i].index == index)
			return i;
	return -1;
}

/* a stop that outlived its process: the slot of dboid's worker 0 with pid 0 */
static int
find_stopped_slot(Oid dboid)
{
	int			i;

	for (i = 0; i < MAX_WORKERS; i++)
		if (shared->slots[i].pid == 0 && shared->slots[i].stop_requested &&
			shared->slots[i].dboid == dboid && shared->slots[i].index == 0)
			return i;
	return -1;
}

static void
release_slot(int code, Datum arg)
{
	int			i = DatumGetInt32(arg);

	SpinLockAcquire(&shared->mutex);
	if (shared->slots[i].pid == MyProcPid)
	{
		shared->slots[i].pid = 0;
		shared->slots[i].latch = NULL;
		/* an interrupted stop of worker 0 keeps the slot, so the next process exits */
		if (!shared->slots[i].stop_requested || code == 0 || shared->slots[i].index > 0)
		{
			shared->slots[i].dboid = InvalidOid;
			shared->slots[i].stop_requested = false;
		}
	}
	SpinLockRelease(&shared->mutex);
}

typedef enum ClaimResult
{
	CLAIM_OK,
	CLAIM_TAKEN,				/* the database has a worker of this number */
	CLAIM_STOPPED				/* worker_stop() asked this database's worker to go */
} ClaimResult;

static ClaimResult
claim_slot(int index)
{
	int			i;
	int			free_slot = -1;

	SpinLockAcquire(&shared->mutex);
	if (find_slot(MyDatabaseId, index) >= 0)
	{
		SpinLockRelease(&shared->mutex);
		return CLAIM_TAKEN;
	}
	/* a Kafka worker runs only beside a running worker 0 */
	i = find_slot(MyDatabaseId, 0);
	if (index > 0 && (i < 0 || shared->slots[i].stop_requested))
	{
		SpinLockRelease(&shared->mutex);
		return CLAIM_STOPPED;
	}
	i = find_stopped_slot(MyDatabaseId);
	if (i >= 0 && index == 0)
	{
		shared->slots[i].dboid = InvalidOid;
		shared->slots[i].stop_requested = false;
		SpinLockRelease(&shared->mutex);
		return CLAIM_STOPPED;
	}
	for (i = 0; i < MAX_WORKERS && free_slot < 0; i++)
		if (shared->slots[i].pid == 0 && !shared->slots[i].stop_requested)
			free_slot = i;
	if (free_slot >= 0)
	{
		shared->slots[free_slot].dboid = MyDatabaseId;
		shared->slots[free_slot].index = index;
		shared->slots[free_slot].pid = MyProcPid;
		shared->slots[free_slot].latch = MyLatch;
		shared->slots[free_slot].stop_requested = false;
	}
	SpinLockRelease(&shared->mutex);
	if (free_slot < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many propensity ingest workers"),
				 errdetail("At most %d can run, over all databases.", MAX_WORKERS)));
	before_shmem_exit(release_slot, Int32GetDatum(free_slot));
	return CLAIM_OK;
}

/* ---- the main loop ---- */

typedef struct Subscription
{
	bool		kafka;			/* a Kafka source (group: its name), else an embedded topic */
	char	   *group;
	char	   *topic;
	int			isolate;		/* messages still to take one at a time */
	TimestampTz last_error_logged;
	TimestampTz retry_at;		/* a Kafka source that failed waits until then */
	int			backoff_ms;		/* and waits longer after each failure */
} Subscription;

/* the enabled subscriptions, in subs_cxt (reloaded once a second) */
static Subscription *subs = NULL;
static int	nsubs = 0;
static MemoryContext subs_cxt = NULL;

/*
 * The extension's version in this database, if installed; the worker runs
 * only against the SQL of its own library's version (PROPENSITY_VERSION,
 * from the control file): tables, grants and functions change between
 * versions, and the update is one ALTER EXTENSION away.
 */
static bool
extension_usable(void)
{
	static TimestampTz last_logged = 0;
	Oid			ext = get_extension_oid("propensity", true);
	char	   *version = NULL;
	bool		isnull;

	if (!OidIsValid(ext))
		return false;
	SPI_connect();
	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'propensity'",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			version = MemoryContextStrdup(TopTransactionContext, TextDatumGetCString(d));
	}
	SPI_finish();
	if (version != NULL && strcmp(version, PROPENSITY_VERSION) == 0)
		return true;
	if (TimestampDifferenceExceeds(last_logged, GetCurrentTimestamp(), 60000))
	{
		ereport(LOG,
				(errmsg("propensity ingest worker: the extension in this database is at version %s, the library at %s; waiting",
						version ? version : "?", PROPENSITY_VERSION),
				 errhint("Run ALTER EXTENSION propensity UPDATE in this database.")));
		last_logged = GetCurrentTimestamp();
	}
	return false;
}

/*
 * Read the enabled subscriptions; false if the extension is not installed
 * here (or not at the library's version).
 */
static bool
load_subscriptions(void)
{
	bool		installed;
	Subscription *old = subs;
	int			nold = nsubs;
	MemoryContext old_cxt = subs_cxt;
	uint64		i;
	int			j;
	char	  **kafka_names = NULL;
	int			nkafka = 0;

	in_transaction = true;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	installed = extension_usable();
	subs_cxt = AllocSetContextCreate(TopMemoryContext, "propensity worker subscriptions",
									 ALLOCSET_SMALL_SIZES);
	subs = NULL;
	nsubs = 0;
	if (installed)
	{
		int			nest = prop_pin_search_path();

		SPI_connect();
		/*
		 * The Kafka workers (worker_index > 0) consume Kafka sources only.
		 * A paused Kafka source keeps its consumer, positioned, to resume
		 * at once.
		 */
		if (SPI_execute(worker_index == 0 ?
						"SELECT false, consumer_group, topic, true FROM propensity.subscriptions"
						" WHERE enabled"
						" UNION ALL SELECT true, source, topic, enabled FROM propensity.kafka_sources"
						" ORDER BY 1, 3, 2" :
						"SELECT true, source, topic, enabled FROM propensity.kafka_sources"
						" ORDER BY 3, 2", true, 0) != SPI_OK_SELECT)
			elog(ERROR, "cannot read propensity.subscriptions");
		subs = MemoryContextAllocZero(subs_cxt, sizeof(Subscription) * Max(SPI_processed, 1));
		kafka_names = MemoryContextAllocZero(subs_cxt, sizeof(char *) * Max(SPI_processed, 1));
		for (i = 0; i < SPI_processed; i++)
		{
			Subscription *s = &subs[nsubs];
			bool		isnull;

			s->kafka = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			s->group = MemoryContextStrdup(subs_cxt, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
			s->topic = MemoryContextStrdup(subs_cxt, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3));
			if (s->kafka)
				kafka_names[nkafka++] = s->group;
			if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull)))
				continue;		/* paused */
			nsubs++;
			/* keep the isolation and retry state across reloads */
			for (j = 0; j < nold; j++)
				if (old[j].kafka == s->kafka && strcmp(old[j].group, s->group) == 0 &&
					strcmp(old[j].topic, s->topic) == 0)
				{
					s->isolate = old[j].isolate;
					s->last_error_logged = old[j].last_error_logged;
					s->retry_at = old[j].retry_at;
					s->backoff_ms = old[j].backoff_ms;
				}
		}
		SPI_finish();
		prop_restore_search_path(nest);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	in_transaction = false;
	/* the consumers of Kafka sources dropped or disabled are closed */
	prop_kafka_close_others(kafka_names, nkafka);
	if (old_cxt != NULL)
		MemoryContextDelete(old_cxt);
	return installed;
}

/*
 * Run fn(arg) in a transaction of its own and commit it; activity, when
 * not NULL, is what pg_stat_activity shows meanwhile.  false when fn (or
 * the commit) raised an error: the transaction is aborted and the error,
 * copied into the caller's memory context, is left in *error for the
 * caller to report and free.
 */
static bool
run_in_transaction(void (*fn) (void *arg), void *arg, const char *activity, ErrorData **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = false;

	in_transaction = true;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (activity != NULL)
		pgstat_report_activity(STATE_RUNNING, activity);
	PG_TRY();
	{
		fn(arg);
		PopActiveSnapshot();
		CommitTransactionCommand();
		ok = true;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		*error = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	in_transaction = false;
	if (activity != NULL)
		pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

typedef struct ErrorCall
{
	Subscription *s;
	const char *message;
} ErrorCall;

static void
record_error_call(void *arg)
{
	ErrorCall  *c = arg;

	if (c->s->kafka)
		prop_kafka_record_error(c->s->group, c->message);
	else
		prop_record_error(c->s->group, c->s->topic, c->message);
}

/*
 * Note a batch's failure on its subscription in a transaction of its own.
 * A failure to note it (the subscription or the table gone, say) is logged
 * (when log_failure: the caller rate-limits) and the worker goes on.
 */
static void
record_error(Subscription *s, const char *message, bool log_failure)
{
	ErrorCall	c = {s, message};
	ErrorData  *edata;

	if (run_in_transaction(record_error_call, &c, NULL, &edata))
		return;
	if (log_failure)
		ereport(LOG,
				(errmsg("propensity ingest worker: could not record the failure of topic \"%s\" for group \"%s\": %s",
						s->topic, s->group, edata->message)));
	FreeErrorData(edata);
}

typedef struct BatchCall
{
	Subscription *s;
	bool		position_only;	/* a Kafka source: position its consumer, read nothing */
	ConsumeStatus status;
	ConsumeResult res;
} BatchCall;

static void
batch_call(void *arg)
{
	BatchCall  *c = arg;

	int			limit = c->s->isolate > 0 ? 1 : propensity_batch_size;

	if (c->s->kafka)
		c->status = prop_kafka_consume_batch(c->s->group, worker_index, propensity_kafka_workers,
											 c->position_only ? 0 : limit, 0,
											 c->s->isolate > 0, &c->res);
	else
		c->status = prop_consume_batch(c->s->group, c->s->topic, limit, c->s->isolate > 0, &c->res);
}

/*
 * One batch of one subscription in its own transaction.  An error aborts
 * the batch, is recorded on the subscription, and makes the next messages
 * go one at a time, so that the one that fails becomes a dead letter and
 * the rest get through.  Returns the messages consumed.
 */
static int64
run_batch(Subscription *s)
{
	BatchCall	c;
	ErrorData  *edata;
	char		activity[300];
	bool		was_isolating = s->isolate > 0;
	TimestampTz now;
	bool		ok;
	bool		log_now;

	memset(&c, 0, sizeof(c));
	c.s = s;
	now = GetCurrentTimestamp();
	if (s->kafka && s->retry_at > now)
		return 0;				/* backing off */
	snprintf(activity, sizeof(activity), "consuming %.120s for %.120s", s->topic, s->group);
	/*
	 * A Kafka consumer is positioned in a transaction of its own, which
	 * stores the start offsets it resolved before any message is read.
	 */
	c.position_only = s->kafka && prop_kafka_needs_position(s->group);
	ok = run_in_transaction(batch_call, &c, activity, &edata);
	if (ok && c.position_only)
	{
		c.position_only = false;
		memset(&c.res, 0, sizeof(c.res));
		ok = run_in_transaction(batch_call, &c, activity, &edata);
	}
	if (ok)
	{
		if (s->kafka && c.res.messages > 0)
			prop_kafka_commit_group(s->group);
		pgstat_report_stat(false);
		if (s->isolate > 0)
			s->isolate = Max(s->isolate - (int) c.res.messages, 0);
		s->backoff_ms = 0;
		return c.status == CONSUME_OK ? c.res.messages : 0;
	}
	if (s->kafka)
	{
		/* it read past what was stored: position it again, after a while */
		prop_kafka_invalidate(s->group);
		s->backoff_ms = s->backoff_ms == 0 ? 1000 : Min(s->backoff_ms * 2, 60000);
		s->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), s->backoff_ms);
	}
	now = GetCurrentTimestamp();
	/* a failure that persists message by message is logged every 10 s */
	log_now = !was_isolating || TimestampDifferenceExceeds(s->last_error_logged, now, 10000);
	if (log_now)
	{
		ereport(LOG,
				(s->kafka ?
				 errmsg("propensity ingest worker: batch of Kafka source \"%s\" failed: %s",
						s->group, edata->message) :
				 errmsg("propensity ingest worker: batch of topic \"%s\" for group \"%s\" failed: %s",
						s->topic, s->group, edata->message),
				 errdetail("The next %d messages are consumed one at a time; one that fails again becomes a dead letter.",
						   propensity_batch_size)));
		s->last_error_logged = now;
	}
	s->isolate = propensity_batch_size;
	record_error(s, edata->message, log_now);
	FreeErrorData(edata);
	pgstat_report_stat(false);

	/*
	 * A failed batch is retried at once, one message at a time; a failure
	 * even then is not about one message (a table gone, say): wait a poll
	 * interval before the next try instead of spinning.
	 */
	return was_isolating ? 0 : 1;
}

static void
maintenance_call(void *arg)
{
	int			nest = prop_pin_search_path();

	SPI_connect();
	SPI_execute("SELECT count(*) FROM propensity.queue_maintain()", false, 0);
	SPI_finish();
	prop_restore_search_path(nest);
}

static void
run_maintenance(void)
{
	ErrorData  *edata;

	if (run_in_transaction(maintenance_call, NULL, "queue maintenance", &edata))
		return;
	ereport(LOG, (errmsg("propensity ingest worker: queue maintenance failed: %s", edata->message)));
	FreeErrorData(edata);
}

/*
 * SIGTERM: between transactions, end the loop (worker_stop() exits 0, the
 * rest 1); inside one, also die at the next interrupt check, as a backend
 * does, so that a long batch cannot hold a shutdown or a stop.
 */
static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	ShutdownRequestPending = true;
	if (in_transaction)
	{
		InterruptPending = true;
		ProcDiePending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/* ---- the Kafka workers, started by worker 0 ---- */

static BackgroundWorkerHandle *kafka_workers[MAX_KAFKA_WORKERS];
static TimestampTz kafka_worker_started[MAX_KAFKA_WORKERS];

/*
 * Worker 0, once a second: start the Kafka workers 1 to
 * propensity.kafka_workers - 1 that do not run (when there are Kafka
 * sources), each at most once per propensity.restart_interval.  Those
 * beyond the count stop by themselves.
 */
static void
start_kafka_workers(bool any_kafka)
{
	TimestampTz now = GetCurrentTimestamp();
	static TimestampTz last_logged = 0;
	Oid			roleoid;
	int			k;

	memcpy(&roleoid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	if (!OidIsValid(roleoid))
		roleoid = GetUserId();
	for (k = 1; k < MAX_KAFKA_WORKERS; k++)
	{
		BackgroundWorker w;
		BackgroundWorkerHandle *handle;
		MemoryContext old;
		pid_t		pid;

		if (kafka_workers[k] != NULL &&
			GetBackgroundWorkerPid(kafka_workers[k], &pid) != BGWH_STOPPED)
			continue;
		if (kafka_workers[k] != NULL)
			pfree(kafka_workers[k]);
		kafka_workers[k] = NULL;
		if (k >= propensity_kafka_workers || !any_kafka ||
			!TimestampDifferenceExceeds(kafka_worker_started[k], now, propensity_restart_interval * 1000))
			continue;
		kafka_worker_started[k] = now;
		fill_worker(&w, MyDatabaseId, roleoid, k);
		/* worker 0 starts it again if it stops */
		w.bgw_restart_time = BGW_NEVER_RESTART;
		old = MemoryContextSwitchTo(TopMemoryContext);
		if (RegisterDynamicBackgroundWorker(&w, &handle))
			kafka_workers[k] = handle;
		else if (TimestampDifferenceExceeds(last_logged, now, 60000))
		{
			ereport(LOG,
					(errmsg("propensity ingest worker: could not start Kafka worker %d of %d",
							k, propensity_kafka_workers),
					 errhint("Raise max_worker_processes; meanwhile the partitions of that worker are not consumed.")));
			last_logged = now;
		}
		MemoryContextSwitchTo(old);
	}
}

/* Worker 0, when it stops: stop the Kafka workers it started. */
static void
stop_kafka_workers(void)
{
	int			k;

	for (k = 1; k < MAX_KAFKA_WORKERS; k++)
		if (kafka_workers[k] != NULL)
			TerminateBackgroundWorker(kafka_workers[k]);
}

/* Whether this Kafka worker should go: beyond the count, or worker 0 gone or stopping. */
static bool
kafka_worker_redundant(void)
{
	int			i;
	bool		gone;

	if (worker_index >= propensity_kafka_workers)
		return true;
	SpinLockAcquire(&shared->mutex);
	i = find_slot(MyDatabaseId, 0);
	gone = i < 0 || shared->slots[i].stop_requested;
	SpinLockRelease(&shared->mutex);
	return gone;
}

static const char *
worker_role_name(void)
{
	return propensity_worker_role != NULL && propensity_worker_role[0] != '\0' ?
		propensity_worker_role : DEFAULT_WORKER_ROLE;
}

void
propensity_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	Oid			roleoid;
	MemoryContext loop_cxt;
	TimestampTz last_maintenance = 0;
	TimestampTz last_reload = 0;
	bool		woken = false;

	memcpy(&roleoid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	memcpy(&worker_index, MyBgworkerEntry->bgw_extra + sizeof(Oid), sizeof(int));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();

	if (OidIsValid(dboid))
		BackgroundWorkerInitializeConnectionByOid(dboid, roleoid, 0);
	else
		BackgroundWorkerInitializeConnection(propensity_database, worker_role_name(), 0);
	if (superuser())
	{
		/* exit 0: the postmaster does not start it again */
		ereport(LOG,
				(errmsg("propensity ingest worker: will not run as superuser \"%s\"",
						GetUserNameFromId(GetUserId(), false)),
				 errhint("Set propensity.worker_role to a role that is not a superuser, such as propensity_worker.")));
		proc_exit(0);
	}
	/*
	 * Every batch allocates and frees a few megabytes; keep them in the heap
	 * instead of fresh mappings, whose page faults cost more than a tenth of
	 * the worker's time.
	 */
	mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
	/* compiling the batch statements costs more than it saves (see README) */
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);
	/* pg_stat_activity tells the workers apart by their names */
	SetConfigOption("application_name", MyBgworkerEntry->bgw_name, PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname(MyBgworkerEntry->bgw_name);
	if (shared == NULL)
		proc_exit(0);
	switch (claim_slot(worker_index))
	{
		case CLAIM_TAKEN:
			ereport(LOG, (errmsg("propensity ingest worker: this database already has one; exiting")));
			proc_exit(0);
			break;
		case CLAIM_STOPPED:
			if (worker_index == 0)
				ereport(LOG, (errmsg("propensity ingest worker stopped by propensity.worker_stop()")));
			proc_exit(0);
			break;
		case CLAIM_OK:
			break;
	}
	prop_guard_open(MyDatabaseId);
	if (worker_index == 0)
		ereport(LOG, (errmsg("propensity ingest worker started")));
	else
		ereport(LOG, (errmsg("propensity Kafka worker %d of %d started", worker_index, propensity_kafka_workers)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "propensity worker loop", ALLOCSET_DEFAULT_SIZES);
	while (!ShutdownRequestPending)
	{
		int			rc;
		int64		consumed = 0;
		TimestampTz now = GetCurrentTimestamp();
		bool		installed = true;
		int			i;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (worker_index > 0 && kafka_worker_redundant())
			break;
		MemoryContextSwitchTo(loop_cxt);
		/*
		 * Subscriptions change rarely: reread them once a second, and soon
		 * after a wake (a source created, altered or resumed wakes it).
		 */
		if (TimestampDifferenceExceeds(last_reload, now, woken ? 100 : 1000))
		{
			installed = load_subscriptions();
			last_reload = now;
			woken = false;
			if (worker_index == 0)
			{
				bool		any_kafka = false;

				for (i = 0; i < nsubs && !any_kafka; i++)
					any_kafka = subs[i].kafka;
				start_kafka_workers(any_kafka);
			}
		}
		for (i = 0; i < nsubs && !ShutdownRequestPending; i++)
		{
			consumed += run_batch(&subs[i]);
			MemoryContextReset(loop_cxt);
		}
		if (installed && worker_index == 0 &&
			TimestampDifferenceExceeds(last_maintenance, now, propensity_maintenance_interval * 1000))
		{
			run_maintenance();
			last_maintenance = now;
		}
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(TopMemoryContext);
		if (consumed > 0)
			continue;			/* more may be waiting */
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   installed ? propensity_poll_interval : 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		woken = (rc & WL_LATCH_SET) != 0;
		if (!installed)
			last_reload = 0;
	}
	/*
	 * Stopped by worker_stop(): exit 0, so the postmaster forgets the worker.
	 * Any other SIGTERM (pg_terminate_backend, DROP DATABASE ... FORCE, a
	 * server shutdown) exits 1: the worker comes back after
	 * propensity.restart_interval unless the server is going down.
	 */
	{
		bool		stop;
		int			i;

		if (worker_index > 0)
		{
			ereport(LOG, (errmsg("propensity Kafka worker %d stopping", worker_index)));
			proc_exit(0);
		}
		stop_kafka_workers();
		SpinLockAcquire(&shared->mutex);
		i = find_slot(MyDatabaseId, 0);
		stop = i >= 0 && shared->slots[i].stop_requested;
		SpinLockRelease(&shared->mutex);
		ereport(LOG, (errmsg("propensity ingest worker stopping%s", stop ? "" : "; it restarts unless the server shuts down")));
		proc_exit(stop ? 0 : 1);
	}
}

/* ---- SQL functions ---- */

static void
require_shared(void)
{
	if (shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("propensity is not in shared_preload_libraries"),
				 errhint("Add propensity to shared_preload_libraries and restart the server; until then, propensity.consume() does the worker's work by hand.")));
}

static pid_t
current_pid(void)
{
	int			i;
	pid_t		pid = 0;

	SpinLockAcquire(&shared->mutex);
	i = find_slot(MyDatabaseId, 0);
	if (i >= 0)
		pid = shared->slots[i].pid;
	SpinLockRelease(&shared->mutex);
	return pid;
}

static void
wake_callback(XactEvent event, void *arg)
{
	int			i;

	if (event == XACT_EVENT_COMMIT && wake_at_commit && shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		i = find_slot(MyDatabaseId, 0);
		if (i >= 0 && shared->slots[i].latch != NULL)
			SetLatch(shared->slots[i].latch);
		SpinLockRelease(&shared->mutex);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_at_commit = false;
}

PG_FUNCTION_INFO_V1(propensity_wake_workers);
Datum
propensity_wake_workers(PG_FUNCTION_ARGS)
{
	if (shared == NULL)
		PG_RETURN_VOID();
	if (!wake_callback_registered)
	{
		RegisterXactCallback(wake_callback, NULL);
		wake_callback_registered = true;
	}
	wake_at_commit = true;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(propensity_worker_pid);
Datum
propensity_worker_pid(PG_FUNCTION_ARGS)
{
	pid_t		pid;

	if (shared == NULL)
		PG_RETURN_NULL();
	pid = current_pid();
	if (pid == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32((int32) pid);
}

/*
 * The role workers connect as: it must exist, be allowed to log in (a
 * background worker's connection is a login in PostgreSQL 15) and not be a
 * superuser.
 */
static Oid
worker_role(void)
{
	const char *name = worker_role_name();
	HeapTuple	tup = SearchSysCache1(AUTHNAME, CStringGetDatum(name));
	Form_pg_authid form;
	Oid			roleoid;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" of propensity.worker_role does not exist", name),
				 errhint("ALTER EXTENSION propensity UPDATE creates propensity_worker, the default.")));
	form = (Form_pg_authid) GETSTRUCT(tup);
	roleoid = form->oid;
	if (form->rolsuper)
	{
		ReleaseSysCache(tup);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the ingest worker will not run as superuser \"%s\"", name),
				 errhint("Set propensity.worker_role to a role that is not a superuser, such as propensity_worker.")));
	}
	if (!form->rolcanlogin)
	{
		ReleaseSysCache(tup);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("role \"%s\" of propensity.worker_role cannot log in", name),
				 errdetail("PostgreSQL 15 lets a background worker connect only as a role with LOGIN."),
				 errhint("ALTER ROLE %s LOGIN; it needs no password.", quote_identifier(name))));
	}
	ReleaseSysCache(tup);
	return roleoid;
}

PG_FUNCTION_INFO_V1(propensity_worker_start);
Datum
propensity_worker_start(PG_FUNCTION_ARGS)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	int			tries;
	int			i;
	Oid			roleoid;

	require_shared();
	pid = current_pid();
	if (pid != 0)
		PG_RETURN_INT32((int32) pid);
	roleoid = worker_role();
	/* a start undoes a stop that outlived its process */
	SpinLockAcquire(&shared->mutex);
	i = find_stopped_slot(MyDatabaseId);
	if (i >= 0)
	{
		shared->slots[i].dboid = InvalidOid;
		shared->slots[i].stop_requested = false;
	}
	SpinLockRelease(&shared->mutex);
	fill_worker(&w, MyDatabaseId, roleoid, 0);
	w.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&w, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not register the propensity ingest worker"),
				 errhint("Raise max_worker_processes.")));
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the propensity ingest worker"),
				 errhint("See the server log.")));
	/*
	 * Wait until it has claimed its slot (or found another one there).  One
	 * that dies before that (it could not connect, say) is not left to be
	 * restarted every propensity.restart_interval.
	 */
	for (tries = 0; tries < 3000; tries++)
	{
		pid_t		cur = current_pid();

		if (cur != 0)
			PG_RETURN_INT32((int32) cur);
		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	TerminateBackgroundWorker(handle);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg("the propensity ingest worker did not start"),
			 errhint("See the server log for why.")));
	PG_RETURN_NULL();
}

/* The live workers of this database (each flagged to stop, with stop): their count. */
static int
database_workers(bool stop, pid_t *pids)
{
	int			i;
	int			n = 0;

	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < MAX_WORKERS; i++)
		if (shared->slots[i].pid != 0 && shared->slots[i].dboid == MyDatabaseId)
		{
			if (stop)
				shared->slots[i].stop_requested = true;
			pids[n++] = shared->slots[i].pid;
		}
	SpinLockRelease(&shared->mutex);
	return n;
}

/*
 * worker_stop(wait) -> true once the database's workers (the worker and
 * its Kafka workers) have stopped (with wait) or were told to (without);
 * false if none ran, or, with a warning, if one was still running after a
 * minute (it stops at its next interrupt check).
 */
PG_FUNCTION_INFO_V1(propensity_worker_stop);
Datum
propensity_worker_stop(PG_FUNCTION_ARGS)
{
	bool		wait = PG_GETARG_BOOL(0);
	pid_t		pids[MAX_WORKERS];
	int			n;
	int			i;
	int			tries;

	require_shared();
	n = database_workers(true, pids);
	if (n == 0)
		PG_RETURN_BOOL(false);
	for (i = 0; i < n; i++)
		if (kill(pids[i], SIGTERM) != 0 && errno != ESRCH)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not signal the propensity ingest worker (pid %d): %m", (int) pids[i])));
	if (!wait)
		PG_RETURN_BOOL(true);
	for (tries = 0; tries < 6000; tries++)
	{
		n = database_workers(false, pids);
		if (n == 0)
			PG_RETURN_BOOL(true);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	ereport(WARNING,
			(errmsg("the propensity ingest worker (pid %d) has not stopped after 60 seconds", (int) pids[0]),
			 errhint("It stops at its next interrupt check; pg_stat_activity shows what it is doing.")));
	PG_RETURN_BOOL(false);
}
