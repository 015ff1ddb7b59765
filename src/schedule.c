/*
 * schedule.c - what the product's pg_cron jobs need of the server:
 * arm_statement_timeout(), which makes a job's statement_timeout hold in a
 * background worker.  The jobs themselves (schedule_rescore(),
 * schedule_dashboard_refresh()) are SQL.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/timeout.h"

/*
 * arm_statement_timeout() returns boolean: make statement_timeout hold in a
 * background worker.  A client backend arms the timer at the start of every
 * statement; a background worker that runs SQL itself (pg_cron with
 * cron.use_background_workers = on) never does, so a job's
 * "SET statement_timeout" would be ignored.  Called first by rescore() and
 * refresh_dashboards(), this arms the timer there, from now, when the
 * setting is on and no timer runs; elsewhere it does nothing.  A timer
 * armed here ends with the transaction, so a worker that goes on to other
 * work is not cancelled later.
 */
static bool timeout_armed = false;
static bool timeout_callback_registered = false;

static void
disarm_at_end(XactEvent event, void *arg)
{
	if (!timeout_armed)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		disable_timeout(STATEMENT_TIMEOUT, false);
		timeout_armed = false;
	}
}

PG_FUNCTION_INFO_V1(propensity_arm_statement_timeout);
Datum
propensity_arm_statement_timeout(PG_FUNCTION_ARGS)
{
	if (!IsBackgroundWorker || StatementTimeout <= 0 || get_timeout_active(STATEMENT_TIMEOUT))
		PG_RETURN_BOOL(false);
	if (!timeout_callback_registered)
	{
		RegisterXactCallback(disarm_at_end, NULL);
		timeout_callback_registered = true;
	}
	enable_timeout_after(STATEMENT_TIMEOUT, StatementTimeout);
	timeout_armed = true;
	PG_RETURN_BOOL(true);
}
