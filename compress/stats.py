"""Accuracy as a proportion with its uncertainty, and paired tests between two models.

An accuracy is k correct out of n evaluation samples: reported with its 95 % Wilson score interval
(Wilson 1927; statsmodels ``proportion_confint(method="wilson")``), which stays inside 0-100 % and
keeps its coverage near 0 % and 100 %, where the plain normal interval collapses to a point.

Two models evaluated on the same samples are compared with McNemar's exact test: only the
discordant samples carry information (b = right for the base model and wrong for the variant,
c = the other way round); under "no difference" each discordant sample is a fair coin, so b is
Binomial(b + c, 1/2). The tails are summed here (exact integers up to 4,096 discordant pairs), so
that the tests can check them against an independent implementation (scipy).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, Field

Z95 = 1.959963984540054
"""The standard normal's 97.5 % quantile: a two-sided 95 % interval."""


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes out of n, in % (``(low, high)``).

    n = 0 gives (0, 100): no samples, every accuracy is consistent with them.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 100.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low * 100.0, high * 100.0


def wilson_half_width(accuracy: float, n: int, z: float = Z95) -> float:
    """Half the width (in points) of the Wilson interval at ``accuracy`` % over n samples."""
    if n <= 0:
        return 50.0
    p = min(1.0, max(0.0, accuracy / 100.0))
    z2 = z * z
    return 100.0 * z / (1.0 + z2 / n) * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n))


def samples_for_half_width(half_width: float, accuracy: float = 50.0, z: float = Z95) -> int:
    """The fewest samples whose 95 % Wilson interval at ``accuracy`` % is at most ``half_width`` points
    on each side. ``accuracy`` 50 % is the worst case (the widest interval for a given n)."""
    if half_width <= 0:
        raise ValueError(f"half_width must be > 0 points, got {half_width}")
    if half_width >= 50.0:
        return 1
    hi = 1
    while wilson_half_width(accuracy, hi, z) > half_width:
        hi *= 2
    lo = hi // 2  # wilson_half_width(lo) > half_width (or lo == 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if wilson_half_width(accuracy, mid, z) > half_width:
            lo = mid
        else:
            hi = mid
    return hi


EXACT_UP_TO = 4096
"""Discordant pairs up to which the binomial tail is summed in exact integers (< 0.1 s); above, in
floating point from the largest term down (relative error ~1e-10, 60,000 pairs in ~20 ms)."""


def _binomial_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2): exact (rounded once) up to :data:`EXACT_UP_TO` trials."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if 2 * k > n:  # symmetry: sum the shorter tail
        return 1.0 - _binomial_half_cdf(n - k - 1, n)
    if n <= EXACT_UP_TO:
        term, total = 1, 1  # C(n, 0)
        for i in range(k):
            term = term * (n - i) // (i + 1)
            total += term
        return float(Fraction(total, 2**n))
    # C(n, k) / 2^n, then the terms below it: t(i - 1) = t(i) * i / (n - i + 1), falling geometrically
    log_top = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)
    ratio_sum, ratio = 1.0, 1.0
    for i in range(k, 0, -1):
        ratio *= i / (n - i + 1)
        ratio_sum += ratio
        if ratio < 1e-17 * ratio_sum:
            break
    return math.exp(log_top) * ratio_sum


def discordant_counts(base_correct: ArrayLike, variant_correct: ArrayLike) -> tuple[int, int]:
    """(b, c): samples the base model got right and the variant wrong, and the other way round."""
    a = np.asarray(base_correct, dtype=bool)
    v = np.asarray(variant_correct, dtype=bool)
    if a.shape != v.shape:
        raise ValueError(f"paired test needs the same samples: {a.shape} vs {v.shape}")
    return int(np.count_nonzero(a & ~v)), int(np.count_nonzero(~a & v))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: ``min(1, 2 · P(X <= min(b, c)))``, X ~ Binomial(b + c, 1/2).

    b + c = 0 (the models disagree nowhere) gives 1.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * _binomial_half_cdf(min(b, c), n))


def mcnemar_exact_worse(b: int, c: int) -> float:
    """One-sided exact McNemar p-value that the variant is *worse* than the base model:
    ``P(X >= b)``, X ~ Binomial(b + c, 1/2), b = samples only the base model got right."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    return _binomial_half_cdf(c, n)  # P(X >= b) = P(X <= n - b) for p = 1/2: no cancellation in small tails


class PairedComparison(BaseModel):
    """A variant against its base model on the same evaluation samples."""

    eval_samples: int
    only_base_correct: int = Field(description="b: samples the base model got right and the variant wrong.")
    only_variant_correct: int = Field(description="c: samples the variant got right and the base model wrong.")
    p_value: float = Field(description="Exact two-sided McNemar p-value (any difference).")
    p_value_worse: float = Field(description="Exact one-sided McNemar p-value (the variant is worse).")
    alpha: float
    significant: bool = Field(description="p_value < alpha: the accuracies differ beyond chance.")
    significantly_worse: bool = Field(description="p_value_worse < alpha: the drop is beyond chance.")


def compare_paired(base_correct: ArrayLike, variant_correct: ArrayLike, alpha: float = 0.05) -> PairedComparison:
    """McNemar's exact tests (two-sided and 'variant worse') on per-sample correctness."""
    b, c = discordant_counts(base_correct, variant_correct)
    p, p_worse = mcnemar_exact(b, c), mcnemar_exact_worse(b, c)
    return PairedComparison(
        eval_samples=int(np.asarray(base_correct).size),
        only_base_correct=b,
        only_variant_correct=c,
        p_value=p,
        p_value_worse=p_worse,
        alpha=alpha,
        significant=p < alpha,
        significantly_worse=p_worse < alpha,
    )


class SplitAdequacy(BaseModel):
    """Whether the evaluation split can resolve an accuracy budget."""

    eval_samples: int
    max_accuracy_drop: float = Field(description="The budget, in points.")
    half_width: float = Field(description="Half-width of the 95 % Wilson interval, in points.")
    too_small: bool = Field(description="half_width > max_accuracy_drop: the budget is within the noise.")
    samples_needed: int = Field(description="Samples at which the half-width would be within the budget.")
    message: str


def split_adequacy(eval_samples: int, max_accuracy_drop: float, accuracy: float | None = None) -> SplitAdequacy:
    """Is the 95 % interval's half-width (at ``accuracy`` %, 50 % when unknown: the widest) larger than
    the budget? If so the split cannot tell a drop of ``max_accuracy_drop`` points from noise."""
    at = 50.0 if accuracy is None else accuracy
    half = wilson_half_width(at, eval_samples)
    needed = samples_for_half_width(max_accuracy_drop, at) if max_accuracy_drop > 0 else 0
    too_small = half > max_accuracy_drop
    if too_small:
        need = f"{needed:,} samples" if max_accuracy_drop > 0 else "a budget above 0 points"
        message = (
            f"the evaluation split is too small for a {max_accuracy_drop:g}-point budget: at {at:.1f} % over "
            f"{eval_samples:,} samples the 95 % interval is ±{half:.2f} points; it would take {need}"
        )
    else:
        message = (
            f"the evaluation split resolves a {max_accuracy_drop:g}-point budget: ±{half:.2f} points at {at:.1f} % "
            f"over {eval_samples:,} samples"
        )
    return SplitAdequacy(
        eval_samples=eval_samples,
        max_accuracy_drop=max_accuracy_drop,
        half_width=round(half, 4),
        too_small=too_small,
        samples_needed=needed,
        message=message,
    )
