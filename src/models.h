/*
 * models.h - logistic models as stored in propensity.models (models.c):
 * loading one into the core's FeatModel, and propensity.default_model.
 */
#ifndef PROPENSITY_MODELS_H
#define PROPENSITY_MODELS_H

#include "postgres.h"

#include "core/features.h"

extern char *propensity_default_model;

/* Defines the GUCs of this room (from _PG_init). */
extern void prop_models_init(void);

/* A model as loaded from propensity.models. */
typedef struct LoadedModel
{
	int32		model_id;
	int32		version;
	char		name[NAMEDATALEN];
	FeatModel	model;
} LoadedModel;

/*
 * Load the latest version of a model by name (NULL: propensity.default_model)
 * or a model by id.  Raise an error when it does not exist or is invalid.
 */
extern void prop_load_model_by_name(const char *name, LoadedModel *out);
extern void prop_load_model_by_id(int32 model_id, LoadedModel *out);

#endif
