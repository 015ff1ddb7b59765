/*
 * worker.c - the ingest worker: a background worker per database that
 * consumes every enabled subscription of the embedded queue in batches (one
 * transaction each, see queue.c) and runs queue maintenance.  The worker of
 * propensity.database starts with the server; worker_start() starts one for
 * the current database.  Shared memory holds each worker's pid and latch,
 * so producers can wake it at commit and worker_stop() can find it.
 */
#include "postgres.h"

#include <malloc.h>

#include "access/xact.h"
#include "catalog/namespace.h"
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
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "propensity.h"
#include "queue.h"
#include "worker.h"

#define MAX_WORKERS 16
#define MAX_SUBSCRIPTIONS 256

char	   *propensity_database = NULL;
char	   *propensity_worker_role = NULL;
int			propensity_poll_interval = 200; /* ms */
int			propensity_maintenance_interval = 60;	/* s */
int			propensity_restart_interval = 5;	/* s */

typedef struct WorkerSlot
{
	Oid			dboid;
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
fill_worker(BackgroundWorker *w, Oid dboid, Oid roleoid)
{
	memset(w, 0, sizeof(*w));
	w->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w->bgw_start_time = BgWorkerStart_RecoveryFinished;
	w->bgw_restart_time = propensity_restart_interval;
	strlcpy(w->bgw_library_name, "propensity", BGW_MAXLEN);
	strlcpy(w->bgw_function_name, "propensity_worker_main", BGW_MAXLEN);
	strlcpy(w->bgw_name, "propensity ingest worker", BGW_MAXLEN);
	strlcpy(w->bgw_type, "propensity ingest worker", BGW_MAXLEN);
	w->bgw_main_arg = ObjectIdGetDatum(dboid);
	memcpy(w->bgw_extra, &roleoid, sizeof(Oid));
}

void
prop_worker_init(void)
{
	DefineCustomStringVariable("propensity.database",
							   "Database whose ingest worker starts with the server.",
							   "Empty: none starts by itself; propensity.worker_start() starts one in the current database.",
							   &propensity_database, "", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("propensity.worker_role",
							   "Role the ingest worker of propensity.database connects as.",
							   "Empty: the bootstrap superuser.",
							   &propensity_worker_role, "", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("propensity.batch_size",
							"Messages the ingest worker consumes per transaction.",
							NULL, &propensity_batch_size, 10000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
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

	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = worker_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = worker_shmem_startup;

	if (propensity_database[0] != '\0')
	{
		BackgroundWorker w;

		fill_worker(&w, InvalidOid, InvalidOid);
		RegisterBackgroundWorker(&w);
	}
}

/* ---- the slot of this database ---- */

static int
find_slot(Oid dboid)
{
	int			i;

	for (i = 0; i < MAX_WORKERS; i++)
		if (shared->slots[i].pid != 0 && shared->slots[i].dboid == dboid)
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
		shared->slots[i].dboid = InvalidOid;
	}
	SpinLockRelease(&shared->mutex);
}

static bool
claim_slot(void)
{
	int			i;
	int			free_slot = -1;

	SpinLockAcquire(&shared->mutex);
	if (find_slot(MyDatabaseId) >= 0)
	{
		SpinLockRelease(&shared->mutex);
		return false;
	}
	for (i = 0; i < MAX_WORKERS && free_slot < 0; i++)
		if (shared->slots[i].pid == 0)
			free_slot = i;
	if (free_slot >= 0)
	{
		shared->slots[free_slot].dboid = MyDatabaseId;
		shared->slots[free_slot].pid = MyProcPid;
		shared->slots[free_slot].latch = MyLatch;
		shared->slots[free_slot].stop_requested = false;
	}
	SpinLockRelease(&shared->mutex);
	if (free_slot < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many propensity ingest workers"),
				 errdetail("At most %d databases can have one.", MAX_WORKERS)));
	before_shmem_exit(release_slot, Int32GetDatum(free_slot));
	return true;
}

/* ---- the main loop ---- */

typedef struct Subscription
{
	char		group[NAMEDATALEN * 2];
	char		topic[128];
	int			isolate;		/* messages still to take one at a time */
	TimestampTz last_error_logged;
} Subscription;

static Subscription subs[MAX_SUBSCRIPTIONS];
static int	nsubs = 0;

/* Read the enabled subscriptions; false if the extension is not installed. */
static bool
load_subscriptions(void)
{
	bool		installed;
	Subscription old[MAX_SUBSCRIPTIONS];
	int			nold = nsubs;
	uint64		i;
	int			j;

	memcpy(old, subs, sizeof(Subscription) * nsubs);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	installed = OidIsValid(get_extension_oid("propensity", true));
	nsubs = 0;
	if (installed)
	{
		int			nest = prop_pin_search_path();

		SPI_connect();
		if (SPI_execute("SELECT consumer_group, topic FROM propensity.subscriptions"
						" WHERE enabled ORDER BY topic, consumer_group", true, MAX_SUBSCRIPTIONS) != SPI_OK_SELECT)
			elog(ERROR, "cannot read propensity.subscriptions");
		for (i = 0; i < SPI_processed; i++)
		{
			Subscription *s = &subs[nsubs++];

			memset(s, 0, sizeof(*s));
			strlcpy(s->group, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1), sizeof(s->group));
			strlcpy(s->topic, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2), sizeof(s->topic));
			/* keep the isolation state across reloads */
			for (j = 0; j < nold; j++)
				if (strcmp(old[j].group, s->group) == 0 && strcmp(old[j].topic, s->topic) == 0)
				{
					s->isolate = old[j].isolate;
					s->last_error_logged = old[j].last_error_logged;
				}
		}
		SPI_finish();
		prop_restore_search_path(nest);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	return installed;
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
	MemoryContext cxt = CurrentMemoryContext;
	ConsumeResult res;
	volatile int64 consumed = 0;
	char		activity[300];

	snprintf(activity, sizeof(activity), "consuming %s for %s", s->topic, s->group);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	PG_TRY();
	{
		ConsumeStatus st = prop_consume_batch(s->group, s->topic,
											  s->isolate > 0 ? 1 : propensity_batch_size,
											  s->isolate > 0, &res);

		PopActiveSnapshot();
		CommitTransactionCommand();
		if (st == CONSUME_OK)
			consumed = res.messages;
		if (s->isolate > 0)
			s->isolate = Max(s->isolate - (int) res.messages, 0);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		bool		was_isolating = s->isolate > 0;
		TimestampTz now;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		now = GetCurrentTimestamp();
		/* a failure that persists message by message is logged every 10 s */
		if (!was_isolating || TimestampDifferenceExceeds(s->last_error_logged, now, 10000))
		{
			ereport(LOG,
					(errmsg("propensity ingest worker: batch of topic \"%s\" for group \"%s\" failed: %s",
							s->topic, s->group, edata->message),
					 errdetail("The next %d messages are consumed one at a time; one that fails again becomes a dead letter.",
							   propensity_batch_size)));
			s->last_error_logged = now;
		}
		s->isolate = propensity_batch_size;
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		prop_record_error(s->group, s->topic, edata->message);
		PopActiveSnapshot();
		CommitTransactionCommand();
		FreeErrorData(edata);

		/*
		 * A failed batch is retried at once, one message at a time; a failure
		 * even then is not about one message (a table gone, say): wait a poll
		 * interval before the next try instead of spinning.
		 */
		consumed = was_isolating ? 0 : 1;
	}
	PG_END_TRY();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return consumed;
}

static void
run_maintenance(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "queue maintenance");
	PG_TRY();
	{
		int			nest = prop_pin_search_path();

		SPI_connect();
		SPI_execute("SELECT count(*) FROM propensity.queue_maintain()", false, 0);
		SPI_finish();
		prop_restore_search_path(nest);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG, (errmsg("propensity ingest worker: queue maintenance failed: %s", edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
propensity_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	Oid			roleoid;
	MemoryContext loop_cxt;
	TimestampTz last_maintenance = 0;
	TimestampTz last_reload = 0;

	memcpy(&roleoid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	if (OidIsValid(dboid))
		BackgroundWorkerInitializeConnectionByOid(dboid, roleoid, 0);
	else
		BackgroundWorkerInitializeConnection(propensity_database,
											 propensity_worker_role[0] ? propensity_worker_role : NULL, 0);
	/*
	 * Every batch allocates and frees a few megabytes; keep them in the heap
	 * instead of fresh mappings, whose page faults cost more than a tenth of
	 * the worker's time.
	 */
	mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
	/* compiling the batch statements costs more than it saves (see README) */
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);
	if (shared == NULL || !claim_slot())
	{
		ereport(LOG, (errmsg("propensity ingest worker: this database already has one; exiting")));
		proc_exit(0);
	}
	ereport(LOG, (errmsg("propensity ingest worker started")));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "propensity worker loop", ALLOCSET_DEFAULT_SIZES);
	while (!ShutdownRequestPending)
	{
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
		MemoryContextSwitchTo(loop_cxt);
		/* subscriptions change rarely: reread them once a second */
		if (TimestampDifferenceExceeds(last_reload, now, 1000))
		{
			installed = load_subscriptions();
			last_reload = now;
		}
		for (i = 0; i < nsubs && !ShutdownRequestPending; i++)
		{
			consumed += run_batch(&subs[i]);
			MemoryContextReset(loop_cxt);
		}
		if (installed && TimestampDifferenceExceeds(last_maintenance, now,
													propensity_maintenance_interval * 1000))
		{
			run_maintenance();
			last_maintenance = now;
		}
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(TopMemoryContext);
		if (consumed > 0)
			continue;			/* more may be waiting */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 installed ? propensity_poll_interval : 10000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
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

		SpinLockAcquire(&shared->mutex);
		i = find_slot(MyDatabaseId);
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
	i = find_slot(MyDatabaseId);
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
		i = find_slot(MyDatabaseId);
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

PG_FUNCTION_INFO_V1(propensity_worker_start);
Datum
propensity_worker_start(PG_FUNCTION_ARGS)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	int			tries;

	require_shared();
	pid = current_pid();
	if (pid != 0)
		PG_RETURN_INT32((int32) pid);
	fill_worker(&w, MyDatabaseId, GetUserId());
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
	/* wait until it has claimed its slot (or found another one there) */
	for (tries = 0; tries < 1000; tries++)
	{
		pid_t		cur = current_pid();

		if (cur != 0)
			PG_RETURN_INT32((int32) cur);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_INT32((int32) pid);
}

PG_FUNCTION_INFO_V1(propensity_worker_stop);
Datum
propensity_worker_stop(PG_FUNCTION_ARGS)
{
	bool		wait = PG_GETARG_BOOL(0);
	pid_t		pid;
	int			tries;

	require_shared();
	SpinLockAcquire(&shared->mutex);
	tries = find_slot(MyDatabaseId);
	pid = tries >= 0 ? shared->slots[tries].pid : 0;
	if (tries >= 0)
		shared->slots[tries].stop_requested = true;
	SpinLockRelease(&shared->mutex);
	if (pid == 0)
		PG_RETURN_BOOL(false);
	if (kill(pid, SIGTERM) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not signal the propensity ingest worker (pid %d): %m", (int) pid)));
	for (tries = 0; wait && tries < 6000; tries++)
	{
		if (current_pid() != pid)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_BOOL(true);
}
