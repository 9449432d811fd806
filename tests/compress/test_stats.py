"""compress.stats against independent computations (scipy), and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from compress.correctness import pack_correct, unpack_correct
from compress.stats import (
    compare_paired,
    discordant_counts,
    mcnemar_exact,
    mcnemar_exact_worse,
    samples_for_half_width,
    split_adequacy,
    wilson_half_width,
    wilson_interval,
)

CASES = [(0, 1), (1, 1), (0, 10), (10, 10), (3, 10), (348, 359), (9_912, 10_000), (50, 100), (1, 359)]


@pytest.mark.parametrize(("k", "n"), CASES)
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(100 * ci.low, abs=1e-9)
    assert high == pytest.approx(100 * ci.high, abs=1e-9)
    assert 0.0 <= low <= 100 * k / n <= high <= 100.0


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 100.0)  # no samples: no information
    assert wilson_interval(359, 359)[1] == 100.0 and wilson_interval(359, 359)[0] < 100.0  # all correct
    assert wilson_interval(0, 359)[0] == 0.0
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(5, 4)
    # digits: 359 samples, one image is 0.28 points, the interval near 97 % is about ±1.9 points
    low, high = wilson_interval(348, 359)
    assert (high - low) / 2 == pytest.approx(wilson_half_width(100 * 348 / 359, 359), rel=0.02)
    assert 1.5 < wilson_half_width(96.9, 359) < 2.0


@pytest.mark.parametrize(
    ("b", "c"), [(0, 0), (1, 0), (0, 1), (4, 0), (5, 1), (10, 3), (3, 10), (7, 7), (40, 20), (200, 160), (1, 30)]
)
def test_mcnemar_matches_scipy_binomtest_on_the_discordant_pairs(b: int, c: int) -> None:
    n = b + c
    two = 1.0 if n == 0 else binomtest(b, n, 0.5, alternative="two-sided").pvalue
    worse = 1.0 if n == 0 else binomtest(b, n, 0.5, alternative="greater").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(two, rel=1e-12, abs=1e-300)
    assert mcnemar_exact_worse(b, c) == pytest.approx(worse, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize(
    ("b", "c"), [(330, 270), (2100, 2000), (2060, 2036), (5500, 4500), (4500, 5500), (30_000, 29_000), (200, 9_000)]
)
def test_mcnemar_large_counts(b: int, c: int) -> None:
    """Exact integers up to 4,096 discordant pairs, floating point above; tiny tails keep their digits."""
    n = b + c
    assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, n).pvalue, rel=1e-9, abs=1e-300)
    worse = binomtest(b, n, alternative="greater").pvalue
    assert mcnemar_exact_worse(b, c) == pytest.approx(worse, rel=1e-9, abs=1e-300)
    assert mcnemar_exact_worse(5500, 4500) > 0.0  # ~7.8e-24, not lost to 1 - (1 - p)


def test_identical_predictions_give_p_one() -> None:
    rng = np.random.default_rng(0)
    correct = rng.random(359) < 0.9
    cmp = compare_paired(correct, correct.copy())
    assert (cmp.only_base_correct, cmp.only_variant_correct) == (0, 0)
    assert cmp.p_value == 1.0 and cmp.p_value_worse == 1.0
    assert not cmp.significant and not cmp.significantly_worse


def test_paired_comparison_counts_and_direction() -> None:
    base = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    variant = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1], dtype=bool)
    assert discordant_counts(base, variant) == (6, 1)
    cmp = compare_paired(base, variant)
    assert cmp.p_value == pytest.approx(binomtest(6, 7).pvalue) == pytest.approx(0.125)
    assert cmp.p_value_worse == pytest.approx(8 / 128)
    assert not cmp.significant
    # the same disagreement the other way round: the variant is better, never "significantly worse"
    assert compare_paired(variant, base).p_value_worse == pytest.approx(1 - 1 / 128)
    with pytest.raises(ValueError, match="same samples"):
        compare_paired(base, variant[:5])


def test_a_drop_paired_test_sees_that_unpaired_percentages_cannot() -> None:
    # 20 samples the variant lost and none gained: 2 points on 1,000 samples, significant when paired
    base = np.ones(1000, dtype=bool)
    base[:30] = False
    variant = base.copy()
    variant[100:120] = False
    cmp = compare_paired(base, variant)
    assert cmp.significantly_worse and cmp.p_value_worse == pytest.approx(0.5**20)


def test_samples_for_half_width_is_the_smallest_n() -> None:
    for accuracy, h in [(50.0, 1.0), (96.9, 1.0), (99.0, 0.5), (90.0, 3.0)]:
        n = samples_for_half_width(h, accuracy)
        assert wilson_half_width(accuracy, n) <= h < wilson_half_width(accuracy, n - 1)
    # the normal approximation z² p (1 - p) / h² is close for mid proportions
    assert samples_for_half_width(1.0, 50.0) == pytest.approx(1.959964**2 * 0.25 / 0.01**2, rel=0.01)
    with pytest.raises(ValueError, match="half_width"):
        samples_for_half_width(0.0)


def test_split_adequacy() -> None:
    digits = split_adequacy(359, 1.0, accuracy=96.9)
    assert digits.too_small and digits.half_width > 1.0
    assert 1000 < digits.samples_needed < 1300
    assert "too small" in digits.message and f"{digits.samples_needed:,} samples" in digits.message
    mnist = split_adequacy(10_000, 1.0, accuracy=99.0)
    assert not mnist.too_small and mnist.half_width < 0.25
    assert split_adequacy(10_000, 1.0).half_width == pytest.approx(wilson_half_width(50.0, 10_000), abs=1e-4)
    assert split_adequacy(0, 1.0).too_small
    zero = split_adequacy(10_000, 0.0, accuracy=99.0)
    assert zero.too_small and "a budget above 0 points" in zero.message


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 359, 10_000])
def test_correctness_bits_round_trip(n: int) -> None:
    bits = np.random.default_rng(n).random(n) < 0.7
    packed = pack_correct(bits)
    assert len(packed) == 4 * (((n + 7) // 8 + 2) // 3)  # base64 of ceil(n / 8) bytes
    assert np.array_equal(unpack_correct(packed, n), bits)
    if n:
        with pytest.raises(ValueError, match="expected"):
            unpack_correct(packed, n + 8)
