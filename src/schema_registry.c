/*
 * schema_registry.c - writer schemas from a Confluent-compatible schema
 * registry (schema_registry.h), asked over HTTP with libcurl when a
 * message names a schema id the embedded registry does not hold:
 * GET <url>/schemas/ids/<id>, whose answer is {"schema": "<the schema's
 * JSON>", "schemaType": "AVRO"}.  The registry is the one row of
 * propensity.schema_registry (url, basic-auth credentials, timeout),
 * readable by admins and the worker only.
 *
 * The transfer is bounded in time (the row's timeout) and in size (the
 * caller's max_bytes), follows no redirect, speaks only http and https, and
 * is abandoned at an interrupt.  Nothing is raised from inside libcurl.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "schema_registry.h"

typedef struct Body
{
	char	   *data;			/* malloc'd */
	size_t		len;
	size_t		max;
	bool		too_large;
} Body;

static size_t
body_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	Body	   *b = arg;
	size_t		n = size * nmemb;
	char	   *p;

	if (b->len + n > b->max)
	{
		b->too_large = true;
		return 0;				/* ends the transfer */
	}
	p = realloc(b->data, b->len + n + 1);
	if (p == NULL)
		return 0;
	b->data = p;
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* libcurl's progress callback: a cancel or a shutdown ends the transfer */
static int
transfer_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
				  curl_off_t ulnow)
{
	return InterruptPending ? 1 : 0;
}

/* The registry's answer: its top-level "schema" and "schemaType" strings. */
typedef struct Answer
{
	JsonLexContext *lex;
	char	   *field;			/* the top-level field being read */
	char	   *schema;
	char	   *type;
} Answer;

static void
answer_field(void *state, char *fname, bool isnull)
{
	Answer	   *a = state;

	a->field = a->lex->lex_level == 1 ? fname : NULL;
}

static void
answer_scalar(void *state, char *token, JsonTokenType type)
{
	Answer	   *a = state;

	if (a->field == NULL || a->lex->lex_level != 1 || type != JSON_TOKEN_STRING)
		return;
	if (strcmp(a->field, "schema") == 0)
		a->schema = token;
	else if (strcmp(a->field, "schemaType") == 0)
		a->type = token;
}

static RegistryResult
parse_answer(int32 id, char *body, size_t len, char **schema, char *err)
{
	Answer		a = {0};
	JsonSemAction sem = {0};
	JsonParseErrorType r;

	if (!pg_verifymbstr(body, (int) len, true))
	{
		snprintf(err, REGISTRY_ERR_LEN, "the schema registry's answer for id %d is not valid text", id);
		return REGISTRY_FAILED;
	}
	a.lex = makeJsonLexContextCstringLen(body, (int) len, GetDatabaseEncoding(), true);
	sem.semstate = &a;
	sem.object_field_start = answer_field;
	sem.scalar = answer_scalar;
	r = pg_parse_json(a.lex, &sem);
	if (r != JSON_SUCCESS || a.schema == NULL)
	{
		snprintf(err, REGISTRY_ERR_LEN, "the schema registry's answer for id %d holds no schema", id);
		return REGISTRY_FAILED;
	}
	if (a.type != NULL && strcmp(a.type, "AVRO") != 0)
	{
		snprintf(err, REGISTRY_ERR_LEN, "schema id %d of the schema registry is a %.40s schema, not Avro",
				 id, a.type);
		return REGISTRY_FAILED;
	}
	*schema = a.schema;
	return REGISTRY_FOUND;
}

