/*
 * features.h - feature arithmetic and logistic scoring (docs/computing.md sections 2 and 3).
 *
 * Pure C: no PostgreSQL header.  Times are int64 microseconds on any fixed
 * epoch (the glue passes PostgreSQL timestamps unchanged); spans are int64
 * microseconds.  Everything here is allocation-free.
 */
#ifndef PROPENSITY_FEATURES_H
#define PROPENSITY_FEATURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>

typedef enum FeatEventType
{
	FEAT_IM = 0,
	FEAT_CL,
	FEAT_PS,
	FEAT_CN,
	FEAT_NTYPES
} FeatEventType;

typedef enum FeatKind
{
	FEAT_WINDOW_COUNT = 0,		/* N(type, W, t) */
	FEAT_DECAYED_COUNT			/* D(type, h, t) */
} FeatKind;

typedef enum FeatTransform
{
	FEAT_IDENTITY = 0,
	FEAT_LOG1P
} FeatTransform;

#define FEAT_MAX_TERMS 32

typedef struct FeatTerm
{
	FeatKind	kind;
	FeatEventType type;
	int64_t		span_us;		/* window W or half-life h, > 0 */
	FeatTransform transform;
	double		coef;
} FeatTerm;

typedef struct FeatModel
{
	double		intercept;
	int			nterms;
	FeatTerm	terms[FEAT_MAX_TERMS];
} FeatModel;

/* "IM", "CL", "PS", "CN" (exactly, case-sensitive); -1 for anything else. */
extern int	feat_parse_type(const char *s, size_t len);
extern const char *feat_type_name(FeatEventType t);
extern int	feat_parse_kind(const char *s);
extern int	feat_parse_transform(const char *s);

/*
 * Contribution of one event at event_us to a feature as of as_of_us.
 * Events after as_of count for nothing; a window is (as_of - W, as_of].
 */
static inline double
feat_contribution(FeatKind kind, int64_t span_us, int64_t event_us, int64_t as_of_us)
{
	int64_t		age;

	if (event_us > as_of_us)
		return 0.0;
	age = as_of_us - event_us;
	if (kind == FEAT_WINDOW_COUNT)
		return age < span_us ? 1.0 : 0.0;
	return exp2(-(double) age / (double) span_us);
}

/* Add one event to acc[0 .. model->nterms - 1]. */
extern void feat_accumulate(const FeatModel *model, double *acc,
							FeatEventType type, int64_t event_us, int64_t as_of_us);

/* transform(feature): the input that a term's coefficient multiplies */
static inline double
feat_input(const FeatTerm *term, double feature)
{
	return term->transform == FEAT_LOG1P ? log1p(feature) : feature;
}

/* z = intercept + sum coef * transform(acc[i]) */
extern double feat_linear(const FeatModel *model, const double *acc);
extern double feat_sigmoid(double z);
extern double feat_score(const FeatModel *model, const double *acc);

/*
 * Checks a model; returns NULL when valid, else a static message, and sets
 * *bad_term to the offending term index (-1 for the intercept or the count).
 */
extern const char *feat_validate(const FeatModel *model, int *bad_term);

#endif
