/*
 * logistic.c - the sums and the Newton step of logistic regression (see
 * logistic.h).  The Hessian is solved by Cholesky; its inverse gives the
 * standard errors.
 */
#include "core/logistic.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define IDX(i, j) ((i) * ((i) + 1) / 2 + (j))	/* packed lower triangle, j <= i */

void
logistic_acc_init(LogisticAcc *acc, int k)
{
	memset(acc, 0, sizeof(*acc));
	acc->k = k;
}

double
logistic_log1pexp_neg(double t)
{
	/* log(1 + e^-t) */
	if (t > 0)
		return log1p(exp(-t));
	return -t + log1p(exp(t));
}

void
logistic_acc_add(LogisticAcc *acc, const double *x, bool y, double w, const double *beta)
{
	double		eta = 0;
	double		p;
	double		r;
	double		v;
	int			i;
	int			j;

	for (i = 0; i < acc->k; i++)
		eta += beta[i] * x[i];
	p = eta >= 0 ? 1.0 / (1.0 + exp(-eta)) : exp(eta) / (1.0 + exp(eta));
	/* log P(y): y ? -log(1 + e^-eta) : -log(1 + e^eta) */
	acc->loglik -= w * (y ? logistic_log1pexp_neg(eta) : logistic_log1pexp_neg(-eta));
	acc->n += w;
	acc->positives += y ? w : 0;
	if (p < 1e-9 || p > 1 - 1e-9)
		acc->extreme += w;
	r = w * ((y ? 1.0 : 0.0) - p);
	v = w * p * (1 - p);
	for (i = 0; i < acc->k; i++)
	{
		acc->grad[i] += r * x[i];
		for (j = 0; j <= i; j++)
			acc->hess[IDX(i, j)] += v * x[i] * x[j];
	}
}

void
logistic_acc_merge(LogisticAcc *a, const LogisticAcc *b)
{
	int			i;

	a->n += b->n;
	a->positives += b->positives;
	a->loglik += b->loglik;
	a->extreme += b->extreme;
	for (i = 0; i < a->k; i++)
		a->grad[i] += b->grad[i];
	for (i = 0; i < a->k * (a->k + 1) / 2; i++)
		a->hess[i] += b->hess[i];
}

/* In-place Cholesky of a packed lower triangle; false if not positive definite. */
static bool
cholesky(double *a, int k)
{
	int			i;
	int			j;
	int			m;
	double		scale = 0;

	for (i = 0; i < k; i++)
		scale = fmax(scale, fabs(a[IDX(i, i)]));
	for (i = 0; i < k; i++)
	{
		for (j = 0; j <= i; j++)
		{
			double		s = a[IDX(i, j)];

			for (m = 0; m < j; m++)
				s -= a[IDX(i, m)] * a[IDX(j, m)];
			if (i == j)
			{
				/* relative pivot: catches exact and numerical singularity */
				if (!(s > 1e-12 * scale))
					return false;
				a[IDX(i, i)] = sqrt(s);
			}
			else
				a[IDX(i, j)] = s / a[IDX(j, j)];
		}
	}
	return true;
}

/* Solve L L' x = b with the factor in a; b is overwritten by x. */
static void
cholesky_solve(const double *a, int k, double *b)
{
	int			i;
	int			m;

	for (i = 0; i < k; i++)
	{
		for (m = 0; m < i; m++)
			b[i] -= a[IDX(i, m)] * b[m];
		b[i] /= a[IDX(i, i)];
	}
	for (i = k - 1; i >= 0; i--)
	{
		for (m = i + 1; m < k; m++)
			b[i] -= a[IDX(m, i)] * b[m];
		b[i] /= a[IDX(i, i)];
	}
}

int
logistic_newton_step(const LogisticAcc *acc, const double *beta, double l2, LogisticStep *out, char *err)
{
	double		h[LOGISTIC_MAX_K * (LOGISTIC_MAX_K + 1) / 2];
	double		g[LOGISTIC_MAX_K];
	double		penalty = 0;
	int			k = acc->k;
	int			i;

	memcpy(h, acc->hess, sizeof(double) * k * (k + 1) / 2);
	for (i = 0; i < k; i++)
	{
		g[i] = acc->grad[i];
		if (i > 0 && l2 > 0)
		{
			g[i] -= l2 * beta[i];
			h[IDX(i, i)] += l2;
			penalty += 0.5 * l2 * beta[i] * beta[i];
		}
	}
	if (!cholesky(h, k))
	{
		snprintf(err, LOGISTIC_ERR_LEN,
				 "the Hessian is singular: a feature is constant, duplicates others, or the examples are too few");
		return -1;
	}
	/* the step */
	cholesky_solve(h, k, g);
	out->max_change = 0;
	for (i = 0; i < k; i++)
	{
		out->beta[i] = beta[i] + g[i];
		out->max_change = fmax(out->max_change, fabs(g[i]));
	}
	/* standard errors: the diagonal of the inverse, column by column */
	for (i = 0; i < k; i++)
	{
		double		e[LOGISTIC_MAX_K];

		memset(e, 0, sizeof(double) * k);
		e[i] = 1;
		cholesky_solve(h, k, e);
		out->se[i] = sqrt(e[i]);
	}
	out->objective = acc->loglik - penalty;
	return 0;
}