/* The registry row, when there is one and this role may read it. */
static bool
registry_settings(char **url, char **user, char **password, long *timeout_ms)
{
	Oid			ns = get_namespace_oid("propensity", true);
	Oid			rel = OidIsValid(ns) ? get_relname_relid("schema_registry", ns) : InvalidOid;
	bool		isnull;

	if (!OidIsValid(rel) || pg_class_aclcheck(rel, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		return false;
	if (SPI_execute("SELECT url, username, password,"
					"       (extract(epoch FROM timeout) * 1000)::int8"
					"  FROM propensity.schema_registry", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "schema registry lookup failed");
	if (SPI_processed == 0)
		return false;
	*url = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	*user = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	*password = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	*timeout_ms = (long) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	return true;
}

RegistryResult
prop_registry_fetch(int32 id, Size max_bytes, char **schema, char *err)
{
	static bool curl_ready = false;
	char	   *url;
	char	   *user;
	char	   *password;
	long		timeout_ms;
	char		target[2048];
	CURL	   *h;
	CURLcode	rc;
	long		status = 0;
	Body		body = {NULL, 0, 0, false};
	struct curl_slist *headers = NULL;
	char		curl_err[CURL_ERROR_SIZE] = "";
	RegistryResult result;
	size_t		ulen;

	if (!registry_settings(&url, &user, &password, &timeout_ms))
		return REGISTRY_NONE;
	ulen = strlen(url);
	while (ulen > 0 && url[ulen - 1] == '/')
		ulen--;
	snprintf(target, sizeof(target), "%.*s/schemas/ids/%d", (int) Min(ulen, 1900), url, id);
	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		{
			snprintf(err, REGISTRY_ERR_LEN, "libcurl could not be initialized");
			return REGISTRY_FAILED;
		}
		curl_ready = true;
	}
	h = curl_easy_init();
	if (h == NULL)
	{
		snprintf(err, REGISTRY_ERR_LEN, "libcurl could not make a request");
		return REGISTRY_FAILED;
	}
	/* answers are JSON-escaped schemas: allow some room over the schema limit */
	body.max = max_bytes * 2 + 4096;
	headers = curl_slist_append(headers, "Accept: application/vnd.schemaregistry.v1+json, application/json");
	curl_easy_setopt(h, CURLOPT_URL, target);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, transfer_progress);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
	if (user != NULL)
	{
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		curl_easy_setopt(h, CURLOPT_USERNAME, user);
		curl_easy_setopt(h, CURLOPT_PASSWORD, password != NULL ? password : "");
	}
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	curl_slist_free_all(headers);

	if (rc == CURLE_ABORTED_BY_CALLBACK && InterruptPending)
	{
		free(body.data);
		CHECK_FOR_INTERRUPTS();
	}
	if (rc != CURLE_OK)
	{
		snprintf(err, REGISTRY_ERR_LEN, "the schema registry could not be asked for id %d: %s", id,
				 body.too_large ? "its answer is too large" :
				 curl_err[0] ? curl_err : curl_easy_strerror(rc));
		result = REGISTRY_FAILED;
	}
	else if (status == 404)
		result = REGISTRY_MISSING;
	else if (status != 200)
	{
		snprintf(err, REGISTRY_ERR_LEN, "the schema registry answered HTTP %ld for id %d", status, id);
		result = REGISTRY_FAILED;
	}
	else
	{
		char	   *copy = pnstrdup(body.data != NULL ? body.data : "", body.len);

		result = parse_answer(id, copy, body.len, schema, err);
	}
	free(body.data);
	return result;
}

void
prop_registry_cache(int32 id, const char *schema)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		args[2];
	bool		isnull;

	if (SPI_execute("SELECT pg_catalog.has_function_privilege(p, 'EXECUTE')"
					"  FROM pg_catalog.to_regprocedure('propensity.registry_cache_schema(integer, text)') p"
					" WHERE p IS NOT NULL", true, 1) != SPI_OK_SELECT ||
		SPI_processed == 0 ||
		!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return;
	args[0] = Int32GetDatum(id);
	args[1] = CStringGetTextDatum(schema);
	if (SPI_execute_with_args("SELECT propensity.registry_cache_schema($1, $2)", 2, types, args, NULL,
							  false, 1) != SPI_OK_SELECT)
		elog(ERROR, "the schema of id %d could not be kept", id);
}
