/*
 * test_logistic.c - logistic regression sums and Newton steps (src/core/logistic.c)
 * against closed forms: one binary feature (coefficients are log-odds, their
 * standard errors have a closed form too), the penalized optimum's
 * stationarity, merging partial sums, a singular design, separation, and
 * recovery of known coefficients from generated data.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/logistic.h"
#include "check.h"

static char err[LOGISTIC_ERR_LEN];

typedef struct Ex
{
	double		x[4];
	bool		y;
} Ex;

static int
fit(const Ex *ex, int n, int k, double l2, double *beta, double *se, int max_iter, LogisticAcc *last)
{
	int			it;

	memset(beta, 0, sizeof(double) * LOGISTIC_MAX_K);
	for (it = 1; it <= max_iter; it++)
	{
		LogisticAcc	acc;
		LogisticStep	st;
		int			i;

		logistic_acc_init(&acc, k);
		for (i = 0; i < n; i++)
			logistic_acc_add(&acc, ex[i].x, ex[i].y, 1.0, beta);
		if (last)
			*last = acc;
		if (logistic_newton_step(&acc, beta, l2, &st, err) != 0)
			return -1;
		memcpy(se, st.se, sizeof(double) * k);
		memcpy(beta, st.beta, sizeof(double) * k);
		if (st.max_change < 1e-12)
			return it;
	}
	return 0;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static double
uniform(void)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return ((rng >> 11) + 0.5) / 9007199254740992.0;
}

void
test_logistic(void)
{
	Ex		   *ex = malloc(sizeof(Ex) * 200000);
	double		beta[LOGISTIC_MAX_K];
	double		se[LOGISTIC_MAX_K];
	int			n = 0;
	int			i;
	int			it;
	LogisticAcc	a;
	LogisticAcc	b;
	LogisticAcc	whole;
	LogisticStep	sa;
	LogisticStep	sw;

	/* one binary feature: x = 0 has 30 of 100 positive, x = 1 has 60 of 80 */
	for (i = 0; i < 100; i++, n++)
	{
		ex[n].x[0] = 1;
		ex[n].x[1] = 0;
		ex[n].y = i < 30;
	}
	for (i = 0; i < 80; i++, n++)
	{
		ex[n].x[0] = 1;
		ex[n].x[1] = 1;
		ex[n].y = i < 60;
	}
	it = fit(ex, n, 2, 0, beta, se, 50, NULL);
	CHECK(it > 0 && it < 10, "binary feature converges quickly (%d iterations)", it);
	CHECK(fabs(beta[0] - log(0.3 / 0.7)) < 1e-10, "intercept = logit(0.3): %.12f", beta[0]);
	CHECK(fabs(beta[1] - (log(0.75 / 0.25) - log(0.3 / 0.7))) < 1e-10, "slope = logit(0.75) - logit(0.3): %.12f", beta[1]);
	CHECK(fabs(se[0] - sqrt(1 / (100 * 0.3 * 0.7))) < 1e-9, "se(intercept) = 1/sqrt(n0 p0 q0): %.12f", se[0]);
	CHECK(fabs(se[1] - sqrt(1 / (100 * 0.3 * 0.7) + 1 / (80 * 0.75 * 0.25))) < 1e-9,
		  "se(slope) closed form: %.12f", se[1]);

	/* partial sums merge to the whole */
	beta[0] = 0.3;
	beta[1] = -0.2;
	logistic_acc_init(&a, 2);
	logistic_acc_init(&b, 2);
	logistic_acc_init(&whole, 2);
	for (i = 0; i < n; i++)
	{
		logistic_acc_add(i % 3 ? &a : &b, ex[i].x, ex[i].y, 1.0, beta);
		logistic_acc_add(&whole, ex[i].x, ex[i].y, 1.0, beta);
	}
	logistic_acc_merge(&a, &b);
	CHECK(fabs(a.loglik - whole.loglik) < 1e-9 && fabs(a.grad[1] - whole.grad[1]) < 1e-9 &&
		  fabs(a.hess[2] - whole.hess[2]) < 1e-9 && a.n == whole.n, "merged sums equal one pass");
	CHECK(logistic_newton_step(&a, beta, 0, &sa, err) == 0 && logistic_newton_step(&whole, beta, 0, &sw, err) == 0 &&
		  fabs(sa.beta[0] - sw.beta[0]) < 1e-9 && fabs(sa.beta[1] - sw.beta[1]) < 1e-9, "and the same step");

	/* a duplicated feature: singular */
	for (i = 0; i < n; i++)
		ex[i].x[2] = ex[i].x[1];
	CHECK(fit(ex, n, 3, 0, beta, se, 50, NULL) == -1 && strstr(err, "singular"), "duplicate feature: %s", err);
	/* the same with L2: the penalty makes it solvable, and the two share the slope */
	it = fit(ex, n, 3, 1.0, beta, se, 100, &a);
	CHECK(it > 0 && fabs(beta[1] - beta[2]) < 1e-9, "L2 splits a duplicated feature evenly (%g, %g)", beta[1], beta[2]);
	/* stationarity of the penalized objective at the optimum */
	CHECK(fabs(a.grad[0]) < 1e-8 && fabs(a.grad[1] - 1.0 * beta[1]) < 1e-8 && fabs(a.grad[2] - 1.0 * beta[2]) < 1e-8,
		  "gradient = l2 * beta at the L2 optimum (%g %g %g)", a.grad[0], a.grad[1] - beta[1], a.grad[2] - beta[2]);

	/* separation: y = (x > 0); coefficients grow without bound, fits go extreme */
	for (i = 0; i < 100; i++)
	{
		ex[i].x[0] = 1;
		ex[i].x[1] = (i - 49.5) / 10;
		ex[i].y = i >= 50;
	}
	it = fit(ex, 100, 2, 0, beta, se, 30, &a);
	CHECK(it == 0 && beta[1] > 10 && a.extreme > 50, "separated data never converge: slope %g, %g of 100 extreme",
		  beta[1], a.extreme);

	/* recovery: 200k examples from known coefficients, within 4 standard errors */
	{
		const double truth[4] = {-1.5, 0.8, -0.4, 1.2};
		bool		ok = true;

		for (i = 0; i < 200000; i++)
		{
			double		eta;

			ex[i].x[0] = 1;
			ex[i].x[1] = uniform() * 2 - 1;
			ex[i].x[2] = uniform() * 4;
			ex[i].x[3] = uniform() < 0.3;
			eta = truth[0] + truth[1] * ex[i].x[1] + truth[2] * ex[i].x[2] + truth[3] * ex[i].x[3];
			ex[i].y = uniform() < 1 / (1 + exp(-eta));
		}
		it = fit(ex, 200000, 4, 0, beta, se, 50, NULL);
		CHECK(it > 0, "generated data converge (%d iterations)", it);
		for (i = 0; i < 4; i++)
			ok = ok && fabs(beta[i] - truth[i]) < 4 * se[i] && se[i] < 0.05;
		CHECK(ok, "recovered (%.3f %.3f %.3f %.3f), se (%.3f %.3f %.3f %.3f)", beta[0], beta[1], beta[2], beta[3],
			  se[0], se[1], se[2], se[3]);
	}
	free(ex);
}
