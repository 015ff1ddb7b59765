/*
 * schema_registry.h - writer schemas from a Confluent-compatible schema
 * registry over HTTP (schema_registry.c, libcurl), for the ids the
 * embedded registry (propensity.avro_schemas) does not hold.
 */
#ifndef PROPENSITY_SCHEMA_REGISTRY_H
#define PROPENSITY_SCHEMA_REGISTRY_H

#include "postgres.h"

#define REGISTRY_ERR_LEN 256

typedef enum RegistryResult
{
	REGISTRY_NONE,				/* no registry is configured (or readable here) */
	REGISTRY_FOUND,				/* *schema is the registry's schema of the id */
	REGISTRY_MISSING,			/* the registry answered that it has no such id */
	REGISTRY_FAILED				/* the registry could not be asked: err says why */
} RegistryResult;

/*
 * Ask the configured registry for schema id (GET <url>/schemas/ids/<id>),
 * with SPI connected.  The schema found is palloc'd; a response over
 * max_bytes is refused.  Nothing here raises an error but an interrupt.
 */
extern RegistryResult prop_registry_fetch(int32 id, Size max_bytes, char **schema, char *err);

/*
 * Keep a schema fetched from the registry in propensity.avro_schemas under
 * its id, when the current role may (the worker, an admin); else it is
 * used by this session only.  SPI connected.
 */
extern void prop_registry_cache(int32 id, const char *schema);

#endif
