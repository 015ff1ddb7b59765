/*
 * features.c - window counts, decayed counts, transforms and the logistic
 * score of docs/computing.md sections 2 and 3, independent of PostgreSQL so that the
 * standalone tests and fuzzers exercise exactly the code the server runs.
 */
#include <math.h>
#include <string.h>

#include "features.h"

static const char *const type_names[FEAT_NTYPES] = {"IM", "CL", "PS", "CN"};

int
feat_parse_type(const char *s, size_t len)
{
	if (len != 2)
		return -1;
	switch (s[0])
	{
		case 'I':
			return s[1] == 'M' ? FEAT_IM : -1;
		case 'C':
			return s[1] == 'L' ? FEAT_CL : (s[1] == 'N' ? FEAT_CN : -1);
		case 'P':
			return s[1] == 'S' ? FEAT_PS : -1;
		default:
			return -1;
	}
}

const char *
feat_type_name(FeatEventType t)
{
	return (t >= 0 && t < FEAT_NTYPES) ? type_names[t] : "?";
}

int
feat_parse_kind(const char *s)
{
	if (strcmp(s, "window_count") == 0)
		return FEAT_WINDOW_COUNT;
	if (strcmp(s, "decayed_count") == 0)
		return FEAT_DECAYED_COUNT;
	return -1;
}

int
feat_parse_transform(const char *s)
{
	if (strcmp(s, "identity") == 0)
		return FEAT_IDENTITY;
	if (strcmp(s, "log1p") == 0)
		return FEAT_LOG1P;
	return -1;
}

void
feat_accumulate(const FeatModel *model, double *acc, FeatEventType type,
				int64_t event_us, int64_t as_of_us)
{
	int			i;

	if (event_us > as_of_us)
		return;
	for (i = 0; i < model->nterms; i++)
	{
		const FeatTerm *term = &model->terms[i];

		if (term->type == type)
			acc[i] += feat_contribution(term->kind, term->span_us, event_us, as_of_us);
	}
}

double
feat_linear(const FeatModel *model, const double *acc)
{
	double		z = model->intercept;
	int			i;

	for (i = 0; i < model->nterms; i++)
		z += model->terms[i].coef * feat_input(&model->terms[i], acc[i]);
	return z;
}

double
feat_sigmoid(double z)
{
	/* written so that neither branch overflows */
	if (z >= 0)
		return 1.0 / (1.0 + exp(-z));
	else
	{
		double		e = exp(z);

		return e / (1.0 + e);
	}
}

double
feat_score(const FeatModel *model, const double *acc)
{
	return feat_sigmoid(feat_linear(model, acc));
}

const char *
feat_validate(const FeatModel *model, int *bad_term)
{
	int			i;

	*bad_term = -1;
	if (!isfinite(model->intercept))
		return "intercept is not finite";
	if (model->nterms < 0 || model->nterms > FEAT_MAX_TERMS)
		return "too many terms";
	for (i = 0; i < model->nterms; i++)
	{
		const FeatTerm *term = &model->terms[i];

		*bad_term = i;
		if (!isfinite(term->coef))
			return "coefficient is not finite";
		if (term->span_us <= 0)
			return "window or half-life is not positive";
		if (term->type < 0 || term->type >= FEAT_NTYPES)
			return "unknown event type";
		if (term->kind != FEAT_WINDOW_COUNT && term->kind != FEAT_DECAYED_COUNT)
			return "unknown feature kind";
		if (term->transform != FEAT_IDENTITY && term->transform != FEAT_LOG1P)
			return "unknown transform";
	}
	*bad_term = -1;
	return NULL;
}
