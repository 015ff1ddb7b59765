/*
 * propensity.c - the module's entry point: _PG_init() has each room
 * define its GUCs, and registers the ingest worker.  Nothing else lives
 * here; see the README's Layout section for the rooms and their order.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "attribution_settings.h"
#include "decode.h"
#include "models.h"
#include "score.h"
#include "source.h"
#include "source_kafka.h"
#include "store_scan.h"
#include "store_partition.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	prop_models_init();
	prop_store_scan_init();
	prop_store_partition_init();
	prop_attr_settings_init();
	prop_score_init();
	prop_decode_init();
	prop_source_init();
	prop_source_kafka_init();
	prop_worker_init();

	MarkGUCPrefixReserved("propensity");
}
