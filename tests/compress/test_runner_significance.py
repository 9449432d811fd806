"""'Until accuracy drops significantly': the search's significance stop rule, p-values on every row,
and the note when the evaluation split is too small for the budget."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from pydantic import Field
from scipy.stats import binomtest

from compress.baseline import Baseline
from compress.correctness import pack_correct
from compress.datasets import DatasetSplit
from compress.measure import Measurement
from compress.runner import Runner, Step
from compress.stats import samples_for_half_width
from compress.techniques.base import TECHNIQUES, Context, SearchAxis, Technique, TechniqueParams, Variant

N = 359  # digits' evaluation split
BASE_WRONG = 30  # the base model misses samples 0..29: 329 / 359 = 91.64 %
LOST_PER_UNIT = 12  # a reduction of `amount` loses int(12 * amount) more samples (30, 31, ...)


def _base_bits() -> np.ndarray:
    bits = np.ones(N, dtype=bool)
    bits[:BASE_WRONG] = False
    return bits


def _variant_bits(amount: float, offset: int = 0) -> np.ndarray:
    bits = _base_bits()
    lost = offset + int(LOST_PER_UNIT * amount)
    bits[BASE_WRONG : BASE_WRONG + lost] = False
    return bits


def _measurement(bits: np.ndarray, size: int = 1000) -> Measurement:
    return Measurement(
        n_params=size,
        bytes=4 * size,
        nonzero_params=size,
        macs=1,
        activation_ops=0,
        ops=1,
        flops=2,
        sparse_macs=1,
        accuracy=100.0 * bits.mean(),
        eval_samples=len(bits),
        correct=pack_correct(bits),
    )


class FallingParams(TechniqueParams):
    amount: float = Field(default=0.5, ge=0.0, le=1.0, description="How much to reduce.")


def _apply(model, spec, params: FallingParams, ctx: Context) -> Variant:  # noqa: ANN001
    return Variant(model, spec, notes={"amount": params.amount})


class FallingRunner(Runner):
    """Accuracy falls with the amount: each unit of reduction loses samples the base model had right."""

    offset = 0  # samples lost by even the weakest reduction

    def _measure(self, variant: Variant) -> Measurement:
        amount = variant.notes["amount"]
        return _measurement(_variant_bits(amount, self.offset), int(1000 * (1 - amount)))


@pytest.fixture
def falling() -> Iterator[str]:
    name = "test-falling-accuracy"
    axis = SearchAxis(kind="ratio", field="amount", low=0.0, high=1.0, coarse=(0.25, 0.5, 0.75), bisect_steps=3)
    TECHNIQUES.register(name, Technique(name, "stub", FallingParams, _apply, axis))
    yield name
    del TECHNIQUES._items[name]


def _search(name: str, digits: DatasetSplit, baseline: Baseline, **params: object):
    base_bits = _base_bits()
    assert len(digits.eval_y) == N
    ctx = Context(digits, baseline.model, baseline.spec, base_accuracy=100.0 * base_bits.mean())
    runner = FallingRunner(ctx, base_measurement=_measurement(base_bits))
    rows = runner.run(
        [Step(technique=name, params={"search": True, "max_accuracy_drop": 3.0, **params})],
        baseline.model,
        baseline.spec,
    )
    chosen = [r.row for r in rows if not r.row.trial]
    assert len(chosen) == 1
    return runner, rows, chosen[0]


def test_budget_and_significance_choose_differently(falling: str, digits, digits_baseline) -> None:
    # budget 3 points: every loss of up to 10 samples (2.79 points) passes; the budget rule goes to 0.9062
    _, rows, budget_choice = _search(falling, digits, digits_baseline)
    assert budget_choice.params["amount"] == 0.9062 and budget_choice.notes.get("stop_rule") is None
    assert budget_choice.accuracy_drop == pytest.approx(100 * 10 / N, abs=1e-4)
    assert budget_choice.notes["drop_significantly_worse"]  # within the budget, yet beyond chance

    # significance: b lost samples and none gained, one-sided p = 0.5 ** b: 4 lost (p 0.0625) is noise,
    # 5 lost (p 0.031) is a significant drop although it is only 1.39 points
    _, rows, sig_choice = _search(falling, digits, digits_baseline, stop_rule="significance")
    tried = [r.row.params["amount"] for r in rows]
    assert tried == [0.25, 0.5, 0.75, 0.375, 0.4375, 0.4062]  # bisection between 0.25 (pass) and 0.5 (fail)
    assert sig_choice.params["amount"] == 0.4062 and sig_choice.notes["stop_rule"] == "significance"
    assert sig_choice.notes["paired_test"]["only_base_correct"] == 4
    assert sig_choice.notes["drop_p_value_worse"] == pytest.approx(0.0625)
    assert not sig_choice.notes["drop_significantly_worse"]
    stronger = [r.row for r in rows if r.row.params["amount"] > 0.4062]
    assert all(r.notes["drop_significantly_worse"] for r in stronger)
    # what stopped the search: 0.4375 (5 lost, 1.39 points) is well within the budget
    stopper = next(r for r in stronger if r.params["amount"] == 0.4375)
    assert stopper.accuracy_drop == pytest.approx(100 * 5 / N, abs=1e-4)
    assert sig_choice.params["amount"] < budget_choice.params["amount"]


def test_every_trial_keeps_its_p_values(falling: str, digits, digits_baseline) -> None:
    _, rows, _ = _search(falling, digits, digits_baseline, stop_rule="significance", alpha=0.01)
    for r in rows:
        b = int(LOST_PER_UNIT * r.row.params["amount"])
        notes = r.row.notes
        assert notes["paired_test"] == {
            "test": "exact McNemar",
            "only_base_correct": b,
            "only_variant_correct": 0,
            "alpha": 0.01,
        }
        assert r.row.drop_p_value == pytest.approx(binomtest(b, b).pvalue)
        assert notes["drop_p_value_worse"] == pytest.approx(binomtest(b, b, alternative="greater").pvalue)
        assert r.row.drop_significant == (r.row.drop_p_value < 0.01)
    # alpha 0.01: 6 lost samples (p 0.0156) are not yet significant, 7 (p 0.0078) are
    chosen = next(r.row for r in rows if not r.row.trial)
    assert chosen.notes["paired_test"]["only_base_correct"] == 6


def test_no_trial_passes_says_why(falling: str, digits, digits_baseline) -> None:
    ctx = Context(digits, digits_baseline.model, digits_baseline.spec, base_accuracy=100.0 * _base_bits().mean())
    rows = FallingRunner(ctx, base_measurement=_measurement(_base_bits())).run(
        [
            Step(
                technique=falling,
                params={"search": True, "max_accuracy_drop": 3.0, "stop_rule": "significance", "alpha": 1e-9},
            )
        ],
        digits_baseline.model,
        digits_baseline.spec,
    )
    # alpha 1e-9: no drop is ever significant here, so the rule reduces to the budget
    assert next(r.row for r in rows if not r.row.trial).params["amount"] == 0.9062
    # every reduction loses at least 5 samples (1.39 points, one-sided p 0.031): within 3 points, never
    # without a significant drop
    always_worse = FallingRunner(ctx, base_measurement=_measurement(_base_bits()))
    always_worse.offset = 5
    rows = always_worse.run(
        [Step(technique=falling, params={"search": True, "max_accuracy_drop": 3.0, "stop_rule": "significance"})],
        digits_baseline.model,
        digits_baseline.spec,
    )
    assert all(r.row.trial for r in rows)
    assert rows[0].row.accuracy_drop is not None and rows[0].row.accuracy_drop <= 3.0
    assert rows[0].row.notes["search"] == (
        "no trial within 3.0 points without a significant drop (one-sided exact McNemar, alpha 0.05)"
    )


def test_split_too_small_for_the_budget_is_noted(falling: str, digits, digits_baseline) -> None:
    runner, rows, _ = _search(falling, digits, digits_baseline)
    split = runner.job_notes["eval_split"]
    # base 91.64 % on 359 samples: the 95 % interval is about ±2.9 points, within a 3-point budget
    assert split["eval_samples"] == N and split["half_width"] < 3.0 and not split["too_small"]
    assert all("eval_split_too_small" not in r.row.notes for r in rows)

    runner, rows, _ = _search(falling, digits, digits_baseline, max_accuracy_drop=1.0)
    split = runner.job_notes["eval_split"]
    assert split["too_small"] and split["half_width"] > 1.0
    assert split["samples_needed"] == samples_for_half_width(1.0, 100.0 * _base_bits().mean()) > N
    assert all(f"{split['samples_needed']:,} samples" in r.row.notes["eval_split_too_small"] for r in rows)


def test_fixed_rows_of_a_real_model_carry_the_paired_test(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    """Without the base model's bits (a baseline measured before they were kept), the runner evaluates it."""
    ctx = Context(digits, digits_baseline.model, digits_baseline.spec, digits_baseline.measurement.accuracy)
    base_m = digits_baseline.measurement.model_copy(update={"correct": None})
    rows = Runner(ctx, base_m, latency_runs=1).run(
        [Step(technique="prune-l1", params={"amount": 0.9, "epochs": 0})], digits_baseline.model, digits_baseline.spec
    )
    (row,) = [r.row for r in rows]
    with torch.inference_mode():
        base = (digits_baseline.model(digits.eval_x).argmax(1) == digits.eval_y).numpy()
        pruned = (rows[0].model(digits.eval_x).argmax(1) == digits.eval_y).numpy()  # type: ignore[misc]
    b, c = int((base & ~pruned).sum()), int((~base & pruned).sum())
    assert b + c > 0
    assert row.notes["paired_test"]["only_base_correct"] == b
    assert row.notes["paired_test"]["only_variant_correct"] == c
    assert row.drop_p_value == pytest.approx(binomtest(b, b + c).pvalue)
    assert row.drop_significant == (row.drop_p_value < 0.05)
    assert row.measurement.accuracy_ci_low is not None and row.measurement.accuracy_ci_high is not None
    assert row.label == "prune-l1 epochs=0 amount=0.9"  # stop_rule and alpha stay out of labels
