"""Small-sample statistics for comparing methods over seeds: Student-t confidence intervals and
Welch's t-test, without SciPy (a dev-only dependency here; the tests check these against it).

The t distribution's CDF comes from the regularised incomplete beta function, evaluated with the
modified Lentz continued fraction (Numerical Recipes §6.4 describes the method).
"""

from __future__ import annotations

import math


def _betacf(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """Quantile of Student's t (bisection; plenty for confidence intervals)."""
    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def ci95(values: list[float]) -> tuple[float, float]:
    """95% confidence interval of the mean (Student t; one value: the value itself)."""
    n = len(values)
    mean, std = mean_std(values)
    if n < 2:
        return mean, mean
    half = t_ppf(0.975, n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


def welch(a: list[float], b: list[float]) -> tuple[float | None, float | None]:
    """Welch's two-sided t-test: (t, p). p is 1.0 when either sample has fewer than 2 values
    or both have zero variance with equal means; (None, None) when neither varies and the means
    differ, where the test is undefined (two seeds that tie, as a deterministic method's do,
    say nothing of the noise: an infinite t and p = 0 would claim certainty)."""
    if len(a) < 2 or len(b) < 2:
        return 0.0, 1.0
    ma, sa = mean_std(a)
    mb, sb = mean_std(b)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    if va + vb == 0:
        return (0.0, 1.0) if ma == mb else (None, None)
    t = (ma - mb) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    return t, 2.0 * (1.0 - t_cdf(abs(t), df))
