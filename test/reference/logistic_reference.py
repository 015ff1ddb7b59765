#!/usr/bin/python3
"""Make the fixed logistic-regression dataset and its reference fits.

Writes test/data/logit_fixture.csv (2,000 examples: label y and four
features of mixed scale, one of them binary and two correlated) and
test/data/logit_reference.csv (coefficients and standard errors from
statsmodels for the unpenalized fit; coefficients from scikit-learn for an
L2-penalized fit).  sql/logistic_reference.sql checks fit_logistic() against
them to 1e-6 relative.

The penalty: fit_logistic(l2 => lam) maximizes
    log-likelihood - (lam / 2) * sum of the non-intercept coefficients squared,
which is scikit-learn's LogisticRegression(penalty='l2', C=1/lam) (its
intercept is not penalized by the lbfgs and newton-cg solvers).

Debian 12: apt-get install python3-statsmodels python3-sklearn, then run
/usr/bin/python3 test/reference/logistic_reference.py from the top directory.
Each reference is cross-checked by a second solver before it is written.
"""
import csv
import os
import sys

import numpy as np
import statsmodels.api as sm
from sklearn.linear_model import LogisticRegression

N = 2000
L2 = 2.5
TRUE_BETA = np.array([-1.2, 0.8, -0.45, 0.03, 1.1])   # intercept, x1..x4

here = os.path.dirname(os.path.abspath(__file__))
data_dir = os.path.join(here, '..', 'data')

rng = np.random.default_rng(20261123)
x1 = rng.normal(0.0, 1.0, N)
x2 = 0.6 * x1 + rng.normal(0.0, 0.8, N)            # correlated with x1
x3 = rng.gamma(2.0, 10.0, N)                        # scale about 20
x4 = (rng.random(N) < 0.3).astype(float)            # binary
# round to 6 decimals so the CSV holds the exact values both sides read
X = np.round(np.column_stack([x1, x2, x3, x4]), 6)
z = TRUE_BETA[0] + X @ TRUE_BETA[1:]
y = (rng.random(N) < 1.0 / (1.0 + np.exp(-z))).astype(int)

with open(os.path.join(data_dir, 'logit_fixture.csv'), 'w', newline='') as f:
    w = csv.writer(f, lineterminator='\n')
    w.writerow(['id', 'y', 'x1', 'x2', 'x3', 'x4'])
    for i in range(N):
        w.writerow([i + 1, 'true' if y[i] else 'false'] + ['%.6f' % v for v in X[i]])

# Unpenalized: statsmodels' Newton maximum likelihood, cross-checked by
# scikit-learn without a penalty.
Xc = sm.add_constant(X)
mle = sm.Logit(y, Xc).fit(method='newton', tol=1e-14, maxiter=100, disp=False)
beta_mle = mle.params
se_mle = mle.bse
sk_none = LogisticRegression(penalty=None, solver='newton-cg', tol=1e-10, max_iter=10000).fit(X, y)
check = np.concatenate([sk_none.intercept_, sk_none.coef_[0]])
assert np.max(np.abs(check - beta_mle) / np.abs(beta_mle)) < 1e-8, (check, beta_mle)

# L2: scikit-learn, newton-cg cross-checked by newton-cholesky (lbfgs stops
# about 5e-6 short here whatever its tol).
fits = []
for solver in ('newton-cg', 'newton-cholesky'):
    m = LogisticRegression(penalty='l2', C=1.0 / L2, solver=solver, tol=1e-10,
                           max_iter=100000).fit(X, y)
    fits.append(np.concatenate([m.intercept_, m.coef_[0]]))
beta_l2 = fits[0]
assert np.max(np.abs(fits[1] - beta_l2) / np.abs(beta_l2)) < 1e-9, fits

with open(os.path.join(data_dir, 'logit_reference.csv'), 'w', newline='') as f:
    w = csv.writer(f, lineterminator='\n')
    w.writerow(['fit', 'l2', 'term', 'coefficient', 'std_error', 'log_likelihood'])
    for j in range(5):
        w.writerow(['statsmodels_mle', 0, j, repr(float(beta_mle[j])), repr(float(se_mle[j])),
                    repr(float(mle.llf))])
    for j in range(5):
        w.writerow(['sklearn_l2', L2, j, repr(float(beta_l2[j])), '', ''])

print('positives %d of %d' % (y.sum(), N), file=sys.stderr)
print('mle', beta_mle, 'se', se_mle, 'llf', mle.llf, file=sys.stderr)
print('l2 ', beta_l2, file=sys.stderr)
