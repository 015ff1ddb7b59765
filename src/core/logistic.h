/*
 * logistic.h - logistic regression by Newton/IRLS, as sums: one pass over the
 * examples accumulates the gradient, the Hessian and the log-likelihood at
 * the current coefficients (logistic_acc_add; accumulators of parallel passes
 * merge by addition), then logistic_newton_step solves for the next
 * coefficients.  Pure C, no PostgreSQL header.
 *
 * Model: P(y = 1 | x) = 1 / (1 + exp(-(beta . x))), where x[0] = 1 is the
 * intercept.  With l2 > 0 the objective is the log-likelihood minus
 * (l2 / 2) * sum of beta[j]^2 over j >= 1 (the intercept is not penalized).
 */
#ifndef PROPENSITY_LOGISTIC_H
#define PROPENSITY_LOGISTIC_H

#include <stdbool.h>
#include <stddef.h>

#define LOGISTIC_MAX_K 32			/* coefficients, intercept included */
#define LOGISTIC_ERR_LEN 256

typedef struct LogisticAcc
{
	int			k;				/* coefficients, intercept included */
	double		n;				/* examples (sum of weights) */
	double		positives;		/* examples with y = 1 */
	double		loglik;			/* at the coefficients of the pass */
	double		grad[LOGISTIC_MAX_K];	/* sum x (y - p) */
	double		hess[LOGISTIC_MAX_K * (LOGISTIC_MAX_K + 1) / 2];	/* sum p (1 - p) x x', packed lower */
	double		extreme;		/* examples fitted with p < 1e-9 or p > 1 - 1e-9 */
} LogisticAcc;

typedef struct LogisticStep
{
	double		beta[LOGISTIC_MAX_K];	/* the next coefficients */
	double		se[LOGISTIC_MAX_K];	/* standard errors at the current ones */
	double		max_change;		/* largest |beta_next - beta| */
	double		objective;		/* penalized log-likelihood at the current ones */
} LogisticStep;

extern void logistic_acc_init(LogisticAcc *acc, int k);

/* One example with features x[0..k-1] (x[0] = 1), label y, weight w. */
extern void logistic_acc_add(LogisticAcc *acc, const double *x, bool y, double w, const double *beta);

/* a += b (same k) */
extern void logistic_acc_merge(LogisticAcc *a, const LogisticAcc *b);

/*
 * The Newton step from beta given the pass's sums.  Returns 0, or -1 with an
 * error text when the penalized Hessian is not positive definite (singular:
 * a constant or duplicated feature, or too few examples).
 */
extern int	logistic_newton_step(const LogisticAcc *acc, const double *beta, double l2, LogisticStep *out,
							  char *err);

/* log(1 + exp(-t)) without overflow */
extern double logistic_log1pexp_neg(double t);

#endif
