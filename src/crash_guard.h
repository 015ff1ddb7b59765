/*
 * crash_guard.h - the ingest worker's note of the message it is decoding,
 * kept in a file that outlives the process (crash_guard.c): a message
 * whose decoding killed the process (a crash, or memory running out) is
 * dead-lettered by the next worker instead of killing it again.
 */
#ifndef PROPENSITY_CRASH_GUARD_H
#define PROPENSITY_CRASH_GUARD_H

#include "postgres.h"

/*
 * Open (creating it) this database's guard file; called once by the
 * worker.  A message found noted there was being decoded when the last
 * worker died: it becomes the poisoned message, logged here.
 */
extern void prop_guard_open(Oid dboid);

/* Note the message about to be decoded; forget it once decoded. */
extern void prop_guard_enter(const char *group, const char *topic, int32 partition, int64 offset);
extern void prop_guard_leave(void);

/*
 * True for the poisoned message (once: it is then forgotten), which the
 * caller dead-letters without decoding it.
 */
extern bool prop_guard_poisoned(const char *group, const char *topic, int32 partition, int64 offset);

/* The guard file's path (for the documentation and tests): DataDir/pg_propensity/guard.<dboid> */
#define GUARD_DIR "pg_propensity"

#endif
