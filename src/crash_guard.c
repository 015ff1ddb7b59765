/*
 * crash_guard.c - the ingest worker notes each message before it decodes
 * it, in a small file mapped into its memory; a plain store into the
 * mapping costs nothing per message and is in the kernel's page cache the
 * moment it is made, so it survives the process however it dies.  When a
 * worker starts and finds a message still noted, the last one died while
 * decoding it: that message is dead-lettered, undecoded, with the reason,
 * and the worker makes progress past it.  A crash of any backend makes the
 * postmaster restart every process, the worker included, so without this
 * one hostile message would restart the server over and over.
 *
 * The file is DataDir/pg_propensity/guard.<database oid>, one record:
 * magic "PPGD", version 1, state (0 idle, 1 decoding), partition, offset,
 * group and topic (NUL-padded, 256 bytes each), little-endian as the host.
 * A name of 256 bytes or more is not noted (such a message is not guarded).
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/fd.h"

#include "crash_guard.h"

#define GUARD_MAGIC 0x44475050	/* "PPGD" */
#define GUARD_NAME 256

typedef struct GuardFile
{
	uint32		magic;
	uint32		version;
	uint32		state;			/* 1: decoding the message below */
	int32		partition;
	int64		offset;
	char		group[GUARD_NAME];
	char		topic[GUARD_NAME];
} GuardFile;

static volatile GuardFile *guard = NULL;
static bool have_poison = false;
static GuardFile poison;

void
prop_guard_open(Oid dboid)
{
	char		path[MAXPGPATH];
	int			fd;
	void	   *map;

	if (guard != NULL)
		return;
	if (MakePGDirectory(GUARD_DIR) != 0 && errno != EEXIST)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("propensity ingest worker: could not create directory \"%s\": %m; messages are not guarded",
						GUARD_DIR)));
		return;
	}
	snprintf(path, sizeof(path), "%s/guard.%u", GUARD_DIR, dboid);
	fd = OpenTransientFile(path, O_RDWR | O_CREAT | PG_BINARY);
	if (fd < 0 || ftruncate(fd, sizeof(GuardFile)) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("propensity ingest worker: could not open \"%s\": %m; messages are not guarded", path)));
		if (fd >= 0)
			CloseTransientFile(fd);
		return;
	}
	map = mmap(NULL, sizeof(GuardFile), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CloseTransientFile(fd);
	if (map == MAP_FAILED)
	{
		ereport(LOG,
				(errmsg("propensity ingest worker: could not map \"%s\": %m; messages are not guarded", path)));
		return;
	}
	guard = (volatile GuardFile *) map;
	if (guard->magic == GUARD_MAGIC && guard->version == 1 && guard->state == 1)
	{
		memcpy(&poison, (const void *) guard, sizeof(GuardFile));
		poison.group[GUARD_NAME - 1] = '\0';
		poison.topic[GUARD_NAME - 1] = '\0';
		have_poison = true;
		ereport(LOG,
				(errmsg("propensity ingest worker: the last worker died decoding the message at offset " INT64_FORMAT " of partition %d of topic \"%s\" for group \"%s\"; it becomes a dead letter",
						poison.offset, poison.partition, poison.topic, poison.group)));
	}
	guard->magic = GUARD_MAGIC;
	guard->version = 1;
	guard->state = 0;
}

void
prop_guard_enter(const char *group, const char *topic, int32 partition, int64 offset)
{
	size_t		glen;
	size_t		tlen;

	if (guard == NULL)
		return;
	glen = strlen(group);
	tlen = strlen(topic);
	if (glen >= GUARD_NAME || tlen >= GUARD_NAME)
		return;
	guard->state = 0;
	pg_compiler_barrier();
	memcpy((char *) guard->group, group, glen + 1);
	memcpy((char *) guard->topic, topic, tlen + 1);
	guard->partition = partition;
	guard->offset = offset;
	pg_compiler_barrier();
	guard->state = 1;
}

void
prop_guard_leave(void)
{
	if (guard != NULL)
		guard->state = 0;
}

bool
prop_guard_poisoned(const char *group, const char *topic, int32 partition, int64 offset)
{
	if (!have_poison || poison.offset != offset || poison.partition != partition ||
		strcmp(poison.topic, topic) != 0 || strcmp(poison.group, group) != 0)
		return false;
	have_poison = false;
	return true;
}
